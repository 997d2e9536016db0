// Package ocisig owns image signatures in the sigstore attachment format:
// the "simple signing" payload (critical.identity.docker-reference,
// critical.image.docker-manifest-digest, critical.type "cosign container
// image signature", optional), signed with a sigstore signature.Signer and
// stored as a layer of an OCI manifest tagged sha256-<hex>.sig, with the
// base64 signature in the layer's dev.cosignproject.cosign/signature
// annotation. It is what containers/image (podman, skopeo, bootc,
// rpm-ostree: policy type sigstoreSigned, with use-sigstore-attachments in
// registries.d) reads and what `cosign verify --key` checks.
//
// The manifest is written here rather than through containers/image's
// copy.Image because c/image only signs with a key file (no in-memory or
// KMS signer; see shared notes 2.3), and server-side packages must not
// import c/image.
//
// Signing appends: the existing .sig manifest is read, the new layer is
// added (an identical payload and signature is not added twice) and the
// tag is written again, so earlier signatures, ours or cosign's, stay.
// Two writers signing the same image at the same moment can still lose
// one signature (the tag is read-modify-written); releases are signed
// from one machine.
//
// MxOS signs with the ed25519 release key (pure Ed25519, which sigstore's
// LoadVerifier, containers/image and cosign verify).
package ocisig

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/mxos-linux/mxos-update/internal/oci/content"
)

// ContentStore is the registry storage or a remote registry. GetManifest
// of a missing tag returns an error wrapping content.ErrNotFound.
type ContentStore = content.ContentStore

// BlobFunc opens a blob of repo; Verify checks what it returns.
type BlobFunc func(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, error)

// The attachment format's names (cosign's SIGNATURE_SPEC, c/image
// internal/signature/sigstore.go).
const (
	PayloadMediaType    = "application/vnd.dev.cosign.simplesigning.v1+json"
	SignatureAnnotation = "dev.cosignproject.cosign/signature"
)

// Errors callers decide on.
var (
	ErrNoSignature  = errors.New("image has no signature")
	ErrBadSignature = errors.New("no valid signature for the image")
)

// Limits on what Verify reads.
const (
	maxPayload    = 64 << 10
	maxSignatures = 1024
)

// SignatureTag is the tag of d's signatures: sha256-<hex>.sig.
func SignatureTag(d digest.Digest) string {
	return strings.Replace(d.String(), ":", "-", 1) + ".sig"
}

// NewPayload builds the simple-signing payload for an image.
// dockerReference is the full name clients pull, host/repo:tag.
func NewPayload(dockerReference string, manifestDigest digest.Digest, now time.Time) ([]byte, error) {
	if err := manifestDigest.Validate(); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	if dockerReference == "" {
		return nil, fmt.Errorf("payload: empty docker reference")
	}
	p := payload.SimpleContainerImage{
		Critical: payload.Critical{
			Identity: payload.Identity{DockerReference: dockerReference},
			Image:    payload.Image{DockerManifestDigest: manifestDigest.String()},
			Type:     payload.CosignSignatureType,
		},
		Optional: map[string]any{"creator": "mxos-update", "timestamp": now.Unix()},
	}
	return json.Marshal(p)
}

// Sign signs the image repo@manifestDigest for dockerReference and appends
// the signature to its .sig manifest.
func Sign(ctx context.Context, store ContentStore, repo string, manifestDigest digest.Digest, dockerReference string, signer signature.Signer) error {
	body, err := NewPayload(dockerReference, manifestDigest, time.Now())
	if err != nil {
		return err
	}
	sig, err := signer.SignMessage(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("signing %s: %w", manifestDigest, err)
	}
	return Attach(ctx, store, repo, manifestDigest, body, sig)
}

// SignImage is Sign with a private key: an ed25519.PrivateKey,
// *ecdsa.PrivateKey or *rsa.PrivateKey (what sigstore's LoadSigner takes;
// ECDSA and RSA hash with SHA-256, as verifiers expect).
func SignImage(ctx context.Context, store ContentStore, repo string, manifestDigest digest.Digest, dockerReference string, key crypto.Signer) error {
	s, err := signature.LoadSigner(key, crypto.SHA256)
	if err != nil {
		return fmt.Errorf("image signing key: %w", err)
	}
	return Sign(ctx, store, repo, manifestDigest, dockerReference, s)
}

// Attach adds one signed payload to the .sig manifest of manifestDigest,
// keeping every signature already there.
func Attach(ctx context.Context, store ContentStore, repo string, manifestDigest digest.Digest, body, sig []byte) error {
	tag := SignatureTag(manifestDigest)
	pd := digest.FromBytes(body)
	if err := store.PutBlob(ctx, repo, pd, int64(len(body)), bytes.NewReader(body)); err != nil {
		return fmt.Errorf("storing signature payload: %w", err)
	}
	layers, err := existing(ctx, store, repo, tag)
	if err != nil {
		return err
	}
	enc := base64.StdEncoding.EncodeToString(sig)
	dup := false
	for _, l := range layers {
		if l.Digest == pd && l.Annotations[SignatureAnnotation] == enc {
			dup = true
		}
	}
	if !dup {
		layers = append(layers, v1.Descriptor{MediaType: PayloadMediaType, Digest: pd, Size: int64(len(body)),
			Annotations: map[string]string{SignatureAnnotation: enc}})
	}
	cfg := v1.Image{RootFS: v1.RootFS{Type: "layers", DiffIDs: []digest.Digest{}}}
	for _, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.Digest)
	}
	cb, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	cd := digest.FromBytes(cb)
	if err := store.PutBlob(ctx, repo, cd, int64(len(cb)), bytes.NewReader(cb)); err != nil {
		return fmt.Errorf("storing signature config: %w", err)
	}
	mb, err := json.Marshal(v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageManifest,
		Config:    v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: cd, Size: int64(len(cb))},
		Layers:    layers,
	})
	if err != nil {
		return err
	}
	if _, err := store.PutManifest(ctx, repo, tag, v1.MediaTypeImageManifest, mb); err != nil {
		return fmt.Errorf("storing signatures of %s: %w", manifestDigest, err)
	}
	return nil
}

// existing returns the layers of the .sig manifest at tag, or none.
func existing(ctx context.Context, store ContentStore, repo, tag string) ([]v1.Descriptor, error) {
	_, mb, _, err := store.GetManifest(ctx, repo, tag)
	if errors.Is(err, content.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading signatures %s:%s: %w", repo, tag, err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		// Refuse rather than replace: replacing would drop signatures.
		return nil, fmt.Errorf("signatures %s:%s are not a manifest (not replacing them): %w", repo, tag, err)
	}
	return m.Layers, nil
}

// Verify checks the signatures of repo@manifestDigest against pub and
// returns how many are valid: the signature over the payload, the payload's
// type and manifest digest, and that its docker reference names repo (on
// any host, with any tag). It fails with ErrNoSignature when there are
// none and ErrBadSignature when none is valid.
func Verify(ctx context.Context, store ContentStore, blobs BlobFunc, repo string, manifestDigest digest.Digest, pub crypto.PublicKey) (int, error) {
	verifier, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return 0, fmt.Errorf("verification key: %w", err)
	}
	layers, err := existing(ctx, store, repo, SignatureTag(manifestDigest))
	if err != nil {
		return 0, err
	}
	if len(layers) == 0 {
		return 0, fmt.Errorf("%s@%s: %w", repo, manifestDigest, ErrNoSignature)
	}
	if len(layers) > maxSignatures {
		layers = layers[:maxSignatures]
	}
	valid := 0
	var reasons []string
	for _, l := range layers {
		if err := verifyOne(ctx, blobs, repo, manifestDigest, l, verifier); err != nil {
			reasons = append(reasons, err.Error())
			continue
		}
		valid++
	}
	if valid == 0 {
		return 0, fmt.Errorf("%s@%s: %w (%s)", repo, manifestDigest, ErrBadSignature, strings.Join(reasons, "; "))
	}
	return valid, nil
}

func verifyOne(ctx context.Context, blobs BlobFunc, repo string, want digest.Digest, l v1.Descriptor, v signature.Verifier) error {
	if l.MediaType != PayloadMediaType {
		return fmt.Errorf("layer of type %q", l.MediaType)
	}
	if err := l.Digest.Validate(); err != nil {
		return fmt.Errorf("payload digest %q: %v", l.Digest, err)
	}
	enc, ok := l.Annotations[SignatureAnnotation]
	if !ok {
		return fmt.Errorf("payload %s has no signature annotation", l.Digest)
	}
	sig, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return fmt.Errorf("signature is not base64: %v", err)
	}
	if l.Size < 0 || l.Size > maxPayload {
		return fmt.Errorf("payload of %d bytes", l.Size)
	}
	rc, err := blobs(ctx, repo, l.Digest)
	if err != nil {
		return fmt.Errorf("payload %s: %v", l.Digest, err)
	}
	body, err := io.ReadAll(io.LimitReader(rc, maxPayload+1))
	rc.Close()
	if err != nil {
		return fmt.Errorf("payload %s: %v", l.Digest, err)
	}
	if digest.FromBytes(body) != l.Digest {
		return fmt.Errorf("payload does not match its digest %s", l.Digest)
	}
	if err := v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(body)); err != nil {
		return fmt.Errorf("signature: %v", err)
	}
	var p payload.SimpleContainerImage
	if err := json.Unmarshal(body, &p); err != nil {
		return fmt.Errorf("payload: %v", err)
	}
	if p.Critical.Type != payload.CosignSignatureType {
		return fmt.Errorf("payload type %q", p.Critical.Type)
	}
	if p.Critical.Image.DockerManifestDigest != want.String() {
		return fmt.Errorf("signature is for %s", p.Critical.Image.DockerManifestDigest)
	}
	if got := repositoryPath(p.Critical.Identity.DockerReference); got != repo {
		return fmt.Errorf("signature names %q, not %s", p.Critical.Identity.DockerReference, repo)
	}
	return nil
}

// repositoryPath strips the host, tag and digest of a docker reference:
// "127.0.0.1:8080/mxos/10/x86_64:stable" → "mxos/10/x86_64".
func repositoryPath(ref string) string {
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	if i := strings.IndexByte(ref, '/'); i >= 0 {
		host := ref[:i]
		if strings.ContainsAny(host, ".:") || host == "localhost" {
			ref = ref[i+1:]
		}
	}
	return ref
}

// PublicKeyPEM is pub as a PEM "PUBLIC KEY" block, the form policy.json's
// keyPath and `cosign verify --key` read.
func PublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return nil, fmt.Errorf("public key PEM: %w", err)
	}
	return b, nil
}
