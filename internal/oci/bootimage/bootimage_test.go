package bootimage_test

import (
	"archive/tar"
	"bytes"

	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/mxos-linux/mxos-update/internal/oci/bootimage"
	"github.com/mxos-linux/mxos-update/internal/oci/imagename"
	"github.com/mxos-linux/mxos-update/internal/oci/ocitest"
	"github.com/mxos-linux/mxos-update/internal/oci/registry"
	"github.com/mxos-linux/mxos-update/internal/ostree"
)

const (
	testRef  = "mxos/10/x86_64/testing"
	testRepo = "mxos/10/x86_64"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func newRepo(t testing.TB) *ostree.Repo {
	t.Helper()
	r, err := ostree.Create(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func build(t *testing.T, repo *ostree.Repo, store bootimage.ContentStore, commit ostree.Checksum, version string) *bootimage.Image {
	t.Helper()
	im, err := bootimage.Build(context.Background(), repo, store, bootimage.BuildRequest{Repository: testRepo, Arch: "x86_64",
		Version: version, Commit: commit, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return im
}

func blobs(t *testing.T, s *ocitest.MemStore, im *bootimage.Image) [][]byte {
	t.Helper()
	var out [][]byte
	for _, l := range im.Layers {
		rc, err := s.GetBlob(context.Background(), im.Repository, l.Digest)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		out = append(out, b)
	}
	return out
}

func TestBuildIsDeterministic(t *testing.T) {
	// Two repositories, two stores, the same tree and commit: the same bytes.
	var first *bootimage.Image
	for i := range 2 {
		repo := newRepo(t)
		c := ocitest.Commit(t, repo, testRef, "10.0.1", t0, ocitest.OSTree())
		store := ocitest.NewMemStore()
		im := build(t, repo, store, c, "10.0.1")
		again := build(t, repo, store, c, "10.0.1")
		if again.Digest != im.Digest {
			t.Fatalf("same store, second build: %s != %s", again.Digest, im.Digest)
		}
		if first == nil {
			first = im
			continue
		}
		if im.Digest != first.Digest || string(im.Manifest) != string(first.Manifest) {
			t.Fatalf("run %d: manifest %s != %s", i, im.Digest, first.Digest)
		}
	}
	if digest.FromBytes(first.Manifest) != first.Digest {
		t.Fatal("digest does not name the manifest")
	}
}

func TestBuildLabelsAndAnnotations(t *testing.T) {
	repo := newRepo(t)
	c := ocitest.Commit(t, repo, testRef, "10.0.1", t0, ocitest.OSTree())
	store := ocitest.NewMemStore()
	im := build(t, repo, store, c, "10.0.1")

	mt, body, d, err := store.GetManifest(context.Background(), testRepo, im.Digest.String())
	if err != nil || mt != v1.MediaTypeImageManifest || d != im.Digest {
		t.Fatalf("stored manifest: %q %s %v", mt, d, err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	var cfg v1.Image
	if err := json.Unmarshal(im.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"ostree.commit":                    c.String(),
		"ostree.bootable":                  "true",
		"containers.bootc":                 "1",
		"org.opencontainers.image.version": "10.0.1",
	}
	if !reflect.DeepEqual(cfg.Config.Labels, want) {
		t.Errorf("labels %v, want %v", cfg.Config.Labels, want)
	}
	for k, v := range want {
		if m.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, m.Annotations[k], v)
		}
	}
	if cfg.Architecture != "amd64" || cfg.OS != "linux" {
		t.Errorf("platform %s/%s", cfg.OS, cfg.Architecture)
	}
	if cfg.Created == nil || !cfg.Created.Equal(t0) {
		t.Errorf("created %v, want the commit time %v", cfg.Created, t0)
	}
	if m.Config.Digest != digest.FromBytes(im.Config) || m.SchemaVersion != 2 || m.MediaType != v1.MediaTypeImageManifest {
		t.Errorf("manifest %+v", m)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) || len(m.Layers) < 4 {
		t.Fatalf("%d diff ids for %d layers", len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	for _, l := range m.Layers {
		if l.MediaType != v1.MediaTypeImageLayerGzip {
			t.Errorf("layer type %s", l.MediaType)
		}
	}
	if got, err := imagename.CommitLabel(im.Config); err != nil || got != c.String() {
		t.Errorf("CommitLabel = %q, %v", got, err)
	}
}

func TestLayersUnpackToTheTree(t *testing.T) {
	repo := newRepo(t)
	c := ocitest.Commit(t, repo, testRef, "10.0.1", t0, ocitest.OSTree())
	store := ocitest.NewMemStore()
	im := build(t, repo, store, c, "10.0.1")
	got := ocitest.ApplyLayers(t, blobs(t, store, im))

	root := os.Geteuid() == 0 // owners and xattrs need root to check out
	dest := filepath.Join(t.TempDir(), "co")
	if err := repo.Checkout(context.Background(), c, dest, ostree.CheckoutOptions{Owners: root, Xattrs: root, AllowEscapingSymlinks: true}); err != nil {
		t.Fatal(err)
	}
	want := ocitest.ReadDir(t, dest, root)
	if !root {
		for p, n := range got {
			n.UID, n.GID, n.Xattrs = 0, 0, nil
			got[p] = n
		}
	}
	if !reflect.DeepEqual(got, want) {
		for p, n := range want {
			if !reflect.DeepEqual(got[p], n) {
				t.Errorf("%s: layers %+v, checkout %+v", p, got[p], n)
			}
		}
		for p := range got {
			if _, ok := want[p]; !ok {
				t.Errorf("%s only in the layers", p)
			}
		}
	}
	// Owners and xattrs straight from the fixture, root or not.
	full := ocitest.ApplyLayers(t, blobs(t, store, im))
	for _, e := range ocitest.OSTree() {
		n := full[e.Path]
		if n.UID != e.UID || n.GID != e.GID || (len(e.Xattrs) > 0 && !reflect.DeepEqual(n.Xattrs, e.Xattrs)) {
			t.Errorf("%s: owner %d:%d xattrs %q, want %d:%d %q", e.Path, n.UID, n.GID, n.Xattrs, e.UID, e.GID, e.Xattrs)
		}
	}
}

func TestIdenticalFilesAreHardlinkedWithinALayer(t *testing.T) {
	repo := newRepo(t)
	c := ocitest.Commit(t, repo, testRef, "10.0.1", t0, ocitest.OSTree())
	store := ocitest.NewMemStore()
	im := build(t, repo, store, c, "10.0.1")
	links := 0
	for _, b := range blobs(t, store, im) {
		links += strings.Count(tarListing(t, b), "link:")
	}
	// COPYING and LICENSE share a layer; the two os-release files do not.
	if links != 1 {
		t.Errorf("%d hardlinks, want 1", links)
	}
}

func TestLayerSplitSharesUnchangedLayers(t *testing.T) {
	repo := newRepo(t)
	store := ocitest.NewMemStore()
	c1 := ocitest.Commit(t, repo, testRef, "10.0.1", t0, ocitest.OSTree())
	im1 := build(t, repo, store, c1, "10.0.1")
	tree := ocitest.OSTree()
	for i := range tree {
		if tree[i].Path == "usr/share/doc/README" {
			tree[i].Body = "léeme, versión 2\n"
		}
	}
	c2 := ocitest.Commit(t, repo, testRef, "10.0.2", t0.Add(time.Hour), tree)
	im2 := build(t, repo, store, c2, "10.0.2")
	if len(im1.Layers) != len(im2.Layers) {
		t.Fatalf("%d layers then %d", len(im1.Layers), len(im2.Layers))
	}
	changed := 0
	for i := range im1.Layers {
		if im1.Layers[i].Digest != im2.Layers[i].Digest {
			changed++
		}
	}
	if changed != 1 {
		t.Errorf("%d layers changed for one file in /usr/share, want 1", changed)
	}
	// The kernel is in its own layer.
	listing := tarListing(t, blobs(t, store, im1)[0])
	if !strings.Contains(listing, "usr/lib/modules/6.12.0/vmlinuz") || strings.Contains(listing, "usr/share") {
		t.Errorf("first layer:\n%s", listing)
	}
}

func TestDeriveReusesLayersAndChangesOnlyTheCommit(t *testing.T) {
	ctx := context.Background()
	repo := newRepo(t)
	store := ocitest.NewMemStore()
	c1 := ocitest.Commit(t, repo, testRef, "10.0.1", t0, ocitest.OSTree())
	src := build(t, repo, store, c1, "10.0.1")
	if err := bootimage.Tag(ctx, store, src, imagename.Tags("testing", "10.0.1")...); err != nil {
		t.Fatal(err)
	}
	puts := store.BlobPuts
	promoted := ocitest.Commit(t, repo, "mxos/10/x86_64/stable", "10.0.1", t0.Add(time.Hour), ocitest.OSTree())
	im, err := bootimage.Derive(ctx, store, store.GetBlob, bootimage.DeriveRequest{Repository: testRepo, From: "testing", Commit: promoted})
	if err != nil {
		t.Fatal(err)
	}
	if store.BlobPuts != puts+1 {
		t.Errorf("derive stored %d new blobs, want 1 (the config)", store.BlobPuts-puts)
	}
	if !reflect.DeepEqual(im.Layers, src.Layers) {
		t.Error("layers changed")
	}
	if im.Digest == src.Digest {
		t.Fatal("same manifest digest")
	}
	if got, _ := imagename.CommitLabel(im.Config); got != promoted.String() {
		t.Errorf("commit label %s, want %s", got, promoted)
	}
	// Put the old commit back: the configs and manifests must be equal.
	for _, pair := range [][2][]byte{{im.Config, src.Config}, {im.Manifest, src.Manifest}} {
		a := strings.ReplaceAll(string(pair[0]), promoted.String(), c1.String())
		a = strings.ReplaceAll(a, digest.FromBytes(im.Config).String(), digest.FromBytes(src.Config).String())
		if a != string(pair[1]) {
			t.Errorf("beyond the commit label:\n%s\n%s", a, pair[1])
		}
	}
	if err := bootimage.Tag(ctx, store, im, imagename.Tags("stable", "10.0.1")...); err != nil {
		t.Fatal(err)
	}
	tags, _ := store.ListTags(ctx, testRepo)
	if want := []string{"stable", "stable-10.0.1", "testing", "testing-10.0.1"}; !reflect.DeepEqual(tags, want) {
		t.Errorf("tags %v, want %v", tags, want)
	}
}

func TestDeriveRefusals(t *testing.T) {
	ctx := context.Background()
	repo := newRepo(t)
	store := ocitest.NewMemStore()
	c := ocitest.Commit(t, repo, testRef, "10.0.1", t0, ocitest.OSTree())
	src := build(t, repo, store, c, "10.0.1")
	var m v1.Manifest
	json.Unmarshal(src.Manifest, &m)

	// A manifest whose config has no ostree.commit label.
	foreign := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	fd := digest.FromBytes(foreign)
	store.PutBlob(ctx, testRepo, fd, int64(len(foreign)), strings.NewReader(string(foreign)))
	fm, _ := json.Marshal(v1.Manifest{Versioned: m.Versioned, MediaType: m.MediaType,
		Config: v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: fd, Size: int64(len(foreign))}, Layers: []v1.Descriptor{}})
	store.PutManifest(ctx, testRepo, "foreign", v1.MediaTypeImageManifest, fm)

	// A tag whose config blob was altered after it was stored.
	tamperedStore := ocitest.NewMemStore()
	tim := build(t, repo, tamperedStore, c, "10.0.1")
	bootimage.Tag(ctx, tamperedStore, tim, "testing")
	tamperedStore.SetBlob(testRepo, digest.FromBytes(tim.Config), []byte(strings.Replace(string(tim.Config), "10.0.1", "10.9.9", 1)))

	cases := []struct {
		name  string
		store *ocitest.MemStore
		req   bootimage.DeriveRequest
		want  error
		msg   string
	}{
		{"missing tag", store, bootimage.DeriveRequest{Repository: testRepo, From: "nope", Commit: c}, registry.ErrNotFound, ""},
		{"not bootable", store, bootimage.DeriveRequest{Repository: testRepo, From: "foreign", Commit: c}, imagename.ErrNotBootable, ""},
		{"config tampered", tamperedStore, bootimage.DeriveRequest{Repository: testRepo, From: "testing", Commit: c}, nil, "does not match its digest"},
		{"no commit", store, bootimage.DeriveRequest{Repository: testRepo, From: src.Digest.String()}, nil, "no commit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := bootimage.Derive(ctx, tc.store, tc.store.GetBlob, tc.req)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q, want it to say %q", err, tc.msg)
			}
		})
	}
}

func TestBuildRefusals(t *testing.T) {
	repo := newRepo(t)
	c := ocitest.Commit(t, repo, testRef, "10.0.1", t0, ocitest.OSTree())
	wh := append(ocitest.OSTree(), ocitest.Entry{Path: "etc/.wh.passwd", Body: "x", Mode: 0o644})
	cw := ocitest.Commit(t, repo, "mxos/10/x86_64/edu", "10.0.1", t0, wh)
	var missing ostree.Checksum
	missing[0] = 1
	cases := []struct {
		name string
		req  bootimage.BuildRequest
		msg  string
	}{
		{"bad repository", bootimage.BuildRequest{Repository: "MXOS/10", Arch: "x86_64", Version: "1", Commit: c}, "not a valid repository"},
		{"bad arch", bootimage.BuildRequest{Repository: testRepo, Arch: "vax", Version: "1", Commit: c}, "unknown architecture"},
		{"no version", bootimage.BuildRequest{Repository: testRepo, Arch: "x86_64", Commit: c}, "version is required"},
		{"unknown commit", bootimage.BuildRequest{Repository: testRepo, Arch: "x86_64", Version: "1", Commit: missing}, "build image of"},
		{"whiteout name", bootimage.BuildRequest{Repository: testRepo, Arch: "x86_64", Version: "1", Commit: cw}, "etc/.wh.passwd"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store := ocitest.NewMemStore()
			tc.req.TempDir = t.TempDir()
			_, err := bootimage.Build(context.Background(), repo, store, tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %v, want %q", err, tc.msg)
			}
			if tags, _ := store.ListTags(context.Background(), testRepo); len(tags) != 0 {
				t.Errorf("tags %v after a refusal", tags)
			}
		})
	}
}

// tarListing lists a gzip layer's entries, one a line, hardlinks as
// "link:NAME".
func tarListing(t *testing.T, blob []byte) string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var b strings.Builder
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return b.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeLink {
			b.WriteString("link:")
		}
		b.WriteString(h.Name + "\n")
	}
}
