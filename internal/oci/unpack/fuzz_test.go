package unpack

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// FuzzApply feeds arbitrary bytes as two uncompressed layers (the input
// and then the input again, so whatever the first planted the second
// meets) and checks that nothing is ever written outside the destination
// and that every failure is an error, not a panic.
func FuzzApply(f *testing.F) {
	outside := "/nonexistent-mxos-fuzz"
	seeds := [][]ent{
		{file("etc/os-release", "NAME=MxOS\n"), dir("usr"), symlink("bin", "usr/bin"), hardlink("os", "etc/os-release")},
		{symlink("s", outside), file("s/evil", "x")},
		{symlink("s", ".."), file("x/../../y", "")},
		{file("a/.wh..wh..opq", ""), file(".wh.a", ""), file("a/.wh.b", "")},
		{hardlink("h", "../x"), {name: "p", typ: 'p'}},
		{{name: "su", typ: '0', body: "x", mode: 0o4755}},
	}
	for _, s := range seeds {
		f.Add(tarOf(f, s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dest := filepath.Join(parent, "dest")
		os.Mkdir(dest, 0o700)
		u, err := New(dest, Options{MaxBytes: 1 << 20, MaxEntries: 1000})
		if err != nil {
			t.Fatal(err)
		}
		desc := v1.Descriptor{MediaType: v1.MediaTypeImageLayer, Digest: digest.FromBytes(data), Size: int64(len(data))}
		for i := 0; i < 2 && err == nil; i++ {
			err = u.Apply(context.Background(), bytes.NewReader(data), desc, digest.FromBytes(data))
		}
		if err == nil {
			_, err = u.Finish()
		} else {
			u.Close()
		}
		if ents, _ := os.ReadDir(parent); len(ents) != 1 {
			t.Fatalf("wrote outside the destination: %v (err %v)", ents, err)
		}
		if _, serr := os.Lstat(outside); serr == nil {
			t.Fatalf("created %s", outside)
		}
	})
}
