package storage

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func tmpFiles(t *testing.T, b *Blobs) []string {
	t.Helper()
	ents, err := os.ReadDir(b.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func walkAll(t *testing.T, b *Blobs) []string {
	t.Helper()
	var got []string
	if err := b.Walk(func(d digest.Digest, fi fs.FileInfo) error {
		got = append(got, d.String())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	return got
}

func TestPutOpenStatDelete(t *testing.T) {
	b, err := OpenBlobs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("hello blobs")
	for _, d := range []digest.Digest{digest.SHA256.FromBytes(data), digest.SHA512.FromBytes(data)} {
		if err := b.Put(d, int64(len(data)), bytes.NewReader(data)); err != nil {
			t.Fatalf("Put %s: %v", d, err)
		}
		// A second Put of the same blob succeeds.
		if err := b.Put(d, -1, bytes.NewReader(data)); err != nil {
			t.Fatalf("second Put %s: %v", d, err)
		}
		fi, err := b.Stat(d)
		if err != nil || fi.Size() != int64(len(data)) {
			t.Fatalf("Stat %s = %v, %v", d, fi, err)
		}
		f, err := b.Open(d)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(f)
		f.Close()
		if !bytes.Equal(got, data) {
			t.Fatalf("Open %s read %q", d, got)
		}
	}
	if got := walkAll(t, b); len(got) != 2 {
		t.Fatalf("Walk found %v", got)
	}
	d := digest.SHA256.FromBytes(data)
	if err := b.Delete(d); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Stat after Delete: %v", err)
	}
	if err := b.Delete(d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Delete: %v", err)
	}
	if _, err := b.Open(d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open after Delete: %v", err)
	}
	if n := tmpFiles(t, b); len(n) != 0 {
		t.Fatalf("temporary files left: %v", n)
	}
}

func TestPutRefusesBadInput(t *testing.T) {
	data := []byte("the real content")
	good := digest.SHA256.FromBytes(data)
	other := digest.SHA256.FromBytes([]byte("something else"))
	tests := []struct {
		name string
		d    digest.Digest
		size int64
		body []byte
		want error
	}{
		{"digest mismatch", other, int64(len(data)), data, ErrDigestMismatch},
		{"digest mismatch unknown size", other, -1, data, ErrDigestMismatch},
		{"too short", good, int64(len(data)) + 1, data, ErrSizeMismatch},
		{"too long", good, int64(len(data)) - 1, data, ErrSizeMismatch},
		{"path characters", digest.Digest("sha256:../../x"), 1, data, ErrBadDigest},
		{"no algorithm", digest.Digest(good.Encoded()), 1, data, ErrBadDigest},
		{"weak algorithm", digest.Digest("md5:d41d8cd98f00b204e9800998ecf8427e"), 1, data, ErrBadDigest},
		{"upper-case hex", digest.Digest("sha256:" + strings.ToUpper(good.Encoded())), 1, data, ErrBadDigest},
		{"short hex", digest.Digest("sha256:abcd"), 1, data, ErrBadDigest},
		{"sha512 length mismatch", digest.Digest("sha512:" + good.Encoded()), 1, data, ErrBadDigest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			b, err := OpenBlobs(dir)
			if err != nil {
				t.Fatal(err)
			}
			err = b.Put(tt.d, tt.size, bytes.NewReader(tt.body))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Put = %v, want %v", err, tt.want)
			}
			if got := walkAll(t, b); len(got) != 0 {
				t.Fatalf("stored %v after a refused Put", got)
			}
			if n := tmpFiles(t, b); len(n) != 0 {
				t.Fatalf("temporary files left: %v", n)
			}
			// Nothing escaped the store's directory either.
			ents, _ := os.ReadDir(filepath.Dir(dir))
			if len(ents) != 1 {
				t.Fatalf("files beside the store: %v", ents)
			}
		})
	}
}

func TestPutFile(t *testing.T) {
	b, err := OpenBlobs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("uploaded in chunks")
	p := filepath.Join(b.TempDir(), "upload")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	wrong := digest.SHA256.FromBytes([]byte("x"))
	if err := b.PutFile(wrong, -1, p); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("PutFile wrong digest = %v", err)
	}
	if err := b.PutFile(digest.SHA256.FromBytes(data), 3, p); !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("PutFile wrong size = %v", err)
	}
	if got := walkAll(t, b); len(got) != 0 {
		t.Fatalf("stored %v", got)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("refused file was removed: %v", err)
	}
	d := digest.SHA256.FromBytes(data)
	if err := b.PutFile(d, int64(len(data)), p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("source still there: %v", err)
	}
	fi, err := b.Stat(d)
	if err != nil || fi.Mode().Perm() != 0o444 {
		t.Fatalf("Stat = %v, %v", fi, err)
	}
}
