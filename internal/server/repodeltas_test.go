package server

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/storage/object"
)

// deltaSource is a repository with two releases of one ref and the static
// delta between them, as another replica left it in the bucket.
type deltaSource struct {
	repo   *ostree.Repo
	delta  ostree.DeltaID
	keys   pubKeys
	online []sign.Verifier
}

func newDeltaSource(t *testing.T) *deltaSource {
	t.Helper()
	keys := genKeys(t)
	verifiers, err := sign.LoadVerifiers(keys.dir)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := ostree.Create(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	p := &release.Publisher{Repo: repo, Signers: keys.signers, Deltas: &release.DeltaPolicy{Sources: 1}}
	var res *release.Result
	for _, v := range []string{"10.0.1", "10.0.2"} {
		if err := os.WriteFile(filepath.Join(src, "hola"), bytes.Repeat([]byte("hola "+v+"\n"), 500), 0o644); err != nil {
			t.Fatal(err)
		}
		if res, err = p.Publish(context.Background(), release.Request{Ref: testingRef64, Version: v, Source: src}); err != nil {
			t.Fatal(err)
		}
	}
	if len(res.Deltas) != 1 || res.Deltas[0].From.IsZero() {
		t.Fatalf("deltas of 10.0.2: %v, want one from 10.0.1", res.Deltas)
	}
	return &deltaSource{repo: repo, delta: res.Deltas[0], keys: keys, online: verifiers}
}

// copyTree copies the directory src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSyncBringsDeltasChecked: sync's delta step (repodeltas.go) on a
// replica that has the ref's head but neither the delta nor the commit it
// starts from. It takes the delta and that commit (marked partial) from
// an intact bucket, and takes nothing (and does not fail: a delta only
// saves bytes) when the superblock, a part or the summary's signature
// was tampered with.
func TestSyncBringsDeltasChecked(t *testing.T) {
	ds := newDeltaSource(t)
	id := ds.delta
	strange := genKeys(t)
	tests := []struct {
		name   string
		tamper func(t *testing.T, bucket object.Store, summary []byte)
		taken  bool
	}{
		{"intact", func(*testing.T, object.Store, []byte) {}, true},
		{"superblock changed", func(t *testing.T, b object.Store, _ []byte) {
			flipObject(t, b, repoStorePrefix+id.SuperblockPath())
		}, false},
		{"part changed", func(t *testing.T, b object.Store, _ []byte) {
			flipObject(t, b, repoStorePrefix+id.PartPath(0))
		}, false},
		{"summary signed by another key", func(t *testing.T, b object.Store, sum []byte) {
			md, err := release.SignData(strange.signers, sum, nil)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := ostree.MarshalMetadata(md)
			if err != nil {
				t.Fatal(err)
			}
			putObject(t, b, repoStorePrefix+"summary.sig", sig)
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			bucket, err := object.NewDir(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := object.Mirror(ctx, bucket, repoStorePrefix, ds.repo.Path(), immutableRepoPath); err != nil {
				t.Fatal(err)
			}
			// The replica: the same repository without the delta and
			// without the commit it starts from.
			dir := filepath.Join(t.TempDir(), "repo")
			copyTree(t, ds.repo.Path(), dir)
			dst, err := ostree.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := dst.RemoveDelta(id); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dir, filepath.FromSlash(ostree.ObjectPath(id.From, ostree.ObjCommit)))); err != nil {
				t.Fatal(err)
			}
			raw := getObject(t, bucket, repoStorePrefix+"summary")
			tc.tamper(t, bucket, raw)
			sum, err := ostree.ParseSummary(raw)
			if err != nil {
				t.Fatal(err)
			}
			h := &storeRepo{store: bucket, dir: dir, log: zap.NewNop(), online: ds.online}
			names, err := h.importDeltas(ctx, dst, sum, raw)
			if err != nil {
				t.Fatalf("importDeltas: %v", err)
			}
			have, lerr := dst.ListDeltas()
			if lerr != nil {
				t.Fatal(lerr)
			}
			_, got := have[id]
			if got != tc.taken || (len(names) == 1) != tc.taken {
				t.Fatalf("delta taken: %v (names %v), want %v", got, names, tc.taken)
			}
			_, perr := os.Stat(filepath.Join(dir, "state", id.From.String()+".commitpartial"))
			if tc.taken && (!dst.HasObject(id.From, ostree.ObjCommit) || perr != nil) {
				t.Errorf("the delta's source commit: present %v, marked partial: %v", dst.HasObject(id.From, ostree.ObjCommit), perr)
			}
			if tc.taken {
				if b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(id.SuperblockPath()))); err != nil ||
					!bytes.Equal(b, getObject(t, bucket, repoStorePrefix+id.SuperblockPath())) {
					t.Errorf("the superblock taken differs from the bucket's: %v", err)
				}
			}
			if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) > 0 {
				for _, e := range ents {
					if e.IsDir() && len(e.Name()) > 10 && e.Name()[:10] == "delta-copy" {
						t.Errorf("a staging directory was left behind: %s", e.Name())
					}
				}
			}
		})
	}
}

func getObject(t *testing.T, s object.Store, key string) []byte {
	t.Helper()
	r, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func putObject(t *testing.T, s object.Store, key string, b []byte) {
	t.Helper()
	if _, err := s.Put(context.Background(), key, bytes.NewReader(b), int64(len(b)), object.Condition{}); err != nil {
		t.Fatal(err)
	}
}

// flipObject changes one byte in the middle of an object.
func flipObject(t *testing.T, s object.Store, key string) {
	t.Helper()
	b := getObject(t, s, key)
	b[len(b)/2] ^= 0x55
	putObject(t, s, key, b)
}
