// Package ocitest holds test helpers for the OCI packages: an in-memory
// content store with the registry's method set, and a fixture OSTree tree.
// It is imported only from _test.go files.
package ocitest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/mxos-linux/mxos-update/internal/oci/registry"
)

var _ registry.ContentStore = (*MemStore)(nil)

// MemStore keeps blobs, manifests and tags in memory and counts uploads.
type MemStore struct {
	mu        sync.Mutex
	blobs     map[string]map[digest.Digest][]byte
	manifests map[string]map[digest.Digest]manifest
	tags      map[string]map[string]digest.Digest
	// BlobPuts counts PutBlob calls that stored a new blob.
	BlobPuts int
}

type manifest struct {
	mediaType string
	body      []byte
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{blobs: map[string]map[digest.Digest][]byte{}, manifests: map[string]map[digest.Digest]manifest{},
		tags: map[string]map[string]digest.Digest{}}
}

// PutBlob stores r after checking its size and digest.
func (s *MemStore) PutBlob(_ context.Context, repo string, d digest.Digest, size int64, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if int64(len(b)) != size {
		return fmt.Errorf("blob %s: %d bytes, declared %d", d, len(b), size)
	}
	if digest.FromBytes(b) != d {
		return fmt.Errorf("blob %s: digest mismatch", d)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.blobs[repo] == nil {
		s.blobs[repo] = map[digest.Digest][]byte{}
	}
	if _, ok := s.blobs[repo][d]; !ok {
		s.blobs[repo][d] = b
		s.BlobPuts++
	}
	return nil
}

// HasBlob reports whether repo has d.
func (s *MemStore) HasBlob(_ context.Context, repo string, d digest.Digest) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.blobs[repo][d]
	return ok, nil
}

// GetBlob opens a blob; a missing one is an error wrapping registry.ErrNotFound.
func (s *MemStore) GetBlob(_ context.Context, repo string, d digest.Digest) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[repo][d]
	if !ok {
		return nil, fmt.Errorf("blob %s in %s: %w", d, repo, registry.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// SetBlob replaces a blob's bytes without any check (to test tampering).
func (s *MemStore) SetBlob(repo string, d digest.Digest, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blobs[repo][d] = b
}

// PutManifest stores body and points tag at it when tag is not empty.
func (s *MemStore) PutManifest(_ context.Context, repo, tag, mediaType string, body []byte) (digest.Digest, error) {
	d := digest.FromBytes(body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.manifests[repo] == nil {
		s.manifests[repo] = map[digest.Digest]manifest{}
		s.tags[repo] = map[string]digest.Digest{}
	}
	s.manifests[repo][d] = manifest{mediaType, bytes.Clone(body)}
	if tag != "" {
		s.tags[repo][tag] = d
	}
	return d, nil
}

// GetManifest resolves a tag or digest; a missing one is an error
// wrapping registry.ErrNotFound.
func (s *MemStore) GetManifest(_ context.Context, repo, reference string) (string, []byte, digest.Digest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := digest.Parse(reference)
	if err != nil {
		var ok bool
		if d, ok = s.tags[repo][reference]; !ok {
			return "", nil, "", fmt.Errorf("manifest %s:%s: %w", repo, reference, registry.ErrNotFound)
		}
	}
	m, ok := s.manifests[repo][d]
	if !ok {
		return "", nil, "", fmt.Errorf("manifest %s@%s: %w", repo, d, registry.ErrNotFound)
	}
	return m.mediaType, bytes.Clone(m.body), d, nil
}

// ListTags lists repo's tags, sorted.
func (s *MemStore) ListTags(_ context.Context, repo string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for t := range s.tags[repo] {
		out = append(out, t)
	}
	sort.Strings(out)
	return out, nil
}
