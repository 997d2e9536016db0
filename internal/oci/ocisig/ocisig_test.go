package ocisig_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/mxos-linux/mxos-update/internal/oci/ocisig"
	"github.com/mxos-linux/mxos-update/internal/oci/ocitest"
)

const repo = "mxos/10/x86_64"

var image = digest.FromString("an image manifest")

func sigManifest(t *testing.T, s *ocitest.MemStore, d digest.Digest) v1.Manifest {
	t.Helper()
	mt, b, _, err := s.GetManifest(context.Background(), repo, ocisig.SignatureTag(d))
	if err != nil {
		t.Fatal(err)
	}
	if mt != v1.MediaTypeImageManifest {
		t.Fatalf("media type %s", mt)
	}
	var m v1.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSignatureTag(t *testing.T) {
	d := digest.Digest("sha256:" + strings.Repeat("ab", 32))
	if got, want := ocisig.SignatureTag(d), "sha256-"+strings.Repeat("ab", 32)+".sig"; got != want {
		t.Errorf("%s, want %s", got, want)
	}
}

func TestSignAppendsAndVerifies(t *testing.T) {
	ctx := context.Background()
	s := ocitest.NewMemStore()
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)

	if _, err := ocisig.Verify(ctx, s, s.GetBlob, repo, image, edKey.Public()); !errors.Is(err, ocisig.ErrNoSignature) {
		t.Fatalf("unsigned: %v", err)
	}
	if err := ocisig.SignImage(ctx, s, repo, image, "127.0.0.1:8080/mxos/10/x86_64:stable", edKey); err != nil {
		t.Fatal(err)
	}
	if err := ocisig.SignImage(ctx, s, repo, image, "updates.example/mxos/10/x86_64:stable-10.0.1", ecKey); err != nil {
		t.Fatal(err)
	}
	m := sigManifest(t, s, image)
	if len(m.Layers) != 2 {
		t.Fatalf("%d signatures kept, want 2", len(m.Layers))
	}
	for _, l := range m.Layers {
		if l.MediaType != ocisig.PayloadMediaType || l.Annotations[ocisig.SignatureAnnotation] == "" {
			t.Errorf("layer %+v", l)
		}
	}
	// The config lists the payloads, as c/image writes it.
	rc, _ := s.GetBlob(ctx, repo, m.Config.Digest)
	cb, _ := io.ReadAll(rc)
	var cfg v1.Image
	json.Unmarshal(cb, &cfg)
	if len(cfg.RootFS.DiffIDs) != 2 || cfg.RootFS.DiffIDs[1] != m.Layers[1].Digest {
		t.Errorf("config %s", cb)
	}
	for _, pub := range []any{edKey.Public(), ecKey.Public()} {
		n, err := ocisig.Verify(ctx, s, s.GetBlob, repo, image, pub)
		if err != nil || n != 1 {
			t.Errorf("verify %T: %d, %v", pub, n, err)
		}
	}
	if _, err := ocisig.Verify(ctx, s, s.GetBlob, repo, image, other.Public()); !errors.Is(err, ocisig.ErrBadSignature) {
		t.Errorf("other key: %v", err)
	}
	// Another image's signatures do not carry over.
	if _, err := ocisig.Verify(ctx, s, s.GetBlob, repo, digest.FromString("other"), edKey.Public()); !errors.Is(err, ocisig.ErrNoSignature) {
		t.Errorf("other image: %v", err)
	}
}

func TestPayloadFormat(t *testing.T) {
	b, err := ocisig.NewPayload("127.0.0.1:8080/mxos/10/x86_64:stable", image, time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]map[string]any
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	crit := p["critical"]
	if crit["type"] != "cosign container image signature" ||
		crit["identity"].(map[string]any)["docker-reference"] != "127.0.0.1:8080/mxos/10/x86_64:stable" ||
		crit["image"].(map[string]any)["docker-manifest-digest"] != image.String() {
		t.Errorf("critical %v", crit)
	}
	if p["optional"]["creator"] != "mxos-update" || p["optional"]["timestamp"] != float64(1700000000) {
		t.Errorf("optional %v", p["optional"])
	}
	if _, err := ocisig.NewPayload("", image, time.Now()); err == nil {
		t.Error("empty reference accepted")
	}
	if _, err := ocisig.NewPayload("x/y", "sha256:zz", time.Now()); err == nil {
		t.Error("bad digest accepted")
	}
}

func TestVerifyRefusesTampering(t *testing.T) {
	ctx := context.Background()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	cases := []struct {
		name   string
		tamper func(s *ocitest.MemStore, m v1.Manifest)
		want   string
	}{
		{"payload changed", func(s *ocitest.MemStore, m v1.Manifest) {
			rc, _ := s.GetBlob(ctx, repo, m.Layers[0].Digest)
			b, _ := io.ReadAll(rc)
			s.SetBlob(repo, m.Layers[0].Digest, []byte(strings.Replace(string(b), "mxos-update", "mxos-updatE", 1)))
		}, "does not match its digest"},
		{"signature changed", func(s *ocitest.MemStore, m v1.Manifest) {
			sig := m.Layers[0].Annotations[ocisig.SignatureAnnotation]
			m.Layers[0].Annotations[ocisig.SignatureAnnotation] = "A" + sig[1:]
			put(t, s, m)
		}, "signature"},
		{"signature removed", func(s *ocitest.MemStore, m v1.Manifest) {
			delete(m.Layers[0].Annotations, ocisig.SignatureAnnotation)
			put(t, s, m)
		}, "no signature annotation"},
		{"signature not base64", func(s *ocitest.MemStore, m v1.Manifest) {
			m.Layers[0].Annotations[ocisig.SignatureAnnotation] = "!!"
			put(t, s, m)
		}, "not base64"},
		{"wrong media type", func(s *ocitest.MemStore, m v1.Manifest) {
			m.Layers[0].MediaType = "application/octet-stream"
			put(t, s, m)
		}, "layer of type"},
		{"payload too large", func(s *ocitest.MemStore, m v1.Manifest) {
			m.Layers[0].Size = 1 << 30
			put(t, s, m)
		}, "payload of"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := ocitest.NewMemStore()
			if err := ocisig.SignImage(ctx, s, repo, image, "h.example/"+repo+":stable", key); err != nil {
				t.Fatal(err)
			}
			tc.tamper(s, sigManifest(t, s, image))
			_, err := ocisig.Verify(ctx, s, s.GetBlob, repo, image, key.Public())
			if !errors.Is(err, ocisig.ErrBadSignature) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want ErrBadSignature saying %q", err, tc.want)
			}
		})
	}
}

func TestVerifyChecksIdentityAndDigest(t *testing.T) {
	ctx := context.Background()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	s := ocitest.NewMemStore()
	// A valid signature for another repository, copied under this image's tag.
	if err := ocisig.SignImage(ctx, s, repo, image, "h.example/mxos/10/aarch64:stable", key); err != nil {
		t.Fatal(err)
	}
	if _, err := ocisig.Verify(ctx, s, s.GetBlob, repo, image, key.Public()); !errors.Is(err, ocisig.ErrBadSignature) || !strings.Contains(err.Error(), "aarch64") {
		t.Errorf("other repository: %v", err)
	}
	// A valid signature of another digest stored under this image's tag.
	s2 := ocitest.NewMemStore()
	other := digest.FromString("other image")
	body, _ := ocisig.NewPayload("h.example/"+repo+":stable", other, time.Now())
	sig := ed25519.Sign(key, body)
	if err := ocisig.Attach(ctx, s2, repo, image, body, sig); err != nil {
		t.Fatal(err)
	}
	if _, err := ocisig.Verify(ctx, s2, s2.GetBlob, repo, image, key.Public()); !errors.Is(err, ocisig.ErrBadSignature) || !strings.Contains(err.Error(), "is for") {
		t.Errorf("other digest: %v", err)
	}
	// Host, tag and digest forms of the reference all name the repository.
	for _, ref := range []string{repo + ":stable", "localhost:5000/" + repo, "h.example/" + repo + "@" + image.String()} {
		s3 := ocitest.NewMemStore()
		if err := ocisig.SignImage(ctx, s3, repo, image, ref, key); err != nil {
			t.Fatal(err)
		}
		if _, err := ocisig.Verify(ctx, s3, s3.GetBlob, repo, image, key.Public()); err != nil {
			t.Errorf("%s: %v", ref, err)
		}
	}
}

func TestSignRefusesToReplaceUnreadableSignatures(t *testing.T) {
	ctx := context.Background()
	s := ocitest.NewMemStore()
	s.SetManifest(repo, ocisig.SignatureTag(image), v1.MediaTypeImageManifest, []byte("not json")) // no store accepts it: tampered
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	err := ocisig.SignImage(ctx, s, repo, image, "h.example/"+repo+":stable", key)
	if err == nil || !strings.Contains(err.Error(), "not replacing") {
		t.Fatalf("error %v", err)
	}
	_, b, _, _ := s.GetManifest(ctx, repo, ocisig.SignatureTag(image))
	if string(b) != "not json" {
		t.Error("signatures were replaced")
	}
}

func TestSameSignatureIsNotAddedTwice(t *testing.T) {
	ctx := context.Background()
	s := ocitest.NewMemStore()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	body, _ := ocisig.NewPayload("h.example/"+repo+":stable", image, time.Unix(1, 0))
	sig := ed25519.Sign(key, body) // deterministic
	for range 2 {
		if err := ocisig.Attach(ctx, s, repo, image, body, sig); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(sigManifest(t, s, image).Layers); n != 1 {
		t.Errorf("%d layers", n)
	}
}

func TestPublicKeyPEM(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	b, err := ocisig.PublicKeyPEM(pub)
	if err != nil || !strings.HasPrefix(string(b), "-----BEGIN PUBLIC KEY-----") {
		t.Fatalf("%s %v", b, err)
	}
	back, err := cryptoutils.UnmarshalPEMToPublicKey(b)
	if err != nil || !pub.Equal(back) {
		t.Errorf("round trip: %v", err)
	}
}

func put(t *testing.T, s *ocitest.MemStore, m v1.Manifest) {
	t.Helper()
	b, _ := json.Marshal(m)
	if _, err := s.PutManifest(context.Background(), repo, ocisig.SignatureTag(image), v1.MediaTypeImageManifest, b); err != nil {
		t.Fatal(err)
	}
}

func digestOf(b []byte) digest.Digest { return digest.FromBytes(b) }

func bytesReader(b []byte) io.Reader { return strings.NewReader(string(b)) }
