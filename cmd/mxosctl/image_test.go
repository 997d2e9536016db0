package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/oci/imageio/layouttest"
	"github.com/mxos-linux/mxos-update/internal/oci/ocisig"
	"github.com/mxos-linux/mxos-update/internal/oci/regclient"
	"github.com/mxos-linux/mxos-update/internal/oci/registry"
	"github.com/mxos-linux/mxos-update/internal/oci/unpack"
	"github.com/mxos-linux/mxos-update/internal/testserver"
	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// imageServer is an in-process mxos-server with the registry, the
// shipped channels and a release token.
type imageServer struct {
	url, host, token string
	store            *registry.Store
	ts               *testserver.Server
}

func startImageServer(t *testing.T) *imageServer {
	t.Helper()
	ts := testserver.Start(t, testserver.Options{Registry: true, Serve: true, Roles: []auth.Role{auth.RoleRelease}})
	t.Setenv("MXOS_TOKEN", "")
	t.Setenv("MXOS_SERVER", "")
	return &imageServer{url: ts.URL, host: ts.Host, token: ts.Tokens[auth.RoleRelease], store: ts.Srv.Registry(), ts: ts}
}

func (s *imageServer) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return run(t, append([]string{"--server", s.url, "--token", s.token}, args...)...)
}

func testLayout(t *testing.T) (string, digest.Digest) {
	dir := filepath.Join(t.TempDir(), "layout")
	img := layouttest.Write(t, dir, "v1", "amd64", map[string]string{"containers.bootc": "1"},
		layouttest.Tar(t, []layouttest.File{{Name: "usr/", Type: '5', Mode: 0o755}, {Name: "usr/lib/os-release", Body: "NAME=MxOS\n"}}))
	return dir, img.Manifest
}

func (s *imageServer) digest(t *testing.T, tag string) digest.Digest {
	_, _, d, err := s.store.GetManifest(context.Background(), "mxos/10/x86_64", tag)
	if err != nil {
		t.Fatalf("tag %s: %v", tag, err)
	}
	return d
}

func layoutDigest(t *testing.T, dir, tag string) digest.Digest {
	l, err := unpack.OpenLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	img, err := l.Image(tag)
	if err != nil {
		t.Fatal(err)
	}
	return img.ManifestDigest
}

// TestImageImportExport imports from oci: and dir: layouts, exports to
// oci: and dir: with the signature checked, and compares digests.
func TestImageImportExport(t *testing.T) {
	s := startImageServer(t)
	keys := filepath.Join(t.TempDir(), "keys")
	if _, err := run(t, "keys", "generate", "--dir", keys); err != nil {
		t.Fatal(err)
	}
	layout, _ := testLayout(t)

	// An unsigned source needs --insecure-policy.
	out, err := s.run(t, "image", "import", "-q", "oci:"+layout+":v1", "--channel", "testing", "--version", "10.0.1", "--keys", keys)
	if err == nil || !strings.Contains(err.Error(), "--insecure-policy") {
		t.Fatalf("unsigned import without --insecure-policy: %v\n%s", err, out)
	}
	out, err = s.run(t, "image", "import", "-q", "oci:"+layout+":v1", "--channel", "testing", "--version", "10.0.1", "--keys", keys, "--insecure-policy")
	if err != nil || !strings.Contains(out, "Imported") {
		t.Fatalf("import: %v\n%s", err, out)
	}
	d := s.digest(t, "testing-10.0.1")
	if s.digest(t, "testing") != d {
		t.Fatal("channel tag does not name the imported image")
	}
	if _, _, _, err := s.store.GetManifest(context.Background(), "mxos/10/x86_64", ocisig.SignatureTag(d)); err != nil {
		t.Fatalf("no signature stored: %v", err)
	}

	// Export: to oci: by channel, to dir: by version alone; same digest.
	ociOut := filepath.Join(t.TempDir(), "usb")
	if out, err := s.run(t, "image", "export", "-q", "--channel", "testing", "--keys", keys, "oci:"+ociOut+":stable"); err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	if got := layoutDigest(t, ociOut, "stable"); got != d {
		t.Fatalf("exported %s, registry has %s", got, d)
	}
	dirOut := filepath.Join(t.TempDir(), "dir")
	if out, err := s.run(t, "image", "export", "-q", "--version", "10.0.1", "--keys", keys, "dir:"+dirOut); err != nil {
		t.Fatalf("export to dir: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(filepath.Join(dirOut, "manifest.json")); err != nil || digest.FromBytes(b) != d {
		t.Fatalf("dir export manifest: %v", err)
	}

	// Channels reached by promotion only refuse imports, and nothing is
	// tagged there.
	for _, ch := range []string{"edu", "stable"} {
		out, err := s.run(t, "image", "import", "-q", "dir:"+dirOut, "--channel", ch, "--version", "10.0.1", "--keys", keys, "--insecure-policy")
		if err == nil || !strings.Contains(err.Error(), "accepts promotions only") {
			t.Fatalf("import into %s: %v\n%s", ch, err, out)
		}
		if _, _, _, err := s.store.GetManifest(context.Background(), "mxos/10/x86_64", ch+"-10.0.1"); err == nil {
			t.Fatalf("a refused import tagged %s-10.0.1", ch)
		}
	}
	// Import from dir: (the export) as another release, then a signed
	// re-import from our own registry needs no --insecure-policy.
	if out, err := s.run(t, "image", "import", "-q", "dir:"+dirOut, "--channel", "testing", "--version", "10.0.2", "--keys", keys, "--insecure-policy"); err != nil {
		t.Fatalf("import from dir: %v\n%s", err, out)
	}
	if got := s.digest(t, "testing-10.0.2"); got != d {
		t.Fatalf("dir import changed the digest: %s, want %s", got, d)
	}
	src := "docker://" + s.host + "/mxos/10/x86_64:testing"
	if out, err := s.run(t, "image", "import", "-q", src, "--channel", "testing", "--version", "10.0.3", "--keys", keys); err != nil {
		t.Fatalf("signed import from our registry: %v\n%s", err, out)
	}
	// The same version in two channels (as promote --image tags it):
	// export by version is ambiguous.
	rc, err := regclient.New(s.url, s.token)
	if err != nil {
		t.Fatal(err)
	}
	if err := tagImage(context.Background(), rc, "mxos/10/x86_64", d, "stable-10.0.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.run(t, "image", "export", "-q", "--version", "10.0.1", "--keys", keys, "oci:"+ociOut+":x"); err == nil || !strings.Contains(err.Error(), "--channel") {
		t.Fatalf("ambiguous version export: %v", err)
	}
}

// TestImageExportChecksSignature: a missing or foreign signature fails
// the export, and nothing is written.
func TestImageExportChecksSignature(t *testing.T) {
	s := startImageServer(t)
	keys := filepath.Join(t.TempDir(), "keys")
	other := filepath.Join(t.TempDir(), "other")
	run(t, "keys", "generate", "--dir", keys)
	run(t, "keys", "generate", "--dir", other)
	layout, _ := testLayout(t)
	if out, err := s.run(t, "image", "import", "-q", "oci:"+layout+":v1", "--channel", "testing", "--version", "10.0.1", "--keys", keys, "--insecure-policy"); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	// A manifest pushed without the import (no signature).
	ctx := context.Background()
	mt, body, _, err := s.store.GetManifest(ctx, "mxos/10/x86_64", "testing")
	if err != nil {
		t.Fatal(err)
	}
	unsigned := []byte(strings.Replace(string(body), `"schemaVersion":2`, `"schemaVersion":2,"annotations":{"x":"unsigned"}`, 1))
	if _, err := s.store.PutManifest(ctx, "mxos/10/x86_64", "unsigned", mt, unsigned); err != nil {
		t.Fatal(err)
	}
	// A manifest signed with a tampered signature.
	tampered := []byte(strings.Replace(string(body), `"schemaVersion":2`, `"schemaVersion":2,"annotations":{"x":"tampered"}`, 1))
	td, err := s.store.PutManifest(ctx, "mxos/10/x86_64", "tampered", mt, tampered)
	if err != nil {
		t.Fatal(err)
	}
	signers, err := publish.LoadEd25519Signers(keys)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := ocisig.NewPayload(s.host+"/mxos/10/x86_64:tampered", td, time.Now())
	sig, err := signers[0].SignMessage(bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	sig[0] ^= 1
	if err := ocisig.Attach(ctx, s.store, "mxos/10/x86_64", td, payload, sig); err != nil {
		t.Fatal(err)
	}
	// A valid release-key signature, but of another image's digest.
	replayed := []byte(strings.Replace(string(body), `"schemaVersion":2`, `"schemaVersion":2,"annotations":{"x":"replayed"}`, 1))
	rd, err := s.store.PutManifest(ctx, "mxos/10/x86_64", "replayed", mt, replayed)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ = ocisig.NewPayload(s.host+"/mxos/10/x86_64:replayed", s.digest(t, "testing"), time.Now())
	sig, _ = signers[0].SignMessage(bytes.NewReader(payload))
	if err := ocisig.Attach(ctx, s.store, "mxos/10/x86_64", rd, payload, sig); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, tag, keys string }{
		{"unsigned", "unsigned", keys},
		{"tampered signature", "tampered", keys},
		{"signature of another digest", "replayed", keys},
		{"signed by another key", "testing", other},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "out")
			out, err := s.run(t, "image", "export", "-q", "--major", "10", "--channel", c.tag, "--keys", c.keys, "oci:"+dest+":x")
			if err == nil {
				t.Fatalf("exported:\n%s", out)
			}
			t.Logf("refused: %v", err)
			if _, serr := os.Stat(filepath.Join(dest, "index.json")); serr == nil {
				t.Fatal("an index.json was written for a refused image")
			}
		})
	}
	// --insecure-policy exports it anyway.
	dest := filepath.Join(t.TempDir(), "out")
	if out, err := s.run(t, "image", "export", "-q", "--major", "10", "--channel", "unsigned", "--insecure-policy", "oci:"+dest+":x"); err != nil {
		t.Fatalf("insecure export: %v\n%s", err, out)
	}
}

func TestImageUsageErrors(t *testing.T) {
	s := startImageServer(t)
	keys := filepath.Join(t.TempDir(), "keys")
	run(t, "keys", "generate", "--dir", keys)
	cases := [][]string{
		{"image", "import", "oci:/x:y", "--version", "1", "--keys", keys},                                                               // no channel
		{"image", "import", "oci:/x:y", "--channel", "testing", "--keys", keys},                                                         // no version
		{"image", "import", "quay.io/x/y:1", "--channel", "testing", "--version", "1", "--keys", keys},                                  // no transport
		{"image", "import", "oci:/x:y", "--channel", "testing", "--version", "1"},                                                       // no keys
		{"image", "import", "oci:/x:y", "--channel", "nope", "--version", "1", "--keys", keys},                                          // unknown channel
		{"image", "import", "oci:/x:y", "--channel", "testing", "--version", "1", "--keys", keys, "--arch", "sparc"},                    // bad arch
		{"image", "import", "oci:/x:y", "--channel", "testing", "--version", "1", "--keys", keys, "--major", "ten"},                     // bad major
		{"image", "import", "oci:/x:y", "--channel", "testing", "--version", "1", "--keys", keys, "--insecure-policy", "--policy", "p"}, // both
		{"image", "export", "oci:/tmp/x:y", "--keys", keys},                                                                             // nothing to export
		{"image", "export", "--channel", "testing", "oci:/tmp/x:y"},                                                                     // no keys
	}
	for _, args := range cases {
		if out, err := s.run(t, args...); err == nil {
			t.Errorf("mxosctl %s succeeded:\n%s", strings.Join(args, " "), out)
		}
	}
	// Pushing needs the token.
	layout, _ := testLayout(t)
	out, err := run(t, "--server", s.url, "image", "import", "-q", "oci:"+layout+":v1", "--major", "10", "--channel", "testing", "--version", "1", "--keys", keys, "--insecure-policy")
	if err == nil || !strings.Contains(err.Error(), "MXOS_TOKEN") {
		t.Fatalf("import without a token: %v\n%s", err, out)
	}
}

// TestImageSkopeoInterop: an archive skopeo wrote imports, and skopeo
// reads what export wrote and what the registry serves, digests equal.
func TestImageSkopeoInterop(t *testing.T) {
	skopeo := testtool.Require(t, "skopeo")
	s := startImageServer(t)
	keys := filepath.Join(t.TempDir(), "keys")
	run(t, "keys", "generate", "--dir", keys)
	layout, want := testLayout(t)
	archive := filepath.Join(t.TempDir(), "img.tar")
	sk := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(skopeo, append([]string{"--insecure-policy"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	sk("copy", "oci:"+layout+":v1", "oci-archive:"+archive)
	if out, err := s.run(t, "image", "import", "-q", "oci-archive:"+archive, "--channel", "testing", "--version", "10.0.1", "--keys", keys, "--insecure-policy"); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	d := s.digest(t, "testing")
	if d != want {
		t.Logf("the archive's digest %s became %s in the registry", want, d)
	}
	if got := digest.FromString(sk("inspect", "--tls-verify=false", "--raw", "docker://"+s.host+"/mxos/10/x86_64:testing")); got != d {
		t.Fatalf("skopeo reads %s from the registry, want %s", got, d)
	}
	dir := filepath.Join(t.TempDir(), "dir")
	if out, err := s.run(t, "image", "export", "-q", "--channel", "testing", "--keys", keys, "dir:"+dir); err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	if got := digest.FromString(sk("inspect", "--raw", "dir:"+dir)); got != d {
		t.Fatalf("skopeo reads %s from the export, want %s", got, d)
	}
}

// TestImageImportRecordsRelease: an import is audited (image.import, by
// the token that made it); when the version is a published release of
// the channel, the image becomes that release's, and another image for
// it later is refused. The server refuses imports into channels reached
// by promotion even when the CLI's own check is bypassed.
func TestImageImportRecordsRelease(t *testing.T) {
	s := startImageServer(t)
	ctx := context.Background()
	keys := filepath.Join(t.TempDir(), "keys")
	if _, err := run(t, "keys", "generate", "--dir", keys); err != nil {
		t.Fatal(err)
	}
	store := s.ts.Store
	if err := store.AddRelease(ctx, db.Release{Channel: "testing", Arch: "x86_64", Version: "10.0.1", Ref: "mxos/10/x86_64/testing",
		Commit: strings.Repeat("a", 64), PublishedAt: time.Now(), PublishedBy: "token:t-release"}); err != nil {
		t.Fatal(err)
	}
	layout, _ := testLayout(t)
	out, err := s.run(t, "image", "import", "-q", "oci:"+layout+":v1", "--channel", "testing", "--version", "10.0.1", "--keys", keys, "--insecure-policy")
	if err != nil || !strings.Contains(out, "Recorded as the image of release 10.0.1") {
		t.Fatalf("import: %v\n%s", err, out)
	}
	d := s.digest(t, "testing-10.0.1")
	if rel, err := store.GetRelease(ctx, "testing", "x86_64", "10.0.1"); err != nil || rel.OCIDigest != d.String() {
		t.Fatalf("release after the import: %+v, %v; want image %s", rel, err, d)
	}
	out, err = s.run(t, "image", "import", "-q", "oci:"+layout+":v1", "--channel", "testing", "--version", "10.0.2", "--keys", keys, "--insecure-policy")
	if err != nil || !strings.Contains(out, "is not a release of testing") {
		t.Fatalf("import of an unpublished version: %v\n%s", err, out)
	}
	entries, err := store.ListAudit(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var imports []string
	for _, e := range entries {
		if e.Action == "image.import" {
			imports = append(imports, e.Actor+" "+e.Subject)
			if !strings.Contains(e.Detail, d.String()) {
				t.Errorf("audit entry %+v lacks the digest %s", e, d)
			}
		}
	}
	if want := []string{"token:t-release testing/x86_64/10.0.1", "token:t-release testing/x86_64/10.0.2"}; strings.Join(imports, ",") != strings.Join(want, ",") {
		t.Errorf("image.import entries %q, want %q", imports, want)
	}

	// Another image for a release that has one is refused by the server.
	c, err := client.New(s.url, s.token)
	if err != nil {
		t.Fatal(err)
	}
	other := "sha256:" + strings.Repeat("b", 64)
	if _, err := c.ImageImported(ctx, api.ImageImportRequest{Channel: "testing", Arch: "x86_64", Version: "10.0.1", Digest: other}); !errors.Is(err, &api.Error{Code: api.CodeConflict}) {
		t.Errorf("a second image for 10.0.1: %v, want conflict", err)
	}
	for _, ch := range []string{"stable", "edu"} {
		if _, err := c.ImageImported(ctx, api.ImageImportRequest{Channel: ch, Arch: "x86_64", Version: "10.0.1", Digest: other}); !errors.Is(err, &api.Error{Code: api.CodePromotion}) {
			t.Errorf("recording an import into %s: %v, want promotion_not_allowed", ch, err)
		}
	}
	if rel, _ := store.GetRelease(ctx, "testing", "x86_64", "10.0.1"); rel.OCIDigest != d.String() {
		t.Errorf("refused requests changed the release's image to %s", rel.OCIDigest)
	}
}
