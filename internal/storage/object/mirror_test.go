package object_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/storage/object"
)

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func immutable(p string) bool { return strings.HasPrefix(p, "objects/") }

func get(t *testing.T, s object.Store, key string) string {
	t.Helper()
	r, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	return string(b)
}

// TestMirror: a repository directory copied twice into a store; the
// second run sends only what changed, skips temporary files, and a
// mutable file changed in the store by another writer since it was read
// is not overwritten.
func TestMirror(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	writeTree(t, src, map[string]string{
		"config": "[core]\nmode=archive-z2\n", "objects/ab/cdef.filez": "content",
		"refs/heads/mxos/10/x86_64/stable": "abcdef\n", "summary": "s1", "summary.sig": "sig1",
		"tmp/half-written": "x", ".tmp-summary-1": "y", "objects/ab/.tmp-x": "z",
	})
	dst, err := object.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st, err := object.Mirror(ctx, dst, "repo/", src, immutable)
	if err != nil {
		t.Fatal(err)
	}
	if st.Created != 5 || st.Replaced != 0 {
		t.Fatalf("first mirror %+v, want 5 created", st)
	}
	var keys []string
	_ = dst.List(ctx, "", func(i object.Info) error { keys = append(keys, i.Key); return nil })
	for _, k := range keys {
		if strings.Contains(k, "tmp") {
			t.Fatalf("a temporary file was mirrored: %s", k)
		}
	}
	writeTree(t, src, map[string]string{"summary": "s2", "summary.sig": "sig2", "objects/cd/ef01.filez": "more"})
	st, err = object.Mirror(ctx, dst, "repo/", src, immutable)
	if err != nil {
		t.Fatal(err)
	}
	if st.Created != 1 || st.Replaced != 2 || st.Unchanged != 3 {
		t.Fatalf("second mirror %+v, want 1 created, 2 replaced, 3 unchanged", st)
	}
	if got := get(t, dst, "repo/summary"); got != "s2" {
		t.Fatalf("summary in the store: %q", got)
	}
	// Content-addressed files are never replaced, even when the local
	// copy differs (it cannot, for a real repository).
	writeTree(t, src, map[string]string{"objects/ab/cdef.filez": "tampered"})
	if _, err := object.Mirror(ctx, dst, "repo/", src, immutable); err != nil {
		t.Fatal(err)
	}
	if got := get(t, dst, "repo/objects/ab/cdef.filez"); got != "content" {
		t.Fatalf("an immutable object was replaced: %q", got)
	}
	// Another writer replaces the summary between our read and write:
	// the conditional write refuses, nothing of ours lands.
	racing := &racingStore{Store: dst, key: "repo/summary"}
	writeTree(t, src, map[string]string{"summary": "s3"})
	if _, err := object.Mirror(ctx, racing, "repo/", src, immutable); !errors.Is(err, object.ErrPrecondition) {
		t.Fatalf("mirror over a concurrent change: %v, want ErrPrecondition", err)
	}
	if got := get(t, dst, "repo/summary"); got != "other writer" {
		t.Fatalf("summary after the race: %q", got)
	}
}

// racingStore replaces key right after it is read, as another server
// would.
type racingStore struct {
	object.Store
	key  string
	done bool
}

func (r *racingStore) Get(ctx context.Context, key string) (object.Reader, error) {
	rd, err := r.Store.Get(ctx, key)
	if err == nil && key == r.key && !r.done {
		r.done = true
		if _, err := r.Store.Put(ctx, key, strings.NewReader("other writer"), -1, object.Condition{}); err != nil {
			return nil, err
		}
	}
	return rd, err
}

func TestServe(t *testing.T) {
	ctx := context.Background()
	s, err := object.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "objects/ab/cd.filez", bytes.NewReader([]byte("0123456789")), 10, object.Condition{}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, "/")
		_ = object.Serve(w, r, s, key, object.ServeOptions{Immutable: strings.HasPrefix(key, "objects/"), Redirect: true})
	}))
	defer srv.Close()
	do := func(method, path string, hdr ...string) (*http.Response, string) {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	resp, body := do("GET", "/objects/ab/cd.filez")
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || body != "0123456789" || etag == "" || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Fatalf("GET: %d %q %v (a directory store cannot redirect: streamed)", resp.StatusCode, body, resp.Header)
	}
	if resp, body := do("GET", "/objects/ab/cd.filez", "Range", "bytes=2-4"); resp.StatusCode != 206 || body != "234" {
		t.Fatalf("range: %d %q", resp.StatusCode, body)
	}
	if resp, _ := do("GET", "/objects/ab/cd.filez", "If-None-Match", etag); resp.StatusCode != 304 {
		t.Fatalf("revalidation: %d", resp.StatusCode)
	}
	if resp, body := do("HEAD", "/objects/ab/cd.filez"); resp.StatusCode != 200 || body != "" || resp.ContentLength != 10 {
		t.Fatalf("HEAD: %d %q %d", resp.StatusCode, body, resp.ContentLength)
	}
	for _, p := range []string{"/objects/ab/missing.filez", "/.mxos-lock", "/objects/ab/"} {
		if resp, _ := do("GET", p); resp.StatusCode != 404 {
			t.Fatalf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
	if resp, _ := do("PUT", "/objects/ab/cd.filez"); resp.StatusCode != 405 {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
}

// TestMirrorExpecting: a writer whose copy was built on the store's
// files as it read them replaces them; one whose view is stale (the
// summary or a ref changed since, or a ref appeared that it never saw)
// fails with ErrPrecondition and leaves the store as it was.
func TestMirrorExpecting(t *testing.T) {
	ctx := context.Background()
	dst, err := object.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	first := t.TempDir()
	writeTree(t, first, map[string]string{"refs/heads/a": "1\n", "summary": "s1", "summary.sig": "sig1"})
	if _, err := object.Mirror(ctx, dst, "repo/", first, immutable); err != nil {
		t.Fatal(err)
	}
	etag := func(key string) string {
		t.Helper()
		i, err := dst.Stat(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return i.ETag
	}
	seen := map[string]string{"summary": etag("repo/summary"), "summary.sig": etag("repo/summary.sig"), "refs/heads/a": etag("repo/refs/heads/a")}
	ahead := t.TempDir() // built on what the store holds: ref a kept, ref b added
	writeTree(t, ahead, map[string]string{"refs/heads/a": "1\n", "refs/heads/b": "2\n", "summary": "s2", "summary.sig": "sig2"})

	for _, tc := range []struct {
		name   string
		expect map[string]string
		files  map[string]string // written to the store by another writer first
	}{
		{"summary replaced meanwhile", seen, map[string]string{"repo/summary": "s-other"}},
		{"ref moved meanwhile", seen, map[string]string{"repo/refs/heads/a": "9\n"}},
		{"ref never seen appeared", seen, map[string]string{"repo/refs/heads/b": "7\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.files {
				if _, err := dst.Put(ctx, k, strings.NewReader(v), int64(len(v)), object.Condition{}); err != nil {
					t.Fatal(err)
				}
			}
			_, err := object.MirrorExpecting(ctx, dst, "repo/", ahead, immutable, tc.expect, nil)
			if !errors.Is(err, object.ErrPrecondition) {
				t.Fatalf("stale mirror: %v, want ErrPrecondition", err)
			}
			for k, v := range tc.files {
				if got := get(t, dst, k); got != v {
					t.Errorf("%s = %q after a refused mirror, want %q", k, got, v)
				}
			}
			// Put the store back as the writer saw it.
			for k, v := range map[string]string{"repo/summary": "s1", "repo/refs/heads/a": "1\n"} {
				if _, err := dst.Put(ctx, k, strings.NewReader(v), int64(len(v)), object.Condition{}); err != nil {
					t.Fatal(err)
				}
			}
			if err := dst.Delete(ctx, "repo/refs/heads/b"); err != nil && !errors.Is(err, object.ErrNotFound) {
				t.Fatal(err)
			}
		})
	}
	seen = map[string]string{"summary": etag("repo/summary"), "summary.sig": etag("repo/summary.sig"), "refs/heads/a": etag("repo/refs/heads/a")}
	if _, err := object.MirrorExpecting(ctx, dst, "repo/", ahead, immutable, seen, nil); err != nil {
		t.Fatalf("current mirror: %v", err)
	}
	for k, v := range map[string]string{"repo/summary": "s2", "repo/summary.sig": "sig2", "repo/refs/heads/b": "2\n"} {
		if got := get(t, dst, k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

// statCounter counts Stat calls.
type statCounter struct {
	object.Store
	n int
}

func (s *statCounter) Stat(ctx context.Context, key string) (object.Info, error) {
	s.n++
	return s.Store.Stat(ctx, key)
}

// TestMirrorObjects: the first step alone copies the immutable files and
// no mutable one; a mirror given what it found does not ask the store
// about those files again, and still writes the mutable ones.
func TestMirrorObjects(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	writeTree(t, src, map[string]string{"objects/ab/cdef.filez": "content", "objects/ab/0123.dirtree": "tree",
		"refs/heads/a": "1\n", "summary": "s1", "summary.sig": "sig1"})
	dir, err := object.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dst := &statCounter{Store: dir}
	var present object.Present
	st, err := object.MirrorObjects(ctx, dst, "repo/", src, immutable, &present)
	if err != nil || st.Created != 2 {
		t.Fatalf("MirrorObjects: %+v, %v; want 2 created", st, err)
	}
	for _, k := range []string{"repo/refs/heads/a", "repo/summary", "repo/summary.sig"} {
		if _, err := dir.Stat(ctx, k); !errors.Is(err, object.ErrNotFound) {
			t.Errorf("%s after MirrorObjects: %v, want not found", k, err)
		}
	}
	dst.n = 0
	if _, err := object.MirrorExpecting(ctx, dst, "repo/", src, immutable, nil, &present); err != nil {
		t.Fatal(err)
	}
	if dst.n != 0 {
		t.Errorf("the mirror asked the store about %d files it was told are there", dst.n)
	}
	if got := get(t, dir, "repo/summary"); got != "s1" {
		t.Errorf("summary = %q", got)
	}
}
