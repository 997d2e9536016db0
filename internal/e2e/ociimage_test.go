package e2e

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"

	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/oci/bootimage"
	"github.com/mxos-linux/mxos-update/internal/oci/imagename"
	"github.com/mxos-linux/mxos-update/internal/oci/ocisig"
	"github.com/mxos-linux/mxos-update/internal/oci/ocitest"
	"github.com/mxos-linux/mxos-update/internal/oci/registry"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/server"
	"github.com/mxos-linux/mxos-update/internal/testserver"
	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// imageSite is an in-process mxos-server with the registry and signed
// channel metadata on, and a release token.
type imageSite struct {
	url, host, token string
	srv              *server.Server
	data             string
	keys             *keySet
}

func newImageSite(t *testing.T) *imageSite {
	t.Helper()
	ts := testserver.Start(t, testserver.Options{Registry: true, Metadata: true, OnlineSummaryKey: true, Roles: []auth.Role{auth.RoleRelease}})
	return &imageSite{url: ts.URL, host: ts.Host, token: ts.Tokens[auth.RoleRelease], srv: ts.Srv, data: ts.Data, keys: keySetOf(ts.Release)}
}

func (s *imageSite) mxosctl(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(mxosctl(), args...)
	cmd.Env = append(os.Environ(), "MXOS_SERVER="+s.url, "MXOS_TOKEN="+s.token)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mxosctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// signedRelease reads the server's signed targets for one release.
func (s *imageSite) signedRelease(t *testing.T, channelName, version string) channelmeta.Release {
	t.Helper()
	resp, err := http.Get(s.url + "/metadata/targets.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	rels, err := publish.ListedReleases(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rels {
		if r.Channel == channelName && r.Version == version && r.Arch == "x86_64" {
			return r
		}
	}
	t.Fatalf("%s %s not in the signed targets", channelName, version)
	return channelmeta.Release{}
}

// pullPolicy copies docker://ref to an oci: layout the way podman and bootc
// pull: containers/image with a sigstoreSigned policy on the release key.
func pullPolicy(t *testing.T, host, ref, pubPEM string) (string, error) {
	return pullWithIdentity(t, host, ref, pubPEM, `{"type":"matchRepository"}`)
}

// pullWithIdentity is pullPolicy with another signedIdentity.
func pullWithIdentity(t *testing.T, host, ref, pubPEM, identity string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	regd := filepath.Join(dir, "registries.d")
	os.Mkdir(regd, 0o755)
	if err := os.WriteFile(filepath.Join(regd, "mxos.yaml"),
		[]byte("docker:\n  "+host+":\n    use-sigstore-attachments: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	policy := `{"default":[{"type":"reject"}],"transports":{"docker":{"` + host + `/mxos":[{"type":"sigstoreSigned",` +
		`"keyPath":"` + pubPEM + `","signedIdentity":` + identity + `}]}}}`
	pol, err := signature.NewPolicyFromBytes([]byte(policy))
	if err != nil {
		t.Fatal(err)
	}
	pc, err := signature.NewPolicyContext(pol)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Destroy()
	src, err := alltransports.ParseImageName("docker://" + ref)
	if err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(dir, "layout")
	dst, err := alltransports.ParseImageName("oci:" + layout + ":pulled")
	if err != nil {
		t.Fatal(err)
	}
	sys := &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue, RegistriesDirPath: regd,
		SystemRegistriesConfPath: os.DevNull, BlobInfoCacheDir: dir}
	_, err = copy.Image(context.Background(), pc, dst, src, &copy.Options{SourceCtx: sys, DestinationCtx: &types.SystemContext{},
		RemoveSignatures: true}) // the oci: transport cannot store them; the policy is still enforced
	return layout, err
}

// layoutImage reads the manifest tagged "pulled" and its layer blobs.
func layoutImage(t *testing.T, layout string) (v1.Manifest, [][]byte) {
	t.Helper()
	var idx v1.Index
	readJSON(t, filepath.Join(layout, "index.json"), &idx)
	if len(idx.Manifests) != 1 {
		t.Fatalf("index: %+v", idx)
	}
	var m v1.Manifest
	readJSON(t, blobPath(layout, idx.Manifests[0].Digest), &m)
	var layers [][]byte
	for _, l := range m.Layers {
		b, err := os.ReadFile(blobPath(layout, l.Digest))
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, b)
	}
	return m, layers
}

func blobPath(layout string, d digest.Digest) string {
	return filepath.Join(layout, "blobs", string(d.Algorithm()), d.Encoded())
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

// Publish with --image to a real server, promote it, and pull the result
// with containers/image under a sigstoreSigned policy and with cosign.
func TestImagePublishPromotePullVerified(t *testing.T) {
	ctx := context.Background()
	s := newImageSite(t)
	src := filepath.Join(t.TempDir(), "tree.tar")
	if err := os.WriteFile(src, ocitest.Tar(t, ocitest.OSTree()), 0o644); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(t.TempDir(), "work")
	s.mxosctl(t, "publish", "--channel", "testing", "--arch", "x86_64", "--version", "10.0.1", "--keys", s.keys.dir,
		"--work", work, "--image", "-q", src)
	out := s.mxosctl(t, "promote", "--from", "testing", "--to", "stable", "--arch", "x86_64", "--version", "10.0.1",
		"--keys", s.keys.dir, "--work", work, "--image")
	if !strings.Contains(out, "Image "+s.host+"/mxos/10/x86_64@sha256:") {
		t.Errorf("promote said:\n%s", out)
	}
	// A refused publish (the version exists) moves no tag.
	_, _, before, err := s.srv.Registry().GetManifest(ctx, "mxos/10/x86_64", "testing")
	if err != nil {
		t.Fatal(err)
	}
	changed := append(ocitest.OSTree(), ocitest.Entry{Path: "etc/motd", Body: "hola\n", Mode: 0o644})
	src2 := filepath.Join(t.TempDir(), "tree2.tar")
	os.WriteFile(src2, ocitest.Tar(t, changed), 0o644)
	cmd := exec.Command(mxosctl(), "publish", "--channel", "testing", "--arch", "x86_64", "--version", "10.0.1",
		"--keys", s.keys.dir, "--work", work, "--image", "-q", src2)
	cmd.Env = append(os.Environ(), "MXOS_SERVER="+s.url, "MXOS_TOKEN="+s.token)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("publishing 10.0.1 twice succeeded:\n%s", out)
	}
	if _, _, after, _ := s.srv.Registry().GetManifest(ctx, "mxos/10/x86_64", "testing"); after != before {
		t.Errorf("a refused publish moved the testing tag from %s to %s", before, after)
	}

	pub := filepath.Join(t.TempDir(), "release.pub.pem")
	if err := os.WriteFile(pub, []byte(s.mxosctl(t, "image-key", "--keys", s.keys.dir)), 0o644); err != nil {
		t.Fatal(err)
	}

	// The image's commit label and digest are what the signed channel
	// metadata lists, on both channels.
	reg := s.srv.Registry()
	for _, ch := range []string{"testing", "stable"} {
		rec := s.signedRelease(t, ch, "10.0.1")
		_, mb, d, err := reg.GetManifest(ctx, "mxos/10/x86_64", ch)
		if err != nil {
			t.Fatal(err)
		}
		if d.String() != rec.OCIDigest {
			t.Errorf("%s: tag at %s, signed targets say %q", ch, d, rec.OCIDigest)
		}
		var m v1.Manifest
		json.Unmarshal(mb, &m)
		f, err := reg.Blobs().Open(m.Config.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := io.ReadAll(f)
		f.Close()
		if label, _ := imagename.CommitLabel(cfg); label != rec.Commit {
			t.Errorf("%s: ostree.commit label %s, signed commit %s", ch, label, rec.Commit)
		}
	}

	// containers/image accepts the signed stable image; its layers are
	// exactly the promoted commit's tree.
	layout, err := pullPolicy(t, s.host, s.host+"/mxos/10/x86_64:stable", pub)
	if err != nil {
		t.Fatalf("signed image refused: %v", err)
	}
	_, layers := layoutImage(t, layout)
	serverRepo, err := ostree.Open(filepath.Join(s.data, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	stable, err := serverRepo.ResolveRef("mxos/10/x86_64/stable")
	if err != nil {
		t.Fatal(err)
	}
	co := filepath.Join(t.TempDir(), "co")
	root := os.Geteuid() == 0
	if err := serverRepo.Checkout(ctx, stable, co, ostree.CheckoutOptions{Owners: root, Xattrs: root, AllowEscapingSymlinks: true}); err != nil {
		t.Fatal(err)
	}
	got, want := ocitest.ApplyLayers(t, layers), ocitest.ReadDir(t, co, root)
	if !root {
		for p, n := range got {
			n.UID, n.GID, n.Xattrs = 0, 0, nil
			got[p] = n
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("pulled layers differ from the checkout of %s", stable)
	}

	_, _, stableDigest, err := reg.GetManifest(ctx, "mxos/10/x86_64", "stable")
	if err != nil {
		t.Fatal(err)
	}
	// The default identity rule (matchRepoDigestOrExact) accepts both tags
	// and the digest: each tag has its own signature.
	for _, ref := range []string{":stable", ":stable-10.0.1", "@" + stableDigest.String()} {
		if _, err := pullWithIdentity(t, s.host, s.host+"/mxos/10/x86_64"+ref, pub, `{"type":"matchRepoDigestOrExact"}`); err != nil {
			t.Errorf("%s with matchRepoDigestOrExact: %v", ref, err)
		}
	}
	// Identities are checked: the signatures name tags, so matchExact
	// refuses a pull by digest.
	if _, err := pullWithIdentity(t, s.host, s.host+"/mxos/10/x86_64@"+stableDigest.String(), pub, `{"type":"matchExact"}`); err == nil {
		t.Error("matchExact accepted a digest the signatures do not name")
	}
	cosignVerify(t, s.host+"/mxos/10/x86_64@"+stableDigest.String(), pub, true)

	// An image with no signature is refused.
	unsigned := ocitest.Commit(t, serverRepo, "mxos/10/x86_64/edu", "10.0.9", time.Now(), ocitest.OSTree())
	im, err := bootimage.Build(ctx, serverRepo, reg, bootimage.BuildRequest{Repository: "mxos/10/x86_64", Arch: "x86_64",
		Version: "10.0.9", Commit: unsigned, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := bootimage.Tag(ctx, reg, im, "unsigned"); err != nil {
		t.Fatal(err)
	}
	if _, err := pullPolicy(t, s.host, s.host+"/mxos/10/x86_64:unsigned", pub); err == nil ||
		!strings.Contains(err.Error(), "no signature exists") {
		t.Errorf("unsigned image: %v", err)
	}

	// A tampered signature is refused, by containers/image and by cosign.
	sigTag := ocisig.SignatureTag(stableDigest)
	mt, sb, _, err := reg.GetManifest(ctx, "mxos/10/x86_64", sigTag)
	if err != nil {
		t.Fatal(err)
	}
	var sm v1.Manifest
	json.Unmarshal(sb, &sm)
	for i := range sm.Layers {
		sig := sm.Layers[i].Annotations[ocisig.SignatureAnnotation]
		flipped := "B"
		if sig[0] == 'B' {
			flipped = "C"
		}
		sm.Layers[i].Annotations[ocisig.SignatureAnnotation] = flipped + sig[1:]
	}
	tampered, _ := json.Marshal(sm)
	if _, err := reg.PutManifest(ctx, "mxos/10/x86_64", sigTag, mt, tampered); err != nil {
		t.Fatal(err)
	}
	if _, err := pullPolicy(t, s.host, s.host+"/mxos/10/x86_64:stable", pub); err == nil {
		t.Error("tampered signature accepted")
	}
	cosignVerify(t, s.host+"/mxos/10/x86_64@"+stableDigest.String(), pub, false)
	if _, err := ocisig.Verify(ctx, reg, func(_ context.Context, _ string, d digest.Digest) (io.ReadCloser, error) {
		return reg.Blobs().Open(d)
	}, "mxos/10/x86_64", stableDigest, mustPub(t, pub)); !errors.Is(err, ocisig.ErrBadSignature) {
		t.Errorf("ocisig.Verify of the tampered signatures: %v", err)
	}
}

// cosignVerify runs `cosign verify --key` offline.
func cosignVerify(t *testing.T, ref, pub string, wantOK bool) {
	t.Helper()
	bin := testtool.Require(t, "cosign")
	home := t.TempDir()
	cmd := exec.Command(bin, "verify", "--offline", "--key", pub, "--insecure-ignore-tlog", "--insecure-ignore-sct",
		"--allow-http-registry", ref)
	cmd.Env = append(os.Environ(), "HOME="+home, "TUF_ROOT="+filepath.Join(home, "tuf"), "SIGSTORE_NO_CACHE=true")
	cmd.Env = append(cmd.Env, cosignOffline...)
	out, err := cmd.CombinedOutput()
	t.Logf("cosign verify %s: %v\n%s", ref, err, out)
	if wantOK && err != nil {
		t.Errorf("cosign verify %s: %v\n%s", ref, err, out)
	}
	if !wantOK && err == nil {
		t.Errorf("cosign verify %s accepted a tampered signature:\n%s", ref, out)
	}
}

func mustPub(t *testing.T, pemFile string) crypto.PublicKey {
	t.Helper()
	b, err := os.ReadFile(pemFile)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// Local publishing with --image writes a signed, tagged image into
// DATA/oci, the registry mxos-server serves from the same directory.
func TestImageLocalPublish(t *testing.T) {
	ctx := context.Background()
	keys := newKeys(t)
	data := t.TempDir()
	src := filepath.Join(t.TempDir(), "tree.tar")
	if err := os.WriteFile(src, ocitest.Tar(t, ocitest.OSTree()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mxosctl(), "publish", "--data", data, "--keys", keys.dir, "--ref", "mxos/10/x86_64/testing",
		"--version", "10.0.1", "--image", "--image-host", "updates.example", "-q", src)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	reg, err := registry.Open(filepath.Join(data, "oci"), registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tags, _ := reg.ListTags(ctx, "mxos/10/x86_64")
	var plain []string
	for _, tg := range tags {
		if !strings.HasSuffix(tg, ".sig") {
			plain = append(plain, tg)
		}
	}
	if !reflect.DeepEqual(plain, []string{"testing", "testing-10.0.1"}) {
		t.Fatalf("tags %v", tags)
	}
	_, _, d, err := reg.GetManifest(ctx, "mxos/10/x86_64", "testing")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), d.String()) {
		t.Errorf("output does not name the image %s:\n%s", d, out)
	}
	repo, _ := ostree.Open(filepath.Join(data, "repo"))
	commit, _ := repo.ResolveRef("mxos/10/x86_64/testing")
	blobs := func(_ context.Context, _ string, d digest.Digest) (io.ReadCloser, error) { return reg.Blobs().Open(d) }
	im, _, _, err := bootimage.Load(ctx, reg, blobs, "mxos/10/x86_64", "testing")
	if err != nil {
		t.Fatal(err)
	}
	if label, _ := imagename.CommitLabel(im.Config); label != commit.String() {
		t.Errorf("label %s, ref at %s", label, commit)
	}
	pemOut, err := exec.Command(mxosctl(), "image-key", "--keys", keys.dir).Output()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemOut)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := ocisig.Verify(ctx, reg, blobs, "mxos/10/x86_64", d, pub); err != nil || n != 2 {
		t.Errorf("signatures: %d %v", n, err)
	}
}
