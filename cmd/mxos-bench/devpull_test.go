package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
)

// TestRequestCounter: the server's request records are counted, also
// through derived loggers, and nothing else is.
func TestRequestCounter(t *testing.T) {
	c := newRequestCounter(zapcore.NewNopCore())
	log := zap.New(c).Named("http").With(zap.String("replica", "a"))
	log.Debug("request", zap.Int("status", 200), zap.Int64("bytes", 10))
	log.Debug("something else", zap.Int64("bytes", 1000))
	log.Warn("request", zap.Int64("bytes", 1000))
	log.Debug("request", zap.Int("status", 404), zap.Int64("bytes", 5))
	st := c.snapshot()
	if st.Requests != 2 || st.Bytes != 15 || st.Status["200"] != 1 || st.Status["404"] != 1 || len(st.Status) != 2 {
		t.Errorf("snapshot = %+v, want 2 requests, 15 bytes, one 200 and one 404", st)
	}
	d := st.sub(serverStats{Requests: 1, Bytes: 10, Status: map[string]int64{"200": 1}})
	if d.Requests != 1 || d.Bytes != 5 || len(d.Status) != 1 || d.Status["404"] != 1 {
		t.Errorf("difference = %+v", d)
	}
}

// TestCloneRepo: objects are hard-linked, other files copied with their
// modification times (ostree's summary cache validators).
func TestCloneRepo(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	files := map[string]string{
		"config":                       "[core]\n",
		"objects/ab/cdef.filez":        "object",
		"objects/ab/cdef.commitmeta":   "meta",
		"tmp/cache/summaries/bench":    "summary",
		"refs/remotes/bench/mxos/10/x": "abc\n",
	}
	old := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for name, body := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	cache := filepath.Join(src, "tmp/cache/summaries/bench")
	xattrs := unix.Setxattr(cache, "user.etag", []byte(`"v1"`), 0) == nil
	dst := filepath.Join(t.TempDir(), "dst")
	if err := cloneRepo(src, dst); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		got, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || string(got) != body {
			t.Errorf("%s: %q, %v; want %q", name, got, err, body)
			continue
		}
		a, _ := os.Stat(filepath.Join(src, name))
		b, _ := os.Stat(filepath.Join(dst, name))
		linked := a.Sys().(*syscall.Stat_t).Ino == b.Sys().(*syscall.Stat_t).Ino
		if want := name == "objects/ab/cdef.filez"; linked != want {
			t.Errorf("%s: hard-linked %v, want %v", name, linked, want)
		}
		if !b.ModTime().Equal(old) {
			t.Errorf("%s: mtime %v, want %v", name, b.ModTime(), old)
		}
	}
	if xattrs {
		buf := make([]byte, 64)
		n, err := unix.Getxattr(filepath.Join(dst, "tmp/cache/summaries/bench"), "user.etag", buf)
		if err != nil || string(buf[:n]) != `"v1"` {
			t.Errorf("etag xattr: %q, %v", buf[:n], err)
		}
	}
}
