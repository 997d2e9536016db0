// Package content owns the Go contract between code that writes or reads
// OCI images and where they are kept: the ContentStore interface and its
// sentinel errors. The registry's on-disk store, the remote registry
// client and test stores implement it; the image builder and the signer
// use it. It has no code of its own, so the device side can share the
// image naming and signature code without linking the registry.
package content

import (
	"context"
	"errors"
	"io"

	"github.com/opencontainers/go-digest"
)

// ContentStore is the Go API for writing and reading images without HTTP.
// Unknown repositories, tags, manifests and blobs are
// errors.Is(err, ErrNotFound); refused input is errors.Is(err, ErrInvalid).
type ContentStore interface {
	// PutBlob stores a blob after checking size and digest; a blob already present is a no-op.
	PutBlob(ctx context.Context, repo string, d digest.Digest, size int64, r io.Reader) error
	HasBlob(ctx context.Context, repo string, d digest.Digest) (bool, error)
	// PutManifest stores a manifest and, when tag != "", points tag at it. It returns its digest.
	PutManifest(ctx context.Context, repo, tag, mediaType string, body []byte) (digest.Digest, error)
	// GetManifest resolves a tag or digest.
	GetManifest(ctx context.Context, repo, reference string) (mediaType string, body []byte, d digest.Digest, err error)
	ListTags(ctx context.Context, repo string) ([]string, error)
}

var (
	// ErrNotFound: unknown repository, tag, manifest, blob or upload.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: the caller's input was refused (bad name, digest,
	// manifest, size, range).
	ErrInvalid = errors.New("invalid input")
	// ErrUnauthorized: the store wants credentials and got none valid
	// (HTTP 401).
	ErrUnauthorized = errors.New("authentication required")
	// ErrDenied: valid credentials that may not write (HTTP 403).
	ErrDenied = errors.New("not allowed to push or delete")
)
