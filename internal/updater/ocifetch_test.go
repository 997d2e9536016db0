package updater

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/mxos-linux/mxos-update/internal/oci/bootimage"
	"github.com/mxos-linux/mxos-update/internal/oci/imageio"
	"github.com/mxos-linux/mxos-update/internal/oci/imagename"
	"github.com/mxos-linux/mxos-update/internal/oci/ocisig"
	"github.com/mxos-linux/mxos-update/internal/oci/ocitest"
	"github.com/mxos-linux/mxos-update/internal/oci/registry"
	"github.com/mxos-linux/mxos-update/internal/oci/unpack"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
	"github.com/mxos-linux/mxos-update/internal/testserver"
	"github.com/mxos-linux/mxos-update/internal/testtool"
)

const ociRef = "mxos/10/x86_64/testing"

// ociServer is an in-process mxos-server with the registry on, a signed
// OSTree repository, and an image signing key.
type ociServer struct {
	url       string
	host      string
	repo      *ostree.Repo
	store     *registry.Store
	pub       *release.Publisher
	verifiers []sign.Verifier
	imageKey  ed25519.PrivateKey
	imagePEM  []byte
}

// requireRoot skips tests that reproduce a commit's tree from image
// layers: they need root (file owners).
func requireRoot(t *testing.T) {
	t.Helper()
	testtool.RequireRoot(t, "reproducing a commit's tree from image layers sets file owners")
}

func startOCIServer(t *testing.T) *ociServer {
	t.Helper()
	ts := testserver.Start(t, testserver.Options{RepoOnly: true, Registry: true, Serve: true})
	pubKey, key, _ := ed25519.GenerateKey(rand.Reader)
	pem, err := ocisig.PublicKeyPEM(pubKey)
	if err != nil {
		t.Fatal(err)
	}
	return &ociServer{url: ts.URL, host: ts.Host, repo: ts.Repo, store: ts.Srv.Registry(),
		pub: ts.Publisher, verifiers: ts.Release.Verifiers, imageKey: key, imagePEM: pem}
}

// publish makes a signed commit of the fixture tree (with marker as an
// extra file) and, unless noImage, its bootable image tagged for the
// channel; sign says whether the image is signed.
func (s *ociServer) publish(t *testing.T, version, marker string, signImage bool) ostree.Checksum {
	t.Helper()
	ctx := context.Background()
	entries := append(ocitest.OSTree(), ocitest.Entry{Path: "usr/lib/marker", Body: marker, Mode: 0o644})
	tarball := filepath.Join(t.TempDir(), "tree.tar")
	if err := os.WriteFile(tarball, ocitest.Tar(t, entries), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := s.pub.Publish(ctx, release.Request{Ref: ociRef, Version: version, Source: tarball})
	if err != nil {
		t.Fatal(err)
	}
	im, err := bootimage.Build(ctx, s.repo, s.store, bootimage.BuildRequest{Repository: "mxos/10/x86_64", Arch: "x86_64",
		Version: version, Commit: res.Commit, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := bootimage.Tag(ctx, s.store, im, imagename.Tags("testing", version)...); err != nil {
		t.Fatal(err)
	}
	if signImage {
		s.sign(t, im.Digest, version)
	}
	return res.Commit
}

func (s *ociServer) sign(t *testing.T, d digest.Digest, version string) {
	t.Helper()
	ref := s.host + "/mxos/10/x86_64:" + imagename.Tags("testing", version)[1]
	if err := ocisig.SignImage(context.Background(), s.store, "mxos/10/x86_64", d, ref, s.imageKey); err != nil {
		t.Fatal(err)
	}
}

// pushImage stores a hand-made image (gzip layers, labels) tagged for
// version and signs it.
func (s *ociServer) pushImage(t *testing.T, version string, labels map[string]string, tars ...[]byte) digest.Digest {
	t.Helper()
	ctx := context.Background()
	repo := "mxos/10/x86_64"
	cfg := v1.Image{Platform: v1.Platform{Architecture: "amd64", OS: "linux"}, Config: v1.ImageConfig{Labels: labels}, RootFS: v1.RootFS{Type: "layers"}}
	var layers []v1.Descriptor
	for _, tb := range tars {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(tb)
		zw.Close()
		d := digest.FromBytes(z.Bytes())
		if err := s.store.PutBlob(ctx, repo, d, int64(z.Len()), bytes.NewReader(z.Bytes())); err != nil {
			t.Fatal(err)
		}
		layers = append(layers, v1.Descriptor{MediaType: v1.MediaTypeImageLayerGzip, Digest: d, Size: int64(z.Len())})
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, digest.FromBytes(tb))
	}
	cb, _ := json.Marshal(cfg)
	if err := s.store.PutBlob(ctx, repo, digest.FromBytes(cb), int64(len(cb)), bytes.NewReader(cb)); err != nil {
		t.Fatal(err)
	}
	m := v1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest,
		Config: v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: digest.FromBytes(cb), Size: int64(len(cb))}, Layers: layers}
	mb, _ := json.Marshal(m)
	d, err := s.store.PutManifest(ctx, repo, imagename.Tags("testing", version)[1], v1.MediaTypeImageManifest, mb)
	if err != nil {
		t.Fatal(err)
	}
	s.sign(t, d, version)
	return d
}

type device struct {
	root string
	sys  *sysroot.Sysroot
	repo *ostree.Repo
}

func newDevice(t *testing.T) *device {
	t.Helper()
	root := t.TempDir()
	sys, err := sysroot.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := ostree.Create(sys.RepoPath())
	if err != nil {
		t.Fatal(err)
	}
	return &device{root: root, sys: sys, repo: repo}
}

func (s *ociServer) opts(d *device, version string, commit ostree.Checksum) OCIOptions {
	return OCIOptions{Server: s.url, Ref: ociRef, Version: version, Commit: commit, ImageKeys: [][]byte{s.imagePEM},
		Sysroot: d.root, Repo: d.repo, RepoURLs: []string{s.url + "/repo"}, Verifiers: s.verifiers}
}

// nothingInstalled checks a refused fetch left no ref, no deployment and
// no staging directory.
func (d *device) nothingInstalled(t *testing.T) {
	t.Helper()
	if c, err := d.repo.ResolveRef(ociRef); err == nil {
		t.Errorf("the ref points at %s after a refused fetch", c)
	}
	if list, _ := d.sys.List(); len(list) != 0 {
		t.Errorf("deployments after a refused fetch: %v", list)
	}
	if m, _ := filepath.Glob(filepath.Join(d.root, "oci", "staging-*")); len(m) != 0 {
		t.Errorf("staging left behind: %v", m)
	}
}

// TestFetchOCIEndToEnd: an image built and signed on the server is
// fetched with the signature policy, unpacked, committed as the very
// commit the server offered, and deployed.
func TestFetchOCIEndToEnd(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s := startOCIServer(t)
	want := s.publish(t, "10.0.1", "one", true)
	d := newDevice(t)
	got, err := FetchOCI(ctx, s.opts(d, "10.0.1", want))
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("fetched commit %s, offered %s", got, want)
	}
	if err := d.repo.CheckComplete(got); err != nil {
		t.Fatal(err)
	}
	// The signatures came along, as with a pull.
	if err := release.CommitVerifier(s.verifiers)(got, mustRead(t, d.repo, got), mustMeta(t, d.repo, got)); err != nil {
		t.Fatalf("commit signatures: %v", err)
	}
	dep, err := d.sys.Deploy(ctx, d.repo, got, sysroot.Origin{Ref: ociRef, Version: "10.0.1", Commit: got.String()})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dep.Path, "usr/lib/marker")); err != nil || string(b) != "one" {
		t.Fatalf("deployed tree: %q %v", b, err)
	}
	if fi, err := os.Lstat(filepath.Join(dep.Path, "usr/bin/passwd")); err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Fatalf("setuid bit of a root-owned file of a signed image lost: %v %v", fi, err)
	}

	// The next release reuses the unchanged layers, and the cache keeps
	// only the newest image.
	want2 := s.publish(t, "10.0.2", "two", true)
	c, _ := d.repo.ReadCommit(got)
	o := s.opts(d, "10.0.2", want2)
	o.MinTimestamp, o.Current = c.Timestamp, got
	got2, err := FetchOCI(ctx, o)
	if err != nil || got2 != want2 {
		t.Fatalf("second fetch: %s %v", got2, err)
	}
	l, err := unpack.OpenLayout(filepath.Join(d.root, "oci", "layout"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Image(""); err != nil {
		t.Fatalf("layout should hold exactly one image: %v", err)
	}
	// Going back to the older release is refused (rollback protection).
	c2, _ := d.repo.ReadCommit(got2)
	o = s.opts(d, "10.0.1", want)
	o.MinTimestamp, o.Current = c2.Timestamp, got2
	if _, err := FetchOCI(ctx, o); !errors.Is(err, ErrCommitPolicy) {
		t.Fatalf("older release: %v", err)
	}
}

func mustRead(t *testing.T, r *ostree.Repo, c ostree.Checksum) []byte {
	b, err := r.ReadMetadata(c, ostree.ObjCommit)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustMeta(t *testing.T, r *ostree.Repo, c ostree.Checksum) ostree.Metadata {
	m, err := r.ReadCommitMeta(c)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestFetchOCIRefusals: unsigned, wrongly signed, mislabelled and
// hostile images are refused, and nothing is committed or deployed.
func TestFetchOCIRefusals(t *testing.T) {
	ctx := context.Background()
	s := startOCIServer(t)
	c1 := s.publish(t, "10.0.1", "one", false) // image not signed
	c2 := s.publish(t, "10.0.2", "two", true)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	otherPEM, _ := ocisig.PublicKeyPEM(otherKey.Public())

	hostile := func(ents ...ocitest.Entry) []byte { return ocitest.Tar(t, ents) }
	labels := func(c ostree.Checksum, v string) map[string]string {
		return map[string]string{imagename.LabelCommit: c.String(), imagename.LabelVersion: v}
	}
	cases := []struct {
		name  string
		setup func() OCIOptions
		check func(error) bool
	}{
		{"unsigned image", func() OCIOptions { return s.opts(newDevice(t), "10.0.1", c1) }, imageio.IsPolicyDenied},
		{"signed by another key", func() OCIOptions {
			o := s.opts(newDevice(t), "10.0.2", c2)
			o.ImageKeys = [][]byte{otherPEM}
			return o
		}, func(err error) bool { return err != nil }},
		{"label names another commit", func() OCIOptions {
			// 10.0.2's signed image offered as if it were commit c1.
			o := s.opts(newDevice(t), "10.0.2", c1)
			o.RepoURLs = nil
			return o
		}, func(err error) bool { return errors.Is(err, ErrImageMismatch) }},
		{"commit from the repository is another version", func() OCIOptions {
			return s.opts(newDevice(t), "10.0.2", c1)
		}, func(err error) bool { return errors.Is(err, ErrCommitPolicy) }},
		{"write through a planted symlink", func() OCIOptions {
			s.pushImage(t, "10.0.4", labels(c2, "10.0.4"),
				hostile(ocitest.Entry{Path: "usr", Link: "/etc", Mode: 0o777}),
				hostile(ocitest.Entry{Path: "usr/passwd", Body: "evil", Mode: 0o644}))
			o := s.opts(newDevice(t), "10.0.4", c2)
			o.RepoURLs = nil
			return o
		}, func(err error) bool { return errors.Is(err, unpack.ErrUnsafe) }},
		{"escaping hardlink", func() OCIOptions {
			s.pushImage(t, "10.0.5", labels(c2, "10.0.5"), ocitestTar(t, tar.TypeLink, "x", "../../etc/shadow"))
			o := s.opts(newDevice(t), "10.0.5", c2)
			o.RepoURLs = nil
			return o
		}, func(err error) bool { return errors.Is(err, unpack.ErrUnsafe) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.setup()
			_, err := FetchOCI(ctx, o)
			t.Logf("refused: %v", err)
			if !c.check(err) {
				t.Fatalf("got %v", err)
			}
			d := &device{root: o.Sysroot, repo: o.Repo}
			d.sys, _ = sysroot.Open(o.Sysroot)
			d.nothingInstalled(t)
		})
	}

	// With the repository, a signed image whose tree differs from the
	// offered commit's is refused.
	s.pushImage(t, "10.0.6", labels(c2, "10.0.2"), hostile(ocitest.Entry{Path: "etc/os-release", Body: "evil", Mode: 0o644}))
	d := newDevice(t)
	o := s.opts(d, "10.0.2", c2)
	// The image is tagged 10.0.6; move 10.0.2's tag to it.
	if err := retag(s, "testing-10.0.6", "testing-10.0.2"); err != nil {
		t.Fatal(err)
	}
	if _, err := FetchOCI(ctx, o); !errors.Is(err, ErrImageMismatch) {
		t.Fatalf("tree mismatch: %v", err)
	}
	d.nothingInstalled(t)
}

func ocitestTar(t *testing.T, typ byte, name, link string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: name, Typeflag: typ, Linkname: link, ModTime: time.Unix(0, 0)})
	tw.Close()
	return buf.Bytes()
}

func retag(s *ociServer, from, to string) error {
	ctx := context.Background()
	mt, body, _, err := s.store.GetManifest(ctx, "mxos/10/x86_64", from)
	if err != nil {
		return err
	}
	_, err = s.store.PutManifest(ctx, "mxos/10/x86_64", to, mt, body)
	return err
}

// TestFetchOCIResumes: what an interrupted fetch leaves (temporary blob
// files, a truncated index.json, a half-built staging directory, some
// blobs) does not stop the retry, which completes.
func TestFetchOCIResumes(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s := startOCIServer(t)
	want := s.publish(t, "10.0.1", "one", true)
	d := newDevice(t)
	layout := filepath.Join(d.root, "oci", "layout")
	os.MkdirAll(filepath.Join(layout, "blobs", "sha256"), 0o755)
	os.WriteFile(filepath.Join(layout, "oci-put-blob123"), []byte("partial"), 0o644)
	os.WriteFile(filepath.Join(layout, "index.json"), []byte(`{"schemaVersion":2,"manif`), 0o644)
	os.WriteFile(filepath.Join(layout, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	staging := filepath.Join(d.root, "oci", "staging-"+strings.Repeat("0", 64))
	os.MkdirAll(filepath.Join(staging, "usr"), 0o755)
	got, err := FetchOCI(ctx, s.opts(d, "10.0.1", want))
	if err != nil || got != want {
		t.Fatalf("retry after a crash: %s %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(layout, "oci-put-blob123")); err == nil {
		t.Error("temporary blob file left")
	}
	if _, err := os.Stat(staging); err == nil {
		t.Error("staging directory of an interrupted fetch left")
	}
	// A second fetch of the same release is a no-op success.
	if got, err := FetchOCI(ctx, s.opts(d, "10.0.1", want)); err != nil || got != want {
		t.Fatalf("refetch: %s %v", got, err)
	}
}

// TestFetchOCILocalCommit: without repository URLs the tree is committed
// locally, naming the image; the label must still match the offer.
func TestFetchOCILocalCommit(t *testing.T) {
	ctx := context.Background()
	s := startOCIServer(t)
	want := s.publish(t, "10.0.1", "one", true)
	d := newDevice(t)
	o := s.opts(d, "10.0.1", want)
	o.RepoURLs = nil
	got, err := FetchOCI(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if got == want {
		t.Fatal("a local commit cannot equal the signed one")
	}
	c, err := d.repo.ReadCommit(got)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Metadata.String(MetaManifestDigest); !strings.HasPrefix(v, "sha256:") || c.Version() != "10.0.1" {
		t.Fatalf("local commit metadata: %v", c.Metadata)
	}
	if _, err := d.sys.Deploy(ctx, d.repo, got, sysroot.Origin{Ref: ociRef, Version: "10.0.1", Commit: got.String()}); err != nil {
		t.Fatal(err)
	}
}

// TestFetchOCISignedHost: signatures naming another host (the canonical
// name the release team signed for) are accepted only when the device is
// told that host.
func TestFetchOCISignedHost(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s := startOCIServer(t)
	want := s.publish(t, "10.0.1", "one", false)
	_, _, d, err := s.store.GetManifest(ctx, "mxos/10/x86_64", "testing-10.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := ocisig.SignImage(ctx, s.store, "mxos/10/x86_64", d, "updates.example.mx/mxos/10/x86_64:testing-10.0.1", s.imageKey); err != nil {
		t.Fatal(err)
	}
	dev := newDevice(t)
	if _, err := FetchOCI(ctx, s.opts(dev, "10.0.1", want)); !imageio.IsPolicyDenied(err) {
		t.Fatalf("signature for another host accepted without SignedHost: %v", err)
	}
	o := s.opts(dev, "10.0.1", want)
	o.SignedHost = "updates.example.mx"
	if got, err := FetchOCI(ctx, o); err != nil || got != want {
		t.Fatalf("with SignedHost: %s %v", got, err)
	}
}

// TestFetchOCIInterrupted: a fetch cut off in the middle of the layer
// downloads leaves no tag, no ref and no staging; the retry completes.
func TestFetchOCIInterrupted(t *testing.T) {
	requireRoot(t)
	s := startOCIServer(t)
	want := s.publish(t, "10.0.1", "one", true)
	target, _ := url.Parse(s.url)
	fwd := httputil.NewSingleHostReverseProxy(target)
	fwd.ErrorLog = log.New(io.Discard, "", 0)
	ctx, cancel := context.WithCancel(context.Background())
	var blobs atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") && blobs.Add(1) == 3 {
			cancel() // the machine loses power while a layer downloads
			<-r.Context().Done()
			return
		}
		fwd.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	dev := newDevice(t)
	o := s.opts(dev, "10.0.1", want)
	o.Server, o.SignedHost = proxy.URL, s.host
	if _, err := FetchOCI(ctx, o); err == nil {
		t.Fatal("interrupted fetch succeeded")
	}
	if blobs.Load() < 3 {
		t.Fatalf("interrupted before the layers (%d blob requests)", blobs.Load())
	}
	dev.nothingInstalled(t)
	if b, err := os.ReadFile(filepath.Join(dev.root, "oci", "layout", "index.json")); err == nil && strings.Contains(string(b), "testing-10.0.1") {
		t.Fatalf("the layout names an incomplete image: %s", b)
	}
	got, err := FetchOCI(context.Background(), o)
	if err != nil || got != want {
		t.Fatalf("retry: %s %v", got, err)
	}
}

// TestFetchOCIWithReleaseKey: the device's trusted-keys directory gives
// the image keys; an image signed with the ed25519 release key fetches.
func TestFetchOCIWithReleaseKey(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s := startOCIServer(t)
	keys := testserver.GenerateKeys(t).Dir
	b, _ := os.ReadFile(filepath.Join(keys, sign.Ed25519SecretFile))
	secret, err := sign.ParseEd25519SecretKeys(b)
	if err != nil {
		t.Fatal(err)
	}
	s.imageKey = secret[0]
	want := s.publish(t, "10.0.1", "one", true)
	pems, err := ImageKeys(keys)
	if err != nil || len(pems) != 1 {
		t.Fatalf("ImageKeys: %d %v", len(pems), err)
	}
	o := s.opts(newDevice(t), "10.0.1", want)
	o.ImageKeys = pems
	if got, err := FetchOCI(ctx, o); err != nil || got != want {
		t.Fatalf("%s %v", got, err)
	}
	if _, err := ImageKeys(t.TempDir()); err == nil {
		t.Fatal("ImageKeys of an empty directory")
	}
}
