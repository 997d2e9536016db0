package unpack

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/mxos-linux/mxos-update/internal/oci/imageio/layouttest"
)

func writeLayout(t *testing.T) (string, layouttest.Image) {
	dir := filepath.Join(t.TempDir(), "layout")
	img := layouttest.Write(t, dir, "v1", "amd64", map[string]string{"k": "v"},
		layouttest.Tar(t, []layouttest.File{{Name: "etc/os-release", Body: "NAME=MxOS\n"}}),
		layouttest.Tar(t, []layouttest.File{{Name: "etc/.wh.os-release"}, {Name: "etc/hostname", Body: "aula\n"}}))
	return dir, img
}

func TestLayoutUnpack(t *testing.T) {
	dir, want := writeLayout(t)
	l, err := OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, name := range []string{"v1", want.Manifest.String(), ""} {
		img, err := l.Image(name)
		if err != nil || img.ManifestDigest != want.Manifest || img.Config.Config.Labels["k"] != "v" {
			t.Fatalf("Image(%q): %+v %v", name, img, err)
		}
	}
	img, _ := l.Image("v1")
	dest := t.TempDir()
	st, err := l.Unpack(context.Background(), img, dest, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dest, "etc/os-release")); err == nil || st.Whiteouts != 1 {
		t.Fatal("the second layer's whiteout was not applied")
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "etc/hostname")); string(b) != "aula\n" {
		t.Fatalf("hostname %q", b)
	}
}

func TestLayoutRefusals(t *testing.T) {
	blob := func(dir string, d string) string {
		return filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))
	}
	cases := []struct {
		name   string
		spoil  func(dir string, img layouttest.Image)
		want   error
		unpack bool
	}{
		{"unknown tag", func(string, layouttest.Image) {}, ErrNotFound, false},
		{"manifest altered", func(dir string, img layouttest.Image) {
			p := blob(dir, img.Manifest.String())
			b, _ := os.ReadFile(p)
			os.WriteFile(p, append(b, ' '), 0o644)
		}, ErrDigest, false},
		{"config altered", func(dir string, img layouttest.Image) {
			p := blob(dir, img.Config.String())
			b, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(b), `"k":"v"`, `"k":"w"`, 1)), 0o644)
		}, ErrDigest, false},
		{"index names a list", func(dir string, img layouttest.Image) {
			p := filepath.Join(dir, "index.json")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(b), v1.MediaTypeImageManifest, v1.MediaTypeImageIndex, 1)), 0o644)
		}, ErrUnsupported, false},
		{"layer altered", func(dir string, img layouttest.Image) {
			p := blob(dir, img.Layers[1].Digest.String())
			b, _ := os.ReadFile(p)
			b[len(b)-5] ^= 0xff
			os.WriteFile(p, b, 0o644)
		}, nil, true},
		{"layer missing", func(dir string, img layouttest.Image) {
			os.Remove(blob(dir, img.Layers[0].Digest.String()))
		}, os.ErrNotExist, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, img := writeLayout(t)
			c.spoil(dir, img)
			l, err := OpenLayout(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			name := "v1"
			if c.name == "unknown tag" {
				name = "v2"
			}
			got, err := l.Image(name)
			if !c.unpack {
				if !errors.Is(err, c.want) {
					t.Fatalf("got %v, want %v", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			_, err = l.Unpack(context.Background(), got, t.TempDir(), Options{})
			if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	// Not a layout at all.
	if _, err := OpenLayout(t.TempDir()); err == nil {
		t.Fatal("a directory without oci-layout opened")
	}
	bad := t.TempDir()
	b, _ := json.Marshal(v1.ImageLayout{Version: "9.9.9"})
	os.WriteFile(filepath.Join(bad, "oci-layout"), b, 0o644)
	if _, err := OpenLayout(bad); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("unknown layout version: %v", err)
	}
}
