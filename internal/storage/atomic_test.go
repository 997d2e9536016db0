package storage

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	tmpDir := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmpDir, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		opts    []WriteOption
		perm    fs.FileMode
		wantErr error
		writes  []string
	}{
		{name: "replace", path: "f", perm: 0o600, writes: []string{"one", "two"}},
		{name: "missing parents are made", path: "a/b/c/f", perm: 0o644, writes: []string{"x"}},
		{name: "temp in a given dir", path: "g", perm: 0o644, opts: []WriteOption{TempDir(tmpDir)}, writes: []string{"one", "two"}},
		{name: "fixed temp path", path: "h", perm: 0o644, opts: []WriteOption{TempPath(filepath.Join(dir, "h.tmp"))}, writes: []string{"one", "two"}},
		{name: "no clobber", path: "k", perm: 0o600, opts: []WriteOption{NoClobber()}, writes: []string{"one", "two"}, wantErr: fs.ErrExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.path)
			want := ""
			for i, s := range tt.writes {
				err := WriteFile(p, []byte(s), tt.perm, tt.opts...)
				if i > 0 && tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("write %d = %v, want %v", i, err, tt.wantErr)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				want = s
			}
			got, err := os.ReadFile(p)
			if err != nil || string(got) != want {
				t.Fatalf("read %q, %v; want %q", got, err, want)
			}
			fi, err := os.Stat(p)
			if err != nil || fi.Mode().Perm() != tt.perm {
				t.Fatalf("mode %v, %v; want %v", fi.Mode().Perm(), err, tt.perm)
			}
		})
	}
	// Nothing but the files written is left: no temporary file anywhere.
	var left []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			left = append(left, p[len(dir)+1:])
		}
		return nil
	})
	if want := []string{"a/b/c/f", "f", "g", "h", "k"}; !equal(left, want) {
		t.Errorf("files left %v, want %v", left, want)
	}
	if err := Syncfs(dir); err != nil {
		t.Fatal(err)
	}
}

func TestWriteFileFailureLeavesOld(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A temporary directory that does not exist: nothing may change.
	if err := WriteFile(p, []byte("new"), 0o644, TempDir(filepath.Join(dir, "nope"))); err == nil {
		t.Fatal("write through a missing temporary directory succeeded")
	}
	if got, _ := os.ReadFile(p); string(got) != "old" {
		t.Fatalf("content %q after a failed write, want old", got)
	}
	// A file where a parent directory should be.
	if err := WriteFile(filepath.Join(p, "g"), []byte("x"), 0o644); err == nil {
		t.Fatal("write under a regular file succeeded")
	}
}

func TestMkdirAll(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a", "b", "c")
	for range 2 {
		if err := MkdirAll(p, 0o750); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(p)
		if err != nil || !fi.IsDir() {
			t.Fatalf("stat %v, %v", fi, err)
		}
	}
	f := filepath.Join(dir, "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := MkdirAll(f, 0o755); err == nil {
		t.Fatal("MkdirAll over a file succeeded")
	}
	if err := MkdirAll(filepath.Join(f, "x"), 0o755); err == nil {
		t.Fatal("MkdirAll under a file succeeded")
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
