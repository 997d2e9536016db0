package channelmeta_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
)

// memFetcher serves a map of files, like a mirror would.
type memFetcher map[string][]byte

const memBase = "mem:/"

func (m memFetcher) DownloadFile(url string, maxLength int64, _ time.Duration) ([]byte, error) {
	data, ok := m[strings.TrimPrefix(url, memBase)]
	if !ok {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: url}
	}
	if int64(len(data)) > channelmeta.ClampLimit(maxLength) {
		return nil, channelmeta.TooLarge(url, int64(len(data)), maxLength)
	}
	return data, nil
}

// detSigner is an ed25519 signer from a fixed seed, so that fuzz seeds
// committed in testdata stay validly signed for the fixture below.
func detSigner(t testing.TB, b byte) signature.Signer {
	t.Helper()
	s, err := publish.Ed25519Signer(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fuzzBases are the mirrors the device-side fuzz targets start from:
// a genuine repository (deterministic keys, clock t0), the same with a
// release whose record needs two release signatures (firstHostile-1),
// and hostile variants of it, each signed by keys the device trusts: an online-key
// rollouts role delegating to a role with a 31-byte key (pinned in the
// snapshot or not), and a root-key-signed root 2 whose timestamp key is
// 31 bytes long. It also returns the shipped root.
func fuzzBases(t testing.TB) ([]map[string][]byte, []byte) {
	t.Helper()
	release, online := detSigner(t, 1), detSigner(t, 2)
	dir := filepath.Join(t.TempDir(), "metadata")
	keys := publish.Keys{Root: roleKeys(t, 1, release), Release: roleKeys(t, 1, release), Online: roleKeys(t, 1, online)}
	if err := publish.Init(dir, keys, []signature.Signer{release}, []signature.Signer{release}, publish.Options{}, t0); err != nil {
		t.Fatal(err)
	}
	repo, err := publish.Open(dir, []signature.Signer{online}, publish.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{dir: dir, release: release, online: online, keys: keys, repo: repo}
	fx.publish(t, t0)
	root := readFile(t, dir, channelmeta.RootFile)
	read := func(d string) map[string][]byte {
		files := map[string][]byte{}
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			files[e.Name()] = readFile(t, d, e.Name())
		}
		return files
	}
	bases := []map[string][]byte{read(dir)}
	for _, forge := range []func(d string){
		// Not hostile: release 10.2 needs two release signatures and has
		// one (devices ignore it).
		func(d string) {
			rels := testReleases()
			rels[1].Threshold = 2
			data, err := publish.BuildTargets(root, readFile(t, d, channelmeta.TargetsFile), rels, []signature.Signer{release}, publish.Options{}, t0)
			if err != nil {
				t.Fatal(err)
			}
			md, err := parseTargets(data)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, d, versioned(md.Signed.Version, channelmeta.TargetsFile), data)
			writeFile(t, d, channelmeta.TargetsFile, data)
			forgeTop(t, d, t0, online, online)
		},
		func(d string) { forgeBadRolloutsDelegation(t, d, t0, online, true) },
		func(d string) { forgeBadRolloutsDelegation(t, d, t0, online, false) },
		func(d string) { forgeBadKeyRoot(t, d, t0, release) },
	} {
		d := filepath.Join(t.TempDir(), "m")
		copyDir(t, dir, d)
		forge(d)
		bases = append(bases, read(d))
	}
	return bases, root
}

// firstHostile is the index of the first hostile base in fuzzBases.
const firstHostile = 2

// fuzzNames are the files FuzzLoad may replace (by index).
func fuzzNames(files map[string][]byte) []string {
	names := []string{channelmeta.TimestampFile, "2.root.json", "1.evil.json"}
	for _, n := range slices.Sorted(maps.Keys(files)) {
		if m := versionedRE.FindStringSubmatch(n); m != nil {
			names = append(names, n)
		}
	}
	return names
}

// FuzzLoad starts from one of fuzzBases, replaces one file (or none,
// when which is past the list) with fuzzed bytes and runs the whole
// device workflow on it: it must never panic, must refuse the hostile
// bases, and must never report a release that the genuine targets do not
// contain.
func FuzzLoad(f *testing.F) {
	bases, root := fuzzBases(f)
	for b, files := range bases {
		names := fuzzNames(files)
		f.Add(uint8(b), uint8(255), []byte(nil))
		for i, n := range names {
			if data, ok := files[n]; ok {
				f.Add(uint8(b), uint8(i), data)
				f.Add(uint8(b), uint8(i), data[:len(data)/2])
			}
		}
	}
	f.Add(uint8(0), uint8(0), []byte(`{"signed":{"_type":"timestamp","version":99,"expires":"2030-01-01T00:00:00Z","meta":{}},"signatures":[]}`))

	f.Fuzz(func(t *testing.T, base, which uint8, data []byte) {
		files := bases[int(base)%len(bases)]
		mirror := memFetcher{}
		for k, v := range files {
			mirror[k] = v
		}
		names := fuzzNames(files)
		replaced := int(which) < len(names)
		if replaced {
			mirror[names[which]] = data
		}
		c, err := channelmeta.NewClient(channelmeta.ClientConfig{TrustedRoot: root, CacheDir: t.TempDir(), Dir: t.TempDir(), Now: func() time.Time { return t0 }})
		if err != nil {
			t.Fatal(err)
		}
		c.SetFetcher(memBase, mirror)
		st, err := c.Load(context.Background())
		if err != nil {
			return
		}
		if int(base)%len(bases) >= firstHostile && !replaced {
			t.Fatalf("hostile base %d accepted", base)
		}
		for _, r := range st.Releases {
			want := false
			for _, g := range testReleases() {
				want = want || (g.Path() == r.Path() && g.Commit == r.Commit)
			}
			if !want {
				t.Fatalf("fuzzed metadata produced release %+v", r)
			}
			if r.Threshold > 1 {
				t.Fatalf("release %s needing %d signatures listed with one release key", r.Path(), r.Threshold)
			}
		}
	})
}

// FuzzCheckFile feeds arbitrary bytes to CheckFile for each role, and
// whatever it accepts to go-tuf the way the client and server do
// (parse, verify every delegation with every key, match delegated
// paths): go-tuf must never panic on input CheckFile let through.
func FuzzCheckFile(f *testing.F) {
	bases, _ := fuzzBases(f)
	roles := []string{"root", "timestamp", "snapshot", "targets", "rollouts"}
	for _, files := range bases {
		for name, data := range files {
			if i := slices.Index(roles, channelmeta.RoleOfFile(name)); i >= 0 {
				f.Add(uint8(i), data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		role := roles[int(which)%len(roles)]
		if channelmeta.CheckFile(role, data) != nil {
			return
		}
		switch role {
		case metadata.ROOT:
			md, err := metadata.Root().FromBytes(data)
			if err != nil {
				return
			}
			for _, r := range channelmeta.TopRoles {
				_ = md.VerifyDelegate(r, md)
			}
			_, _ = trustedmetadata.New(data)
		case metadata.TARGETS, channelmeta.RolloutsRole:
			md, err := metadata.Targets().FromBytes(data)
			if err != nil {
				return
			}
			_ = md.VerifyDelegate(channelmeta.RolloutsRole, md)
			if md.Signed.Delegations != nil {
				_ = md.Signed.Delegations.GetRolesForTarget(channelmeta.RolloutsProbe)
				for _, r := range md.Signed.Delegations.Roles {
					_, _ = r.IsDelegatedPath("rollouts/stable/x86_64")
				}
			}
			_, _ = stateFromTargets(md)
		case metadata.SNAPSHOT:
			md, err := metadata.Snapshot().FromBytes(data)
			if err != nil {
				return
			}
			for _, m := range md.Signed.Meta {
				_ = m.VerifyLengthHashes(data)
			}
		case metadata.TIMESTAMP:
			md, err := metadata.Timestamp().FromBytes(data)
			if err != nil {
				return
			}
			for _, m := range md.Signed.Meta {
				_ = m.VerifyLengthHashes(data)
			}
		}
	})
}

// stateFromTargets runs the record parsers over every target of md.
func stateFromTargets(md *metadata.Metadata[metadata.TargetsType]) (int, error) {
	n := 0
	for p, tf := range md.Signed.Targets {
		if _, err := channelmeta.ParseRelease(p, tf); err == nil {
			n++
		}
		if _, err := channelmeta.ParseRollout(p, tf); err == nil {
			n++
		}
	}
	return n, nil
}

// FuzzRecords feeds arbitrary custom JSON to the record parsers, with
// hashes that match its canonical form when it has one (so the decoding
// and validation behind the hash check are reached).
func FuzzRecords(f *testing.F) {
	for _, r := range testReleases() {
		b, _ := cjson.EncodeCanonical(r)
		f.Add(r.Path(), b)
	}
	ro := testRollout(f)
	b, _ := cjson.EncodeCanonical(ro)
	f.Add(ro.Path(), b)
	f.Add("releases/a/b/c", []byte(`{"channel":"a","arch":"b","version":"c","commit":1.5}`))
	f.Add("rollouts/a/b", []byte(`null`))
	f.Fuzz(func(t *testing.T, path string, custom []byte) {
		raw := json.RawMessage(custom)
		tf := &metadata.TargetFiles{Length: int64(len(custom)), Hashes: metadata.Hashes{"sha256": make([]byte, 32)}, Custom: &raw}
		if json.Valid(custom) {
			if canon, err := cjson.EncodeCanonical(raw); err == nil {
				if h, err := metadata.TargetFile().FromBytes(path, canon); err == nil {
					tf.Length, tf.Hashes = h.Length, h.Hashes
				}
			}
		}
		if rel, err := channelmeta.ParseRelease(path, tf); err == nil {
			if rel.Path() != path || rel.Validate() != nil {
				t.Fatalf("accepted release %+v at %q", rel, path)
			}
			if _, err := releaseTarget(rel); err != nil {
				t.Fatalf("accepted release does not re-encode: %v", err)
			}
		}
		if s, err := channelmeta.ParseRollout(path, tf); err == nil {
			if s.Path() != path || s.Validate() != nil {
				t.Fatalf("accepted rollout %+v at %q", s, path)
			}
		}
	})
}

// TestWriteFuzzSeeds checks that testdata/fuzz holds a seed file for
// every hostile fuzz base, so that plain `go test` runs them in CI even if
// the f.Add seeds change; with MXOS_WRITE_FUZZ_SEEDS=1 (after changing the
// bases) it writes them instead. FuzzLoad seeds are checked byte for byte;
// FuzzCheckFile seeds carry freshly signed files, so only their presence is.
func TestWriteFuzzSeeds(t *testing.T) {
	generate := os.Getenv("MXOS_WRITE_FUZZ_SEEDS") != ""
	bases, _ := fuzzBases(t)
	write := func(target, name string, args ...string) {
		dir := filepath.Join("testdata", "fuzz", target)
		body := "go test fuzz v1\n" + strings.Join(args, "\n") + "\n"
		if !generate {
			got, err := os.ReadFile(filepath.Join(dir, name))
			switch {
			case err != nil:
				t.Errorf("seed %s/%s is missing (MXOS_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds writes it): %v", target, name, err)
			case target == "FuzzLoad" && string(got) != body:
				t.Errorf("seed %s/%s is stale (MXOS_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds rewrites it)", target, name)
			}
			return
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	roles := []string{"root", "timestamp", "snapshot", "targets", "rollouts"}
	for b, files := range bases {
		write("FuzzLoad", fmt.Sprintf("base%d", b), fmt.Sprintf("byte(%q)", byte(b)), "byte('\\xff')", "[]byte(\"\")")
		if b == 0 {
			continue
		}
		for name, data := range files {
			if bytes.Equal(data, bases[0][name]) {
				continue
			}
			i := slices.Index(roles, channelmeta.RoleOfFile(name))
			if i < 0 {
				continue
			}
			write("FuzzCheckFile", fmt.Sprintf("base%d-%s", b, name), fmt.Sprintf("byte(%q)", byte(i)), fmt.Sprintf("[]byte(%q)", data))
		}
	}
}
