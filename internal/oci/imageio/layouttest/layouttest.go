// Package layouttest writes small OCI image layouts by hand for tests of
// the image import, export and fetch paths. It is imported only from
// _test.go files.
package layouttest

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// File is one tar entry.
type File struct {
	Name string
	Body string
	Mode int64
	Type byte // tar.TypeReg when zero
	Link string
}

// Tar is the tar stream of files.
func Tar(t testing.TB, files []File) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		typ := f.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: f.Name, Typeflag: typ, Mode: mode, Linkname: f.Link, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			h.Size = int64(len(f.Body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			tw.Write([]byte(f.Body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Image is what Write made.
type Image struct {
	Manifest digest.Digest
	Config   digest.Digest
	Layers   []v1.Descriptor
}

func putBlob(t testing.TB, dir string, b []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(b)
	p := filepath.Join(dir, "blobs", "sha256", d.Encoded())
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

// Write creates (or adds to) an OCI layout in dir holding one linux image
// tagged tag: each tar stream becomes a gzip layer, labels go into the
// config. arch is the OCI architecture (amd64).
func Write(t testing.TB, dir, tag, arch string, labels map[string]string, tars ...[]byte) Image {
	t.Helper()
	var img Image
	cfg := v1.Image{Platform: v1.Platform{Architecture: arch, OS: "linux"}, Config: v1.ImageConfig{Labels: labels},
		RootFS: v1.RootFS{Type: "layers"}}
	for _, tb := range tars {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(tb)
		zw.Close()
		d := putBlob(t, dir, z.Bytes())
		img.Layers = append(img.Layers, v1.Descriptor{MediaType: v1.MediaTypeImageLayerGzip, Digest: d, Size: int64(z.Len())})
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, digest.FromBytes(tb))
	}
	cb, _ := json.Marshal(cfg)
	img.Config = putBlob(t, dir, cb)
	m := v1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest,
		Config: v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: img.Config, Size: int64(len(cb))}, Layers: img.Layers}
	mb, _ := json.Marshal(m)
	img.Manifest = putBlob(t, dir, mb)

	var idx v1.Index
	if b, err := os.ReadFile(filepath.Join(dir, "index.json")); err == nil {
		if err := json.Unmarshal(b, &idx); err != nil {
			t.Fatal(err)
		}
	}
	idx.SchemaVersion = 2
	idx.MediaType = v1.MediaTypeImageIndex
	idx.Manifests = append(idx.Manifests, v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: img.Manifest,
		Size: int64(len(mb)), Annotations: map[string]string{v1.AnnotationRefName: tag}})
	ib, _ := json.Marshal(idx)
	if err := os.WriteFile(filepath.Join(dir, "index.json"), ib, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return img
}
