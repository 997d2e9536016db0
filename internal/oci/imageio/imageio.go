// Package imageio owns the thin layer over containers/image
// (go.podman.io/image/v5) that mxosctl and the device updater use to move
// images: parsing references of any transport (docker://, oci:,
// oci-archive:, dir:, docker-archive:), the SystemContext for our
// registry (the API token as the basic-auth password, plain HTTP or
// unverified TLS when asked, sigstore attachments turned on), the
// signature policy, and copy.Image with progress on a terminal.
//
// The policy is deny by default: images of our registry's repositories
// are accepted only with a sigstore signature (the .sig attachment
// internal/oci/ocisig writes) by one of the given public keys, whose
// signed identity names the same repository; everything else is rejected
// unless the caller adds an explicit exception for one import source
// (AllowUnsigned, mxosctl's --insecure-policy): images from elsewhere may
// be unsigned, and our re-signing is what devices trust.
//
// containers/image reads sigstore attachments only for registries that
// registries.d enables (use-sigstore-attachments), so SystemContext writes
// that file for our host into a private directory instead of depending on
// /etc/containers. It never reads the host's policy.json, auth files or
// registries.conf for our registry.
package imageio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"go.podman.io/image/v5/copy"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/transports"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"

	digest "github.com/opencontainers/go-digest"
)

// ErrBadReference: an image reference that cannot be parsed.
var ErrBadReference = errors.New("bad image reference")

// ParseReference parses "transport:details", e.g. docker://host/repo:tag,
// oci:/path:tag, oci-archive:/file.tar, dir:/path. A name without a
// transport gets a hint instead of a guess.
func ParseReference(s string) (types.ImageReference, error) {
	ref, err := alltransports.ParseImageName(s)
	if err != nil {
		transport, _, found := strings.Cut(s, ":")
		if !found || transports.Get(transport) == nil {
			return nil, fmt.Errorf("%w %q: name the transport first (docker://, oci:, oci-archive: or dir:)", ErrBadReference, s)
		}
		return nil, fmt.Errorf("%w %q: %v", ErrBadReference, s, err)
	}
	return ref, nil
}

// Name is how a reference is shown to people (transport:details).
func Name(ref types.ImageReference) string { return transports.ImageName(ref) }

// Registry is our registry as a client sees it.
type Registry struct {
	// Host is host[:port] as in image names, e.g. updates.example.mx or
	// 127.0.0.1:8080.
	Host string
	// Insecure allows plain HTTP and unverified TLS (the server URL was
	// http://).
	Insecure bool
}

// RegistryFromServer derives the registry from an mxos-server URL: the
// registry is served at /v2/ on the same host.
func RegistryFromServer(server string) (Registry, error) {
	u, err := url.Parse(server)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return Registry{}, fmt.Errorf("server %q must be an http(s) URL", server)
	}
	if u.Path != "" && u.Path != "/" {
		return Registry{}, fmt.Errorf("server %q: the registry must be at the root of the host (/v2/)", server)
	}
	return Registry{Host: u.Host, Insecure: u.Scheme == "http"}, nil
}

// Reference is docker://HOST/repo:tag as a parsed reference.
func (r Registry) Reference(repo, tag string) (types.ImageReference, error) {
	return ParseReference("docker://" + r.Host + "/" + repo + ":" + tag)
}

// Scope is the policy scope covering every repository under namespace
// (e.g. "mxos") on this registry.
func (r Registry) Scope(namespace string) string { return r.Host + "/" + namespace }

// ContextOptions configure a SystemContext.
type ContextOptions struct {
	// Registry, when Host is set, is our registry: credentials,
	// insecure transport and sigstore attachments apply to it, and the
	// host's auth files and registries.conf are not read.
	Registry Registry
	// Token is the API token, sent as the basic-auth password (pushing
	// needs the release role; pulling needs none).
	Token string
	// Dir is a private directory for the generated registries.d and the
	// blob-info cache; required.
	Dir string
	// Arch picks the instance of a multi-architecture image (OCI names:
	// amd64, arm64); the machine's when empty.
	Arch string
	// CAFile is a PEM file of a CA trusted for Registry next to the
	// system's roots (copied into Dir as containers/image's cert dir).
	CAFile string
}

// SystemContext builds the containers/image context for o.
func SystemContext(o ContextOptions) (*types.SystemContext, error) {
	if o.Dir == "" {
		return nil, errors.New("image context: no private directory")
	}
	regd := filepath.Join(o.Dir, "registries.d")
	if err := os.MkdirAll(regd, 0o700); err != nil {
		return nil, fmt.Errorf("image context: %w", err)
	}
	sys := &types.SystemContext{
		BlobInfoCacheDir:        o.Dir,
		RegistriesDirPath:       regd,
		ArchitectureChoice:      o.Arch,
		DockerRegistryUserAgent: "mxos-update",
	}
	if o.Registry.Host == "" {
		return sys, nil
	}
	// Only our host gets sigstore attachments; the file is ours alone.
	cfg := fmt.Sprintf("docker:\n  %q:\n    use-sigstore-attachments: true\n", o.Registry.Host)
	if err := os.WriteFile(filepath.Join(regd, "mxos.yaml"), []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("image context: %w", err)
	}
	empty := filepath.Join(o.Dir, "registries.conf")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		return nil, fmt.Errorf("image context: %w", err)
	}
	sys.SystemRegistriesConfPath = empty
	sys.SystemRegistriesConfDirPath = filepath.Join(o.Dir, "registries.conf.d") // absent: none
	sys.AuthFilePath = filepath.Join(o.Dir, "auth.json")                        // absent: none
	if o.Token != "" {
		sys.DockerAuthConfig = &types.DockerAuthConfig{Username: "mxos", Password: o.Token}
	}
	if o.CAFile != "" {
		b, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("image context: CA file: %w", err)
		}
		certs := filepath.Join(o.Dir, "certs.d")
		if err := os.MkdirAll(certs, 0o700); err != nil {
			return nil, fmt.Errorf("image context: %w", err)
		}
		if err := os.WriteFile(filepath.Join(certs, "ca.crt"), b, 0o600); err != nil {
			return nil, fmt.Errorf("image context: %w", err)
		}
		sys.DockerCertPath = certs
	}
	if o.Registry.Insecure {
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
		sys.OCIInsecureSkipTLSVerify = true
	}
	return sys, nil
}

// PolicyOptions describe what the signature policy trusts.
type PolicyOptions struct {
	// Scope is the registry namespace the keys vouch for, e.g.
	// "127.0.0.1:8080/mxos" (Registry.Scope).
	Scope string
	// Keys are PEM "PUBLIC KEY" blocks (ocisig.PublicKeyPEM); a signature
	// by any of them is accepted.
	Keys [][]byte
	// SignedScope, when set and different from Scope, is the namespace
	// the signatures name (the host the release team signed for); images
	// pulled under Scope (a mirror) are matched against it.
	SignedScope string
}

// Policy returns the deny-by-default policy: images under o.Scope need a
// sigstore signature by one of o.Keys naming the same repository (any
// tag or digest); every other image is rejected.
func Policy(o PolicyOptions) (*signature.Policy, error) {
	if o.Scope == "" {
		return nil, errors.New("signature policy: no registry scope")
	}
	if len(o.Keys) == 0 {
		return nil, errors.New("signature policy: no public keys")
	}
	ident := signature.NewPRMMatchRepository()
	if o.SignedScope != "" && o.SignedScope != o.Scope {
		m, err := signature.NewPRMRemapIdentity(o.Scope, o.SignedScope)
		if err != nil {
			return nil, fmt.Errorf("signature policy: %w", err)
		}
		ident = m
	}
	keyOpt := signature.PRSigstoreSignedWithKeyData(o.Keys[0])
	if len(o.Keys) > 1 {
		keyOpt = signature.PRSigstoreSignedWithKeyDatas(o.Keys)
	}
	req, err := signature.NewPRSigstoreSigned(keyOpt, signature.PRSigstoreSignedWithSignedIdentity(ident))
	if err != nil {
		return nil, fmt.Errorf("signature policy: %w", err)
	}
	return &signature.Policy{
		Default: signature.PolicyRequirements{signature.NewPRReject()},
		Transports: map[string]signature.PolicyTransportScopes{
			"docker": {o.Scope: signature.PolicyRequirements{req}},
		},
	}, nil
}

// RejectAll is the policy for copies whose source is ours but no key is
// needed to read it (nothing is accepted until AllowUnsigned adds it).
func RejectAll() *signature.Policy {
	return &signature.Policy{Default: signature.PolicyRequirements{signature.NewPRReject()},
		Transports: map[string]signature.PolicyTransportScopes{}}
}

// AllowUnsigned adds to p an exception accepting ref (its transport's
// policy identity) without a signature. Use it only for an import source
// the operator vouched for.
func AllowUnsigned(p *signature.Policy, ref types.ImageReference) {
	name := ref.Transport().Name()
	if p.Transports == nil {
		p.Transports = map[string]signature.PolicyTransportScopes{}
	}
	scopes := p.Transports[name]
	if scopes == nil {
		scopes = signature.PolicyTransportScopes{}
		p.Transports[name] = scopes
	}
	scopes[ref.PolicyConfigurationIdentity()] = signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}
}

// CopyOptions tune Copy.
type CopyOptions struct {
	SourceCtx, DestCtx *types.SystemContext
	// Report receives progress: bars on a terminal, a line per blob
	// otherwise; nothing when nil.
	Report io.Writer
	// RemoveSignatures drops the source's signatures (an import is
	// re-signed; OCI layouts cannot hold them).
	RemoveSignatures bool
	// PreserveDigests fails rather than changing the manifest digest.
	PreserveDigests bool
}

// KeepsSignatures reports whether dest's transport can store sigstore
// signatures (docker and dir can; oci, oci-archive and docker-archive
// cannot).
func KeepsSignatures(dest types.ImageReference) bool {
	switch dest.Transport().Name() {
	case "docker", "dir":
		return true
	}
	return false
}

// Copy copies src to dst; the source must satisfy policy. It returns the
// digest of the manifest written.
func Copy(ctx context.Context, policy *signature.Policy, src, dst types.ImageReference, o CopyOptions) (digest.Digest, error) {
	pc, err := signature.NewPolicyContext(policy)
	if err != nil {
		return "", fmt.Errorf("signature policy: %w", err)
	}
	defer pc.Destroy()
	report := o.Report
	if report == nil {
		report = io.Discard
	}
	m, err := copy.Image(ctx, pc, dst, src, &copy.Options{
		SourceCtx:        o.SourceCtx,
		DestinationCtx:   o.DestCtx,
		ReportWriter:     report,
		RemoveSignatures: o.RemoveSignatures,
		PreserveDigests:  o.PreserveDigests,
	})
	if err != nil {
		return "", fmt.Errorf("copy %s to %s: %w", Name(src), Name(dst), err)
	}
	d, err := manifest.Digest(m)
	if err != nil {
		return "", fmt.Errorf("copy %s: %w", Name(src), err)
	}
	return d, nil
}

// IsPolicyDenied reports whether err is the policy refusing an image
// (unsigned, badly signed, or outside the trusted scope).
func IsPolicyDenied(err error) bool {
	var pr signature.PolicyRequirementError
	return errors.As(err, &pr)
}

// DockerReference is host/repo:tag of a docker:// reference: what a
// signature's identity names.
func DockerReference(ref types.ImageReference) (string, error) {
	named := ref.DockerReference()
	if named == nil {
		return "", fmt.Errorf("%w: %s is not a registry image", ErrBadReference, Name(ref))
	}
	return reference.TagNameOnly(named).String(), nil
}
