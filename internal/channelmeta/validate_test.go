package channelmeta_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/metatest"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
)

// TestHostileRolloutsDelegationBadKeyLength: the online key alone (it signs rollouts,
// snapshot and timestamp) makes the rollouts role delegate to a role
// whose key is 31 bytes long, with that role's file pinned in the
// snapshot. go-tuf would load it while looking for rollouts/-/- and
// panic verifying it; the device refuses the rollouts role instead.
func TestHostileRolloutsDelegationBadKeyLength(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pinEvil bool
		want    string
	}{
		{"evil role pinned in snapshot", true, `meta lists "evil.json"`},
		{"evil role not pinned", false, "rollouts role may not delegate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newScene(t)
			trusted := snapshotDir(t, s.cache)
			forgeBadRolloutsDelegation(t, s.mirror, s.now, s.f.online, tc.pinEvil)
			wantLoadErr(t, s.dev, channelmeta.ErrMalformed, tc.want)
			// The online-signed timestamp and snapshot are genuine
			// signatures by the online key and may be kept; the rollouts
			// role is not.
			sameFiles(t, trusted, snapshotDir(t, s.cache), channelmeta.TimestampFile, channelmeta.SnapshotFile)
			// A fresh device (nothing cached) the same.
			wantLoadErr(t, dirClient(t, s.f.root, s.mirror, s.now), channelmeta.ErrMalformed, tc.want)
		})
	}
}

// A root signed by the real root key (old and new: the same key) that
// names a 31-byte ed25519 key for the timestamp: go-tuf would panic
// verifying the timestamp with it; the device refuses the root.
func TestHostileRootBadKeyLength(t *testing.T) {
	s := newScene(t)
	trusted := snapshotDir(t, s.cache)
	forgeBadKeyRoot(t, s.mirror, s.now, s.f.release)
	wantLoadErr(t, s.dev, channelmeta.ErrMalformed, "ed25519 public key must be 32 bytes")
	sameFiles(t, trusted, snapshotDir(t, s.cache))
	wantLoadErr(t, dirClient(t, s.f.root, s.mirror, s.now), channelmeta.ErrMalformed, "2.root.json")
	// Nor does the server accept it.
	err := s.f.repo.AcceptRoot(readFile(t, s.mirror, "2.root.json"), nil, s.now)
	if err == nil || !strings.Contains(err.Error(), "32 bytes") {
		t.Fatalf("server AcceptRoot: %v", err)
	}
}

// shortKey is metatest.ShortKey for tests.
func shortKey(t testing.TB, n int) (*metadata.Key, string) {
	t.Helper()
	k, id, err := metatest.ShortKey(n)
	if err != nil {
		t.Fatal(err)
	}
	return k, id
}

func forgeBadRolloutsDelegation(t testing.TB, dir string, now time.Time, online signature.Signer, pinEvil bool) {
	t.Helper()
	if err := metatest.ForgeBadRolloutsDelegation(dir, now, online, pinEvil); err != nil {
		t.Fatal(err)
	}
}

func forgeBadKeyRoot(t testing.TB, dir string, now time.Time, rootSigner signature.Signer) {
	t.Helper()
	if err := metatest.ForgeBadKeyRoot(dir, now, rootSigner); err != nil {
		t.Fatal(err)
	}
}

// edit decodes a genuine metadata file into generic JSON, lets fn change
// it and encodes it again.
func edit(t *testing.T, data []byte, fn func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func obj(m any, keys ...string) map[string]any {
	for _, k := range keys {
		m = m.(map[string]any)[k]
	}
	return m.(map[string]any)
}

func firstKey(m map[string]any) string {
	for k := range m {
		return k
	}
	return ""
}

// TestCheckFile is the table of input rules: each row breaks one rule in
// an otherwise genuine file and must be refused naming the problem.
func TestCheckFile(t *testing.T) {
	f := newFixture(t, t0, publish.Options{})
	f.publish(t, t0)
	root := readFile(t, f.dir, channelmeta.RootFile)
	targets := readFile(t, f.dir, channelmeta.TargetsFile)
	rollouts := readFile(t, f.dir, channelmeta.RolloutsFile)
	snap := readFile(t, f.dir, channelmeta.SnapshotFile)
	ts := readFile(t, f.dir, channelmeta.TimestampFile)
	for role, data := range map[string][]byte{"root": root, "targets": targets, "rollouts": rollouts, "snapshot": snap, "timestamp": ts} {
		if err := channelmeta.CheckFile(role, data); err != nil {
			t.Fatalf("genuine %s refused: %v", role, err)
		}
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecTUF, err := metadata.KeyFromPublicKey(&ecKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384TUF, _ := metadata.KeyFromPublicKey(&p384.PublicKey)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaTUF, _ := metadata.KeyFromPublicKey(&rsaKey.PublicKey)
	asMap := func(k *metadata.Key) (map[string]any, string) {
		b, _ := json.Marshal(k)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		id, _ := k.ID()
		return m, id
	}
	// addKey adds key k to root and makes it the timestamp key.
	rootKey := func(k *metadata.Key) func(m map[string]any) {
		return func(m map[string]any) {
			km, id := asMap(k)
			obj(m, "signed", "keys")[id] = km
			obj(m, "signed", "roles", "timestamp")["keyids"] = []any{id}
		}
	}
	short31, _ := shortKey(t, 31)
	long33, _ := shortKey(t, 33)
	empty0, _ := shortKey(t, 0)
	deleg := func(fn func(d map[string]any)) func(m map[string]any) {
		return func(m map[string]any) { fn(obj(m, "signed", "delegations")) }
	}
	role0 := func(d map[string]any) map[string]any { return d["roles"].([]any)[0].(map[string]any) }

	for _, tc := range []struct {
		name, role string
		data       []byte
		edit       func(m map[string]any)
		want       string
	}{
		{"root: ed25519 key of 31 bytes", "root", root, rootKey(short31), "must be 32 bytes"},
		{"root: ed25519 key of 33 bytes", "root", root, rootKey(long33), "must be 32 bytes"},
		{"root: empty ed25519 key", "root", root, rootKey(empty0), "must be 32 bytes"},
		{"root: ecdsa P-256 key accepted", "root", root, rootKey(ecTUF), ""},
		{"root: ecdsa P-384 key", "root", root, rootKey(p384TUF), "not on P-256"},
		{"root: rsa key", "root", root, rootKey(rsaTUF), `key type "rsa" not accepted`},
		{"root: unknown key type", "root", root, func(m map[string]any) {
			k := obj(m, "signed", "keys")
			obj(k, firstKey(k))["keytype"] = "dsa"
		}, `key type "dsa"`},
		{"root: scheme mismatch", "root", root, func(m map[string]any) {
			k := obj(m, "signed", "keys")
			obj(k, firstKey(k))["scheme"] = "ecdsa-sha2-nistp256"
		}, "scheme"},
		{"root: uppercase hex key", "root", root, func(m map[string]any) {
			k := obj(m, "signed", "keys")
			kv := obj(k, firstKey(k), "keyval")
			kv["public"] = strings.ToUpper(kv["public"].(string))
		}, "must be 32 bytes"},
		{"root: key id not the key's", "root", root, func(m map[string]any) {
			k := obj(m, "signed", "keys")
			id := firstKey(k)
			kv := obj(k, id, "keyval")
			kv["public"] = strings.Repeat("ab", 32)
		}, "id does not match the key"},
		{"root: threshold 0", "root", root, func(m map[string]any) { obj(m, "signed", "roles", "targets")["threshold"] = 0 }, "threshold 0"},
		{"root: threshold above keys", "root", root, func(m map[string]any) { obj(m, "signed", "roles", "targets")["threshold"] = 2 }, "threshold 2 with 1 keys"},
		{"root: negative threshold", "root", root, func(m map[string]any) { obj(m, "signed", "roles", "root")["threshold"] = -1 }, "threshold -1"},
		{"root: key id listed twice", "root", root, func(m map[string]any) {
			r := obj(m, "signed", "roles", "targets")
			ids := r["keyids"].([]any)
			r["keyids"] = append(ids, ids[0])
			r["threshold"] = 2
		}, "listed twice"},
		{"root: role key not in keys", "root", root, func(m map[string]any) {
			obj(m, "signed", "roles", "snapshot")["keyids"] = []any{strings.Repeat("0", 64)}
		}, "not listed in keys"},
		{"root: missing role", "root", root, func(m map[string]any) { delete(obj(m, "signed", "roles"), "snapshot") }, "roles"},
		{"root: extra role", "root", root, func(m map[string]any) {
			obj(m, "signed", "roles")["mirrors"] = obj(m, "signed", "roles", "root")
		}, "5 roles"},
		{"root: version 0", "root", root, func(m map[string]any) { obj(m, "signed")["version"] = 0 }, "version 0"},
		{"root: wrong type", "root", root, func(m map[string]any) { obj(m, "signed")["_type"] = "targets" }, `type "targets"`},
		{"signature: bad key id", "root", root, func(m map[string]any) {
			m["signatures"].([]any)[0].(map[string]any)["keyid"] = "xyz"
		}, "key id"},
		{"signature: not hex", "root", root, func(m map[string]any) {
			m["signatures"].([]any)[0].(map[string]any)["sig"] = "zz"
		}, "lowercase hex"},
		{"signature: huge", "root", root, func(m map[string]any) {
			m["signatures"].([]any)[0].(map[string]any)["sig"] = strings.Repeat("ab", 513)
		}, "lowercase hex"},
		{"signature: same key twice", "root", root, func(m map[string]any) {
			s := m["signatures"].([]any)
			m["signatures"] = append(s, s[0])
		}, "signs twice"},
		{"targets: delegation key of 31 bytes", "targets", targets, deleg(func(d map[string]any) {
			km, id := asMap(short31)
			d["keys"] = map[string]any{id: km}
			role0(d)["keyids"] = []any{id}
		}), "must be 32 bytes"},
		{"targets: delegation threshold 0", "targets", targets, deleg(func(d map[string]any) { role0(d)["threshold"] = 0 }), "threshold 0"},
		{"targets: delegation threshold 5", "targets", targets, deleg(func(d map[string]any) { role0(d)["threshold"] = 5 }), "threshold 5"},
		{"targets: delegated key missing", "targets", targets, deleg(func(d map[string]any) { d["keys"] = map[string]any{} }), "not listed in keys"},
		{"targets: second delegated role", "targets", targets, deleg(func(d map[string]any) {
			r := map[string]any{}
			for k, v := range role0(d) {
				r[k] = v
			}
			r["name"] = "more"
			d["roles"] = append(d["roles"].([]any), r)
		}), "2 delegated roles"},
		{"targets: other role name", "targets", targets, deleg(func(d map[string]any) { role0(d)["name"] = "releases" }), `"releases"`},
		{"targets: hash prefixes", "targets", targets, deleg(func(d map[string]any) { role0(d)["path_hash_prefixes"] = []any{"00"} }), "hash prefixes"},
		{"targets: succinct roles", "targets", targets, deleg(func(d map[string]any) {
			d["succinct_roles"] = map[string]any{"bit_length": 64, "name_prefix": "x", "keyids": []any{}, "threshold": 1}
		}), "succinct"},
		{"targets: bad pattern", "targets", targets, deleg(func(d map[string]any) { role0(d)["paths"] = []any{"rollouts/["} }), "path pattern"},
		{"targets: no paths", "targets", targets, deleg(func(d map[string]any) { role0(d)["paths"] = []any{} }), "0 paths"},
		{"targets: bad target hash", "targets", targets, func(m map[string]any) {
			tg := obj(m, "signed", "targets")
			obj(tg, firstKey(tg), "hashes")["sha256"] = "00"
		}, "sha256 hash must be 64"},
		{"targets: negative length", "targets", targets, func(m map[string]any) {
			tg := obj(m, "signed", "targets")
			obj(tg, firstKey(tg))["length"] = -1
		}, "no valid length"},
		{"rollouts: delegates", "rollouts", rollouts, func(m map[string]any) {
			obj(m, "signed")["delegations"] = map[string]any{"keys": map[string]any{}, "roles": []any{}}
		}, "rollouts role may not delegate"},
		{"snapshot: other file pinned", "snapshot", snap, func(m map[string]any) {
			obj(m, "signed", "meta")["evil.json"] = map[string]any{"version": 1}
		}, `"evil.json"`},
		{"snapshot: version 0 pinned", "snapshot", snap, func(m map[string]any) {
			obj(m, "signed", "meta", "targets.json")["version"] = 0
		}, "version of at least 1"},
		{"timestamp: negative length", "timestamp", ts, func(m map[string]any) {
			obj(m, "signed", "meta", "snapshot.json")["length"] = -5
		}, "negative length"},
		{"timestamp: unknown hash", "timestamp", ts, func(m map[string]any) {
			obj(m, "signed", "meta", "snapshot.json")["hashes"] = map[string]any{"md5": "00"}
		}, "md5"},
		{"timestamp: nothing pinned", "timestamp", ts, func(m map[string]any) { obj(m, "signed")["meta"] = map[string]any{} }, "0 files"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := channelmeta.CheckFile(tc.role, edit(t, tc.data, tc.edit))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want an error mentioning %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), channelmeta.ErrMalformed.Error()) {
				t.Fatalf("error %q: want ErrMalformed mentioning %q", err, tc.want)
			}
		})
	}
}

// A bad shipped root is refused by NewClient, without a panic.
func TestNewClientBadRoot(t *testing.T) {
	f := newFixture(t, t0, publish.Options{})
	dir := t.TempDir()
	writeFile(t, dir, channelmeta.RootFile, f.root)
	forgeBadKeyRoot(t, dir, t0, f.release)
	_, err := channelmeta.NewClient(channelmeta.ClientConfig{TrustedRoot: readFile(t, dir, "2.root.json"), CacheDir: t.TempDir(), Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "32 bytes") {
		t.Fatalf("NewClient: %v", err)
	}
}
