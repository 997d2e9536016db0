package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/storage/object"
)

// breakable is an object store whose writes of the summary fail while
// broken is set, like a bucket that went away mid-publish.
type breakable struct {
	object.Store
	broken atomic.Bool
}

func (b *breakable) Put(ctx context.Context, key string, r io.Reader, size int64, c object.Condition) (object.Info, error) {
	if b.broken.Load() && strings.HasSuffix(key, "summary") {
		return object.Info{}, errors.New("connection reset by peer")
	}
	return b.Store.Put(ctx, key, r, size, c)
}

// TestPublishMirrorFailureRollsBack: a release whose copy to object
// storage fails is not recorded, and the server's own ref is put back,
// so no later mirror can publish a release the database does not know;
// the same release then succeeds once the bucket is back.
func TestPublishMirrorFailureRollsBack(t *testing.T) {
	dir, err := object.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	bucket := &breakable{Store: dir}
	f := newPubFixtureWith(t, func(c *Config) { c.RepoStore = bucket })
	tree, meta := f.tree(t, "10.0.1")
	b := f.build(t, tree, meta, testingRef64, "10.0.1", f.release.signers)
	f.upload(t, b)

	bucket.broken.Store(true)
	if code, body := f.rel(t, "POST", "/api/v1/releases", releaseReq("testing", "10.0.1", b, "")); code < 500 {
		t.Fatalf("release with the bucket failing: %d %s, want a 5xx", code, body)
	}
	if _, err := f.repo.ResolveRef(testingRef64); !errors.Is(err, ostree.ErrNotFound) {
		t.Errorf("the local ref after a failed mirror: %v, want none", err)
	}
	if rs, _ := f.store.ListReleases(context.Background(), "testing", ""); len(rs) != 0 {
		t.Errorf("a release whose mirror failed was recorded: %+v", rs)
	}
	// What clients read, the bucket's summary, does not list it. (The
	// ref file, written before the summary, may: the next mirror puts it
	// back to the server's.)
	if r, err := dir.Get(context.Background(), repoStorePrefix+"summary"); err == nil {
		b, _ := io.ReadAll(r)
		r.Close()
		if sum, err := ostree.ParseSummary(b); err != nil {
			t.Error(err)
		} else if _, ok := sum.Lookup(testingRef64); ok {
			t.Error("the bucket's summary lists a release whose mirror failed")
		}
	} else if !errors.Is(err, object.ErrNotFound) {
		t.Fatal(err)
	}

	bucket.broken.Store(false)
	if code, body := f.rel(t, "POST", "/api/v1/releases", releaseReq("testing", "10.0.1", b, "")); code != http.StatusCreated {
		t.Fatalf("release once the bucket is back: %d %s", code, body)
	}
	if c, err := f.repo.ResolveRef(testingRef64); err != nil || c != b.commit {
		t.Errorf("local ref = %s, %v; want %s", c, err, b.commit)
	}
	r, err := dir.Get(context.Background(), repoStorePrefix+"refs/heads/"+testingRef64)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if strings.TrimSpace(string(got)) != b.commit.String() {
		t.Errorf("bucket ref = %q, want %s", got, b.commit)
	}
}
