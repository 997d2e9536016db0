package imageio

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/image/v5/types"
	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/oci/imageio/layouttest"
	"github.com/mxos-linux/mxos-update/internal/oci/ocisig"
	"github.com/mxos-linux/mxos-update/internal/oci/registry"
	"github.com/mxos-linux/mxos-update/internal/oci/unpack"
)

func TestParseReference(t *testing.T) {
	good := map[string]string{
		"docker://127.0.0.1:8080/mxos/10/x86_64:stable": "docker",
		"oci:/tmp/layout:stable":                        "oci",
		"oci-archive:/tmp/img.tar":                      "oci-archive",
		"dir:/tmp/img":                                  "dir",
	}
	for s, transport := range good {
		ref, err := ParseReference(s)
		if err != nil {
			t.Errorf("%s: %v", s, err)
			continue
		}
		if ref.Transport().Name() != transport {
			t.Errorf("%s: transport %s", s, ref.Transport().Name())
		}
	}
	for _, s := range []string{"quay.io/fedora/fedora-bootc:42", "/tmp/layout", "./img", "nope:x", "docker://UPPER/x", ""} {
		_, err := ParseReference(s)
		if !errors.Is(err, ErrBadReference) {
			t.Errorf("%q: %v", s, err)
		}
		if err != nil && strings.Contains(s, "quay.io") && !strings.Contains(err.Error(), "docker://") {
			t.Errorf("no transport hint: %v", err)
		}
	}
}

func TestRegistryFromServer(t *testing.T) {
	for s, want := range map[string]Registry{
		"http://127.0.0.1:8080":      {Host: "127.0.0.1:8080", Insecure: true},
		"https://updates.example.mx": {Host: "updates.example.mx"},
	} {
		got, err := RegistryFromServer(s)
		if err != nil || got != want {
			t.Errorf("%s: %+v %v", s, got, err)
		}
	}
	for _, s := range []string{"ftp://x", "updates.example.mx", "http://x/prefix"} {
		if _, err := RegistryFromServer(s); err == nil {
			t.Errorf("%s accepted", s)
		}
	}
}

func smallLayout(t *testing.T) (string, layouttest.Image) {
	dir := filepath.Join(t.TempDir(), "layout")
	img := layouttest.Write(t, dir, "v1", "amd64", map[string]string{"ostree.commit": strings.Repeat("ab", 32)},
		layouttest.Tar(t, []layouttest.File{{Name: "etc/", Type: '5', Mode: 0o755}, {Name: "etc/os-release", Body: "NAME=MxOS\n"}}),
		layouttest.Tar(t, []layouttest.File{{Name: "usr/bin/tool", Body: "#!/bin/sh\n", Mode: 0o755}}))
	return dir, img
}

func mustRef(t *testing.T, s string) typesRef {
	t.Helper()
	r, err := ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCopyBetweenLayouts(t *testing.T) {
	ctx := context.Background()
	layout, img := smallLayout(t)
	sys, err := SystemContext(ContextOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	src := mustRef(t, "oci:"+layout+":v1")
	dirDst := mustRef(t, "dir:"+filepath.Join(t.TempDir(), "d"))
	back := filepath.Join(t.TempDir(), "back")
	ociDst := mustRef(t, "oci:"+back+":again")

	// Without an exception, the deny-by-default policy refuses.
	if _, err := Copy(ctx, RejectAll(), src, dirDst, CopyOptions{SourceCtx: sys, DestCtx: sys}); !IsPolicyDenied(err) {
		t.Fatalf("unsigned layout copied under the reject policy: %v", err)
	}
	p := RejectAll()
	AllowUnsigned(p, src)
	d1, err := Copy(ctx, p, src, dirDst, CopyOptions{SourceCtx: sys, DestCtx: sys, PreserveDigests: true})
	if err != nil {
		t.Fatal(err)
	}
	// The exception is for that source only.
	if _, err := Copy(ctx, p, dirDst, ociDst, CopyOptions{SourceCtx: sys, DestCtx: sys}); !IsPolicyDenied(err) {
		t.Fatalf("exception for one source let another through: %v", err)
	}
	AllowUnsigned(p, dirDst)
	d2, err := Copy(ctx, p, dirDst, ociDst, CopyOptions{SourceCtx: sys, DestCtx: sys, PreserveDigests: true})
	if err != nil {
		t.Fatal(err)
	}
	if d1 != img.Manifest || d2 != img.Manifest {
		t.Fatalf("digests changed: %s %s, want %s", d1, d2, img.Manifest)
	}
	l, err := unpack.OpenLayout(back)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got, err := l.Image("again")
	if err != nil || got.ManifestDigest != img.Manifest || got.Config.Config.Labels["ostree.commit"] == "" {
		t.Fatalf("copied layout: %+v %v", got, err)
	}
}

// testRegistry serves a registry store over HTTP; pushes need the
// password "release-token".
func testRegistry(t *testing.T) (*registry.Store, Registry) {
	t.Helper()
	st, err := registry.Open(t.TempDir(), registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := registry.NewHandler(st, func(r *http.Request) error {
		if _, p, ok := r.BasicAuth(); ok && p == "release-token" {
			return nil
		}
		return registry.ErrUnauthorized
	}, zap.NewNop())
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	reg, err := RegistryFromServer(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return st, reg
}

func newKey(t *testing.T) (ed25519.PrivateKey, []byte) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	pem, err := ocisig.PublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	return priv, pem
}

func TestRegistrySignedPolicy(t *testing.T) {
	ctx := context.Background()
	store, reg := testRegistry(t)
	layout, img := smallLayout(t)
	src := mustRef(t, "oci:"+layout+":v1")
	dst, err := reg.Reference("mxos/10/x86_64", "stable")
	if err != nil {
		t.Fatal(err)
	}
	anon, _ := SystemContext(ContextOptions{Registry: reg, Dir: t.TempDir()})
	pusher, _ := SystemContext(ContextOptions{Registry: reg, Token: "release-token", Dir: t.TempDir()})
	local, _ := SystemContext(ContextOptions{Dir: t.TempDir()})
	allow := RejectAll()
	AllowUnsigned(allow, src)

	if _, err := Copy(ctx, allow, src, dst, CopyOptions{SourceCtx: local, DestCtx: anon}); err == nil {
		t.Fatal("pushed without a token")
	}
	pushed, err := Copy(ctx, allow, src, dst, CopyOptions{SourceCtx: local, DestCtx: pusher, RemoveSignatures: true})
	if err != nil {
		t.Fatal(err)
	}
	if pushed != img.Manifest {
		t.Logf("push changed the digest %s -> %s", img.Manifest, pushed)
	}

	key, pub := newKey(t)
	otherKey, otherPub := newKey(t)
	policy, err := Policy(PolicyOptions{Scope: reg.Scope("mxos"), Keys: [][]byte{pub}})
	if err != nil {
		t.Fatal(err)
	}
	out := func() error {
		d := mustRef(t, "oci:"+filepath.Join(t.TempDir(), "out")+":x")
		got, err := Copy(ctx, policy, dst, d, CopyOptions{SourceCtx: anon, DestCtx: local, RemoveSignatures: true, PreserveDigests: true})
		if err == nil && got != pushed {
			t.Errorf("pulled %s, pushed %s", got, pushed)
		}
		return err
	}
	if err := out(); !IsPolicyDenied(err) {
		t.Fatalf("unsigned image accepted: %v", err)
	}
	ref, _ := DockerReference(dst)
	// Another key's signature is not enough.
	if err := ocisig.SignImage(ctx, store, "mxos/10/x86_64", pushed, ref, otherKey); err != nil {
		t.Fatal(err)
	}
	if err := out(); err == nil {
		t.Fatal("image signed by an untrusted key accepted")
	}
	// A signature for another repository is not enough either.
	if err := ocisig.SignImage(ctx, store, "mxos/10/x86_64", pushed, reg.Host+"/mxos/10/aarch64:stable", key); err != nil {
		t.Fatal(err)
	}
	if err := out(); err == nil {
		t.Fatal("signature naming another repository accepted")
	}
	if err := ocisig.SignImage(ctx, store, "mxos/10/x86_64", pushed, ref, key); err != nil {
		t.Fatal(err)
	}
	if err := out(); err != nil {
		t.Fatalf("signed image refused: %v", err)
	}
	// Both keys trusted: still fine; the untrusted one alone: refused.
	two, _ := Policy(PolicyOptions{Scope: reg.Scope("mxos"), Keys: [][]byte{otherPub, pub}})
	policy = two
	if err := out(); err != nil {
		t.Fatal(err)
	}
	// Images outside the scope are rejected whatever they carry.
	other, _ := reg.Reference("elsewhere/x", "stable")
	if _, err := Copy(ctx, allow, src, other, CopyOptions{SourceCtx: local, DestCtx: pusher}); err != nil {
		t.Fatal(err)
	}
	d := mustRef(t, "oci:"+filepath.Join(t.TempDir(), "o")+":x")
	if _, err := Copy(ctx, policy, other, d, CopyOptions{SourceCtx: anon, DestCtx: local}); !IsPolicyDenied(err) {
		t.Fatalf("image outside the trusted scope: %v", err)
	}
}

func TestPolicyNeedsKeysAndScope(t *testing.T) {
	if _, err := Policy(PolicyOptions{Scope: "h/mxos"}); err == nil {
		t.Error("policy without keys")
	}
	if _, err := Policy(PolicyOptions{Keys: [][]byte{[]byte("x")}}); err == nil {
		t.Error("policy without scope")
	}
	if _, err := SystemContext(ContextOptions{}); err == nil {
		t.Error("context without a directory")
	}
}

func TestSystemContextIsolated(t *testing.T) {
	dir := t.TempDir()
	sys, err := SystemContext(ContextOptions{Registry: Registry{Host: "127.0.0.1:9", Insecure: true}, Token: "tok", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(sys.RegistriesDirPath, "mxos.yaml"))
	if err != nil || !strings.Contains(string(b), `"127.0.0.1:9"`) || !strings.Contains(string(b), "use-sigstore-attachments: true") {
		t.Fatalf("registries.d: %q %v", b, err)
	}
	if sys.DockerAuthConfig == nil || sys.DockerAuthConfig.Password != "tok" || !strings.HasPrefix(sys.AuthFilePath, dir) ||
		!strings.HasPrefix(sys.SystemRegistriesConfPath, dir) || sys.DockerInsecureSkipTLSVerify != types.OptionalBoolTrue {
		t.Fatalf("context not isolated: %+v", sys)
	}
}

type typesRef = types.ImageReference
