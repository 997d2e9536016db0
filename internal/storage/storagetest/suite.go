// Package storagetest holds what tests of object storage share: the
// conformance suite every object.Store backend must pass (Run), and a real
// S3 server (versitygw) started for a test (StartS3). It is imported only
// from _test.go files.
//
// The suite is modelled on distribution's storage driver test suite:
// write, read, stat, list and delete; missing keys; hostile keys (../,
// absolute, empty components); large streams read back whole and from an
// offset; and concurrent writers, where conditional writes must keep every
// increment of a shared counter and concurrent verified puts of one blob
// must all succeed with the same bytes.
package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/mxos-linux/mxos-update/internal/storage"
	"github.com/mxos-linux/mxos-update/internal/storage/object"
)

// Run runs the conformance suite; open returns an empty store for each
// subtest.
func Run(t *testing.T, open func(t *testing.T) object.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s object.Store)
	}{
		{"WriteReadStat", testWriteReadStat},
		{"Empty", testEmpty},
		{"Missing", testMissing},
		{"HostileKeys", testHostileKeys},
		{"LargeStream", testLargeStream},
		{"VerifiedRefusesMismatch", testVerifiedRefuses},
		{"Conditional", testConditional},
		{"ConcurrentConditionalWriters", testConcurrentWriters},
		{"ConcurrentVerifiedPuts", testConcurrentVerified},
		{"List", testList},
		{"Delete", testDelete},
		{"ReaderAfterReplace", testReaderAfterReplace},
		{"Touch", testTouch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

var ctx = context.Background()

func put(t *testing.T, s object.Store, key string, data []byte, c object.Condition) object.Info {
	t.Helper()
	info, err := s.Put(ctx, key, bytes.NewReader(data), int64(len(data)), c)
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return info
}

func read(t *testing.T, s object.Store, key string) []byte {
	t.Helper()
	r, err := s.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	if int64(len(b)) != r.Info().Size {
		t.Fatalf("read %s: %d bytes, Info says %d", key, len(b), r.Info().Size)
	}
	return b
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func testWriteReadStat(t *testing.T, s object.Store) {
	data := []byte("ref: 0123456789abcdef\n")
	info := put(t, s, "refs/heads/mxos/10/x86_64/stable", data, object.Condition{})
	if info.Size != int64(len(data)) || info.ETag == "" || info.Key != "refs/heads/mxos/10/x86_64/stable" {
		t.Fatalf("put returned %+v", info)
	}
	if got := read(t, s, info.Key); !bytes.Equal(got, data) {
		t.Fatalf("read %q, want %q", got, data)
	}
	st, err := s.Stat(ctx, info.Key)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size != info.Size || st.ETag != info.ETag {
		t.Fatalf("stat %+v, put said %+v", st, info)
	}
	if time.Since(st.ModTime) > time.Hour || time.Until(st.ModTime) > time.Minute {
		t.Fatalf("modification time %v is not now", st.ModTime)
	}
	// An unconditional put replaces, and the ETag changes with the bytes.
	data2 := []byte("other content, longer than the first one was")
	info2 := put(t, s, info.Key, data2, object.Condition{})
	if got := read(t, s, info.Key); !bytes.Equal(got, data2) {
		t.Fatalf("after replace read %q", got)
	}
	if info2.ETag == info.ETag {
		t.Fatalf("ETag %s unchanged after the content changed", info.ETag)
	}
}

func testEmpty(t *testing.T, s object.Store) {
	put(t, s, "empty", nil, object.Condition{})
	if got := read(t, s, "empty"); len(got) != 0 {
		t.Fatalf("read %d bytes", len(got))
	}
	d := digest.FromBytes(nil)
	if _, err := s.PutVerified(ctx, object.BlobKey(d), d, 0, bytes.NewReader(nil)); err != nil {
		t.Fatal(err)
	}
	if st, err := s.Stat(ctx, object.BlobKey(d)); err != nil || st.Size != 0 {
		t.Fatalf("stat %+v %v", st, err)
	}
}

func testMissing(t *testing.T, s object.Store) {
	const key = "objects/ab/missing.commit"
	if _, err := s.Get(ctx, key); !errors.Is(err, object.ErrNotFound) {
		t.Errorf("get: %v, want ErrNotFound", err)
	}
	if _, err := s.Stat(ctx, key); !errors.Is(err, object.ErrNotFound) {
		t.Errorf("stat: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, key); !errors.Is(err, object.ErrNotFound) {
		t.Errorf("delete: %v, want ErrNotFound", err)
	}
	if err := s.Touch(ctx, key); !errors.Is(err, object.ErrNotFound) {
		t.Errorf("touch: %v, want ErrNotFound", err)
	}
	_, err := s.Put(ctx, key, bytes.NewReader([]byte("x")), 1, object.Condition{IfMatch: `"0123"`})
	if !errors.Is(err, object.ErrPrecondition) {
		t.Errorf("put if-match on a missing key: %v, want ErrPrecondition", err)
	}
	if _, err := s.Stat(ctx, key); !errors.Is(err, object.ErrNotFound) {
		t.Errorf("a refused put left %s behind: %v", key, err)
	}
	// A file's name used as a directory is missing, not an error.
	put(t, s, "file", []byte("x"), object.Condition{})
	if _, err := s.Stat(ctx, "file/below"); !errors.Is(err, object.ErrNotFound) {
		t.Errorf("stat file/below: %v, want ErrNotFound", err)
	}
}

// HostileKeys are refused by every method with ErrBadKey.
var HostileKeys = []string{
	"", "../escape", "a/../../escape", "/etc/passwd", "a//b", "a/./b", "./a", "a/",
	"..", ".", "a\\..\\b", "a\x00b", "a\nb", ".mxos-tmp/x", ".mxos-lock",
	string(bytes.Repeat([]byte("k"), object.MaxKeyLen+1)), "\xff\xfe",
}

func testHostileKeys(t *testing.T, s object.Store) {
	d := digest.FromString("x")
	for _, key := range HostileKeys {
		checks := map[string]error{}
		_, checks["get"] = s.Get(ctx, key)
		_, checks["stat"] = s.Stat(ctx, key)
		_, checks["put"] = s.Put(ctx, key, bytes.NewReader([]byte("x")), 1, object.Condition{})
		_, checks["putverified"] = s.PutVerified(ctx, key, d, 1, bytes.NewReader([]byte("x")))
		checks["touch"] = s.Touch(ctx, key)
		checks["delete"] = s.Delete(ctx, key)
		for op, err := range checks {
			if !errors.Is(err, object.ErrBadKey) {
				t.Errorf("%s %q: %v, want ErrBadKey", op, key, err)
			}
		}
	}
	for _, p := range []string{"../", "/", "a//", ".mxos-tmp/"} {
		if err := s.List(ctx, p, func(object.Info) error { return nil }); !errors.Is(err, object.ErrBadKey) {
			t.Errorf("list %q: %v, want ErrBadKey", p, err)
		}
	}
	n := 0
	if err := s.List(ctx, "", func(object.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("refused keys stored %d objects", n)
	}
}

func testLargeStream(t *testing.T, s object.Store) {
	const size = 24<<20 + 12345
	data := randBytes(size)
	d := digest.FromBytes(data)
	key := object.BlobKey(d)
	// An unknown size (-1) and a plain io.Reader: a stream, not a buffer.
	info, err := s.PutVerified(ctx, key, d, -1, struct{ io.Reader }{bytes.NewReader(data)})
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != size {
		t.Fatalf("size %d, want %d", info.Size, size)
	}
	r, err := s.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := digest.Canonical.Digester()
	if n, err := io.Copy(h.Hash(), r); err != nil || n != size {
		t.Fatalf("read back %d bytes: %v", n, err)
	}
	if h.Digest() != d {
		t.Fatalf("read back %s, stored %s", h.Digest(), d)
	}
	// Seek into the middle and read a range, as http.ServeContent does.
	for _, off := range []int64{size - 1, 1 << 20, 0, size / 2} {
		if _, err := r.Seek(off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, err := io.ReadFull(r, buf)
		if err != nil && !(errors.Is(err, io.ErrUnexpectedEOF) && off+int64(n) == size) {
			t.Fatalf("read at %d: %v", off, err)
		}
		if !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
			t.Fatalf("bytes at %d differ", off)
		}
	}
	if end, err := r.Seek(0, io.SeekEnd); err != nil || end != size {
		t.Fatalf("seek to end: %d %v", end, err)
	}
}

func testVerifiedRefuses(t *testing.T, s object.Store) {
	data := []byte("the real content")
	d := digest.FromBytes(data)
	key := object.BlobKey(d)
	cases := []struct {
		name string
		d    digest.Digest
		size int64
		body []byte
		want error
	}{
		{"other bytes", d, -1, []byte("forged content!!"), storage.ErrDigestMismatch},
		{"truncated", d, int64(len(data)), data[:5], storage.ErrSizeMismatch},
		{"longer", d, int64(len(data)), append(append([]byte{}, data...), 'x'), storage.ErrSizeMismatch},
		{"wrong size given", d, 3, data, storage.ErrSizeMismatch},
		{"bad digest", "sha256:zz", -1, data, storage.ErrBadDigest},
		{"md5", "md5:d41d8cd98f00b204e9800998ecf8427e", -1, data, storage.ErrBadDigest},
	}
	for _, c := range cases {
		if _, err := s.PutVerified(ctx, key, c.d, c.size, bytes.NewReader(c.body)); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if _, err := s.Stat(ctx, key); !errors.Is(err, object.ErrNotFound) {
			t.Fatalf("%s: something is visible under %s: %v", c.name, key, err)
		}
	}
	// A sha512 digest is as good as sha256.
	d512 := digest.SHA512.FromBytes(data)
	if _, err := s.PutVerified(ctx, object.BlobKey(d512), d512, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	// The right bytes go in; a second put of the same digest keeps them
	// and still checks what it was given.
	if _, err := s.PutVerified(ctx, key, d, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutVerified(ctx, key, d, -1, bytes.NewReader([]byte("forged"))); !errors.Is(err, storage.ErrDigestMismatch) {
		t.Fatalf("forged re-put: %v", err)
	}
	if got := read(t, s, key); !bytes.Equal(got, data) {
		t.Fatalf("read %q", got)
	}
	if n := count(t, s, ""); n != 2 {
		t.Fatalf("%d objects stored, want 2 (refused puts must leave nothing)", n)
	}
}

func count(t *testing.T, s object.Store, prefix string) int {
	t.Helper()
	n := 0
	if err := s.List(ctx, prefix, func(object.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func testConditional(t *testing.T, s object.Store) {
	const key = "summary"
	v1 := put(t, s, key, []byte("v1"), object.Condition{IfNoneMatch: true})
	if _, err := s.Put(ctx, key, bytes.NewReader([]byte("v1b")), 3, object.Condition{IfNoneMatch: true}); !errors.Is(err, object.ErrPrecondition) {
		t.Fatalf("create over an existing key: %v, want ErrPrecondition", err)
	}
	v2 := put(t, s, key, []byte("v2 longer"), object.Condition{IfMatch: v1.ETag})
	if _, err := s.Put(ctx, key, bytes.NewReader([]byte("v3")), 2, object.Condition{IfMatch: v1.ETag}); !errors.Is(err, object.ErrPrecondition) {
		t.Fatalf("replace with a stale ETag: %v, want ErrPrecondition", err)
	}
	if got := read(t, s, key); string(got) != "v2 longer" {
		t.Fatalf("read %q after refused writes", got)
	}
	put(t, s, key, []byte("v3"), object.Condition{IfMatch: v2.ETag})
	if got := read(t, s, key); string(got) != "v3" {
		t.Fatalf("read %q", got)
	}
}

// testConcurrentWriters: writers doing read-modify-write with If-Match on
// one counter; every successful write must count.
func testConcurrentWriters(t *testing.T, s object.Store) {
	const key, writers, each = "counter", 6, 8
	put(t, s, key, []byte("0"), object.Condition{})
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; {
				r, err := s.Get(ctx, key)
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(r)
				r.Close()
				if err != nil {
					errs <- err
					return
				}
				n, err := strconv.Atoi(string(b))
				if err != nil {
					errs <- fmt.Errorf("writer %d read %q: %w", w, b, err)
					return
				}
				next := []byte(strconv.Itoa(n + 1))
				_, err = s.Put(ctx, key, bytes.NewReader(next), int64(len(next)), object.Condition{IfMatch: r.Info().ETag})
				switch {
				case err == nil:
					i++
				case errors.Is(err, object.ErrPrecondition):
					time.Sleep(time.Duration(mrand.IntN(3)) * time.Millisecond)
				default:
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := string(read(t, s, key)); got != strconv.Itoa(writers*each) {
		t.Fatalf("counter is %s after %d conditional increments: writers interleaved", got, writers*each)
	}
}

func testConcurrentVerified(t *testing.T, s object.Store) {
	data := randBytes(1 << 20)
	d := digest.FromBytes(data)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.PutVerified(ctx, object.BlobKey(d), d, int64(len(data)), bytes.NewReader(data)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := read(t, s, object.BlobKey(d)); !bytes.Equal(got, data) {
		t.Fatal("concurrent puts of one blob stored other bytes")
	}
}

func testList(t *testing.T, s object.Store) {
	keys := []string{"a/b/1", "a/b/2", "a/c", "ab", "x/y/z/deep"}
	for _, k := range keys {
		put(t, s, k, []byte(k), object.Condition{})
	}
	cases := map[string][]string{
		"":        keys,
		"a/":      {"a/b/1", "a/b/2", "a/c"},
		"a":       {"a/b/1", "a/b/2", "a/c", "ab"},
		"a/b/":    {"a/b/1", "a/b/2"},
		"a/b/1":   {"a/b/1"},
		"x/y/z/d": {"x/y/z/deep"},
		"nope/":   nil,
		"ab/":     nil,
	}
	for prefix, want := range cases {
		var got []string
		err := s.List(ctx, prefix, func(i object.Info) error {
			if i.Size != int64(len(i.Key)) {
				t.Errorf("list %q: %s has size %d", prefix, i.Key, i.Size)
			}
			got = append(got, i.Key)
			return nil
		})
		if err != nil {
			t.Fatalf("list %q: %v", prefix, err)
		}
		sort.Strings(got)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("list %q = %v, want %v", prefix, got, want)
		}
	}
	// fn's error stops the listing and comes back.
	stop := errors.New("stop")
	if err := s.List(ctx, "", func(object.Info) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("list returned %v, want fn's error", err)
	}
}

func testDelete(t *testing.T, s object.Store) {
	put(t, s, "objects/aa/bb.filez", []byte("x"), object.Condition{})
	put(t, s, "objects/aa/cc.filez", []byte("y"), object.Condition{})
	if err := s.Delete(ctx, "objects/aa/bb.filez"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "objects/aa/bb.filez"); !errors.Is(err, object.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if err := s.Delete(ctx, "objects/aa/bb.filez"); !errors.Is(err, object.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if n := count(t, s, "objects/"); n != 1 {
		t.Fatalf("%d objects left, want 1", n)
	}
	// A directory-like prefix is not an object.
	if err := s.Delete(ctx, "objects/aa"); !errors.Is(err, object.ErrNotFound) {
		t.Fatalf("delete of a prefix: %v", err)
	}
	if got := read(t, s, "objects/aa/cc.filez"); string(got) != "y" {
		t.Fatalf("sibling damaged: %q", got)
	}
}

// testReaderAfterReplace: a reader opened before a replace reads the old
// version whole or fails; it never mixes the two.
func testReaderAfterReplace(t *testing.T, s object.Store) {
	v1 := bytes.Repeat([]byte("1"), 256<<10)
	v2 := bytes.Repeat([]byte("2"), 256<<10)
	put(t, s, "summary", v1, object.Condition{})
	r, err := s.Get(ctx, "summary")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	head := make([]byte, 10)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}
	put(t, s, "summary", v2, object.Condition{})
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err == nil && !bytes.Equal(got, v1) {
		t.Fatalf("a reader of the old version read %d bytes that are not it", len(got))
	}
}

func testTouch(t *testing.T, s object.Store) {
	data := []byte("blob")
	d := digest.FromBytes(data)
	key := object.BlobKey(d)
	info, err := s.PutVerified(ctx, key, d, 4, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // S3 times have one-second resolution
	if err := s.Touch(ctx, key); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if !st.ModTime.After(info.ModTime) {
		t.Fatalf("touch left the time at %v (was %v)", st.ModTime, info.ModTime)
	}
	if got := read(t, s, key); !bytes.Equal(got, data) {
		t.Fatalf("touch changed the content to %q", got)
	}
}
