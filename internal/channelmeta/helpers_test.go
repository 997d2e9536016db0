package channelmeta_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// t0 is the tests' reference time; every clock is explicit.
var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func newSigner(t testing.TB) signature.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := publish.Ed25519Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pub(t testing.TB, s signature.Signer) crypto.PublicKey {
	t.Helper()
	p, err := s.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func roleKeys(t testing.TB, threshold int, signers ...signature.Signer) publish.RoleKeys {
	t.Helper()
	rk := publish.RoleKeys{Threshold: threshold}
	for _, s := range signers {
		rk.Keys = append(rk.Keys, pub(t, s))
	}
	return rk
}

func commitOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// fixture is a repository with one release/root key and one online key,
// initialised and refreshed at a given time.
type fixture struct {
	dir     string
	release signature.Signer
	online  signature.Signer
	keys    publish.Keys
	opts    publish.Options
	repo    *publish.Repo
	root    []byte // root.json v1: what a device ships
}

func newFixture(t testing.TB, now time.Time, opts publish.Options) *fixture {
	t.Helper()
	f := &fixture{
		dir:     filepath.Join(t.TempDir(), "metadata"),
		release: newSigner(t),
		online:  newSigner(t),
		opts:    opts,
	}
	f.keys = publish.Keys{Root: roleKeys(t, 1, f.release), Release: roleKeys(t, 1, f.release), Online: roleKeys(t, 1, f.online)}
	if err := publish.Init(f.dir, f.keys, []signature.Signer{f.release}, []signature.Signer{f.release}, opts, now); err != nil {
		t.Fatalf("Init: %v", err)
	}
	var err error
	if f.repo, err = publish.Open(f.dir, []signature.Signer{f.online}, opts); err != nil {
		t.Fatalf("Open: %v", err)
	}
	if _, err := f.repo.Refresh(now); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	f.root = readFile(t, f.dir, channelmeta.RootFile)
	return f
}

func testReleases() []channelmeta.Release {
	return []channelmeta.Release{
		{Channel: "stable", Arch: "x86_64", Version: "10.1", Ref: "mxos/10/x86_64/stable", Commit: commitOf("10.1"), PublishedAt: t0.Add(-48 * time.Hour)},
		{Channel: "stable", Arch: "x86_64", Version: "10.2", Ref: "mxos/10/x86_64/stable", Commit: commitOf("10.2"),
			OCIDigest: "sha256:" + commitOf("image 10.2"), PublishedAt: t0.Add(-time.Hour)},
	}
}

func testRollout(t testing.TB) channelmeta.RolloutState {
	t.Helper()
	ramp, err := rollout.ParseRamp("1%,10%@24h,50%@48h,100%@72h")
	if err != nil {
		t.Fatal(err)
	}
	return channelmeta.RolloutState{Channel: "stable", Arch: "x86_64", RolloutID: "stable/10.2", Version: "10.2",
		Ramp: ramp, State: rollout.StateActive, StartedAt: t0}
}

// publish puts testReleases and testRollout into the repository.
func (f *fixture) publish(t testing.TB, now time.Time) {
	t.Helper()
	if err := f.repo.PublishTargets(testReleases(), []signature.Signer{f.release}, now); err != nil {
		t.Fatalf("PublishTargets: %v", err)
	}
	if err := f.repo.PublishRollouts([]channelmeta.RolloutState{testRollout(t)}, now); err != nil {
		t.Fatalf("PublishRollouts: %v", err)
	}
}

// dirClient is a device reading the mirror directory dir at clock now.
func dirClient(t testing.TB, root []byte, dir string, now time.Time) *channelmeta.Client {
	t.Helper()
	c, err := channelmeta.NewClient(channelmeta.ClientConfig{TrustedRoot: root, CacheDir: t.TempDir(), Dir: dir, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

// httpClient is a device reading dir through an httptest server on
// 127.0.0.1.
func httpClient(t testing.TB, root []byte, dir string, now time.Time) *channelmeta.Client {
	t.Helper()
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	c, err := channelmeta.NewClient(channelmeta.ClientConfig{TrustedRoot: root, CacheDir: t.TempDir(), URL: srv.URL + "/", HTTPClient: srv.Client(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

func mustLoad(t testing.TB, c *channelmeta.Client) *channelmeta.State {
	t.Helper()
	st, err := c.Load(context.Background())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return st
}

// wantLoadErr loads, expecting a *MetadataError of the given kind whose
// text mentions msg (if not empty), and returns it.
func wantLoadErr(t testing.TB, c *channelmeta.Client, kind error, msg string) error {
	t.Helper()
	st, err := c.Load(context.Background())
	if err == nil {
		t.Fatalf("Load succeeded (%d releases), want %v", len(st.Releases), kind)
	}
	if !errors.Is(err, kind) {
		t.Fatalf("Load error %q: want kind %v", err, kind)
	}
	var me *channelmeta.MetadataError
	if !errors.As(err, &me) {
		t.Fatalf("Load error %T is not a *MetadataError", err)
	}
	if msg != "" && !strings.Contains(err.Error(), msg) {
		t.Fatalf("Load error %q does not mention %q", err, msg)
	}
	t.Logf("refused: %v", err)
	return err
}

// wantAs checks that a go-tuf error of type E is reachable in err.
func wantAs[E error](t testing.TB, err error) {
	t.Helper()
	var e E
	if !errors.As(err, &e) {
		t.Fatalf("error %q: no %T inside", err, e)
	}
}

func readFile(t testing.TB, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyDir makes dst an exact copy of the regular files in src.
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.RemoveAll(dst); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			writeFile(t, dst, e.Name(), readFile(t, src, e.Name()))
		}
	}
}

// snapshotDir returns the contents of every file in dir.
func snapshotDir(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			out[e.Name()] = string(readFile(t, dir, e.Name()))
		}
	}
	return out
}

func sameFiles(t testing.TB, before, after map[string]string, except ...string) {
	t.Helper()
	b, a := maps.Clone(before), maps.Clone(after)
	for _, n := range except {
		delete(b, n)
		delete(a, n)
	}
	if !maps.Equal(a, b) {
		t.Fatalf("trusted cache changed by a rejected load:\nbefore %v\nafter  %v", keysOf(b), keysOf(a))
	}
}

func keysOf(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// --- forging: what a holder of some keys (or a buggy tool) could write ---

func versionOf(t testing.TB, dir, name string) int64 {
	t.Helper()
	data := readFile(t, dir, name)
	switch name {
	case channelmeta.SnapshotFile:
		md, err := metadata.Snapshot().FromBytes(data)
		if err != nil {
			t.Fatal(err)
		}
		return md.Signed.Version
	case channelmeta.TimestampFile:
		md, err := metadata.Timestamp().FromBytes(data)
		if err != nil {
			t.Fatal(err)
		}
		return md.Signed.Version
	default:
		md, err := metadata.Targets().FromBytes(data)
		if err != nil {
			t.Fatal(err)
		}
		return md.Signed.Version
	}
}

// metaOfFile pins dir/name (a targets-type role file) as a snapshot would.
func metaOfFile(t testing.TB, dir, name string) *metadata.MetaFiles {
	t.Helper()
	return metaFor(readFile(t, dir, name), versionOf(t, dir, name))
}

func loadTargetsFile(t testing.TB, dir, name string) *metadata.Metadata[metadata.TargetsType] {
	t.Helper()
	md, err := metadata.Targets().FromBytes(readFile(t, dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return md
}

// forgeRole re-signs md with signers and writes it as the next version
// of role (targets or rollouts) into dir.
func forgeRole(t testing.TB, dir, name string, md *metadata.Metadata[metadata.TargetsType], now time.Time, signers ...signature.Signer) {
	t.Helper()
	md.ClearSignatures()
	md.Signed.Version = versionOf(t, dir, name) + 1
	md.Signed.Expires = normTime(now.Add(24 * time.Hour))
	for _, s := range signers {
		if _, err := md.Sign(s); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := md.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, versioned(md.Signed.Version, name), raw)
	writeFile(t, dir, name, raw)
}

// forgeSnapshot writes the next snapshot pinning meta, signed by signers,
// and returns its own pin for a timestamp.
func forgeSnapshot(t testing.TB, dir string, meta map[string]*metadata.MetaFiles, now time.Time, signers ...signature.Signer) *metadata.MetaFiles {
	t.Helper()
	md := metadata.Snapshot(normTime(now.Add(24 * time.Hour)))
	md.Signed.Version = versionOf(t, dir, channelmeta.SnapshotFile) + 1
	md.Signed.Meta = meta
	for _, s := range signers {
		if _, err := md.Sign(s); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := md.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, versioned(md.Signed.Version, channelmeta.SnapshotFile), raw)
	writeFile(t, dir, channelmeta.SnapshotFile, raw)
	return metaFor(raw, md.Signed.Version)
}

// forgeTimestamp writes the next timestamp pinning snap, signed by signers.
func forgeTimestamp(t testing.TB, dir string, snap *metadata.MetaFiles, now time.Time, signers ...signature.Signer) {
	t.Helper()
	md := metadata.Timestamp(normTime(now.Add(12 * time.Hour)))
	md.Signed.Version = versionOf(t, dir, channelmeta.TimestampFile) + 1
	md.Signed.Meta = map[string]*metadata.MetaFiles{channelmeta.SnapshotFile: snap}
	for _, s := range signers {
		if _, err := md.Sign(s); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := md.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, channelmeta.TimestampFile, raw)
}

// forgeTop re-signs snapshot and timestamp over the current targets.json
// and rollouts.json of dir, as the online key holder would.
func forgeTop(t testing.TB, dir string, now time.Time, snapSigner, tsSigner signature.Signer) {
	t.Helper()
	snap := forgeSnapshot(t, dir, map[string]*metadata.MetaFiles{
		channelmeta.TargetsFile:  metaOfFile(t, dir, channelmeta.TargetsFile),
		channelmeta.RolloutsFile: metaOfFile(t, dir, channelmeta.RolloutsFile),
	}, now, snapSigner)
	forgeTimestamp(t, dir, snap, now, tsSigner)
}

// Forging helpers. They build metadata the way publish does, but on
// their own (publish keeps these internal), so hostile input written by
// a test does not depend on the code it is aimed at.

func versioned(v int64, name string) string { return strconv.FormatInt(v, 10) + "." + name }

func normTime(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }

var versionedRE = regexp.MustCompile(`^([0-9]{1,18})\.(snapshot|targets|rollouts)\.json$`)

func metaFor(raw []byte, version int64) *metadata.MetaFiles {
	sum := sha256.Sum256(raw)
	return &metadata.MetaFiles{Version: version, Length: int64(len(raw)), Hashes: metadata.Hashes{"sha256": sum[:]}}
}

func parseTargets(data []byte) (*metadata.Metadata[metadata.TargetsType], error) {
	if err := channelmeta.CheckFile(metadata.TARGETS, data); err != nil {
		return nil, err
	}
	return metadata.Targets().FromBytes(data)
}

// recordTarget is a target whose custom field is record's canonical JSON.
func recordTarget(path string, record any) (*metadata.TargetFiles, error) {
	canon, err := cjson.EncodeCanonical(record)
	if err != nil {
		return nil, err
	}
	tf, err := metadata.TargetFile().FromBytes(path, canon, "sha256")
	if err != nil {
		return nil, err
	}
	raw := json.RawMessage(canon)
	tf.Custom = &raw
	return tf, nil
}

func releaseTarget(r channelmeta.Release) (*metadata.TargetFiles, error) {
	r.PublishedAt = normTime(r.PublishedAt)
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return recordTarget(r.Path(), r)
}

func rolloutTarget(s channelmeta.RolloutState) (*metadata.TargetFiles, error) {
	if !s.StartedAt.IsZero() {
		s.StartedAt = normTime(s.StartedAt)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return recordTarget(s.Path(), s)
}

// buildRoot is unsigned root metadata for keys (consistent snapshots on).
func buildRoot(keys publish.Keys, version int64, expires time.Time) (*metadata.Metadata[metadata.RootType], error) {
	md := metadata.Root(expires)
	md.Signed.Version = version
	md.Signed.ConsistentSnapshot = true
	for _, r := range []struct {
		role string
		rk   publish.RoleKeys
	}{
		{metadata.ROOT, keys.Root},
		{metadata.TARGETS, keys.Release},
		{metadata.SNAPSHOT, keys.Online},
		{metadata.TIMESTAMP, keys.Online},
	} {
		for _, pub := range r.rk.Keys {
			k, err := metadata.KeyFromPublicKey(pub)
			if err != nil {
				return nil, err
			}
			if err := md.Signed.AddKey(k, r.role); err != nil {
				return nil, err
			}
		}
		md.Signed.Roles[r.role].Threshold = r.rk.Threshold
	}
	return md, nil
}
