// Package ocitest holds test helpers for the OCI packages: an in-memory
// content store with the registry's method set, and a fixture OSTree tree.
// It is imported only from _test.go files.
package ocitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/mxos-linux/mxos-update/internal/oci/content"
)

var _ content.ContentStore = (*MemStore)(nil)

// Names as the distribution spec allows them (and the registry checks).
var (
	nameRE = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRE  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

// MemStore keeps blobs, manifests and tags in memory and counts uploads.
// It keeps the ContentStore contract the registry's store keeps (checked
// by internal/oci/content/contenttest): refusals wrap content.ErrInvalid,
// unknowns content.ErrNotFound, a blob put again is accepted, and a
// manifest is stored only once its config and layers are in the
// repository, so a test that passes against it holds for the real stores.
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

func checkName(repo string) error {
	if len(repo) > 255 || !nameRE.MatchString(repo) {
		return fmt.Errorf("repository name %q: %w", repo, content.ErrInvalid)
	}
	return nil
}

func checkDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("digest %q: %v: %w", d, err, content.ErrInvalid)
	}
	return nil
}

// PutBlob stores r after checking its size and digest. A blob already in
// repo is accepted again without being counted.
func (s *MemStore) PutBlob(ctx context.Context, repo string, d digest.Digest, size int64, r io.Reader) error {
	if err := checkName(repo); err != nil {
		return err
	}
	if err := checkDigest(d); err != nil {
		return err
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	if int64(len(b)) != size {
		return fmt.Errorf("blob %s: %d bytes, declared %d: %w", d, len(b), size, content.ErrInvalid)
	}
	if d.Algorithm().FromBytes(b) != d {
		return fmt.Errorf("blob %s: the content does not match the digest: %w", d, content.ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
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
	if err := checkName(repo); err != nil {
		return false, err
	}
	if err := checkDigest(d); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.blobs[repo][d]
	return ok, nil
}

// GetBlob opens a blob; a missing one is an error wrapping content.ErrNotFound.
func (s *MemStore) GetBlob(_ context.Context, repo string, d digest.Digest) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[repo][d]
	if !ok {
		return nil, fmt.Errorf("blob %s in %s: %w", d, repo, content.ErrNotFound)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// SetBlob replaces a blob's bytes without any check (to test tampering).
func (s *MemStore) SetBlob(repo string, d digest.Digest, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blobs[repo][d] = b
}

// SetManifest stores body under tag without any check, as a store
// tampered with or written by another registry might hold it (to test
// what readers do with manifests no ContentStore accepts).
func (s *MemStore) SetManifest(repo, tag, mediaType string, body []byte) digest.Digest {
	d := digest.FromBytes(body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.manifests[repo] == nil {
		s.manifests[repo] = map[digest.Digest]manifest{}
		s.tags[repo] = map[string]digest.Digest{}
	}
	s.manifests[repo][d] = manifest{mediaType, bytes.Clone(body)}
	s.tags[repo][tag] = d
	return d
}

// manifestRefs is what MemStore reads of a manifest.
type manifestRefs struct {
	SchemaVersion *int `json:"schemaVersion"`
	Config        *struct {
		Digest digest.Digest `json:"digest"`
	} `json:"config"`
	Layers []struct {
		MediaType string        `json:"mediaType"`
		Digest    digest.Digest `json:"digest"`
	} `json:"layers"`
}

// blobRefs checks that body is one JSON object with schemaVersion 2 and
// returns the blobs it needs in the repository: its config and its
// distributable layers.
func blobRefs(body []byte) ([]digest.Digest, error) {
	var m manifestRefs
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest is not valid JSON: %v: %w", err, content.ErrInvalid)
	}
	if dec.More() {
		return nil, fmt.Errorf("manifest has data after the JSON object: %w", content.ErrInvalid)
	}
	if m.SchemaVersion == nil || *m.SchemaVersion != 2 {
		return nil, fmt.Errorf("manifest schemaVersion must be 2: %w", content.ErrInvalid)
	}
	var refs []digest.Digest
	if m.Config != nil {
		refs = append(refs, m.Config.Digest)
	}
	for _, l := range m.Layers {
		if !strings.Contains(l.MediaType, ".nondistributable.") && !strings.Contains(l.MediaType, ".foreign.") {
			refs = append(refs, l.Digest)
		}
	}
	return refs, nil
}

// PutManifest stores body and points tag at it when tag is not empty. The
// manifest's config and layers must be in repo already.
func (s *MemStore) PutManifest(ctx context.Context, repo, tag, mediaType string, body []byte) (digest.Digest, error) {
	if err := checkName(repo); err != nil {
		return "", err
	}
	if tag != "" && !tagRE.MatchString(tag) {
		return "", fmt.Errorf("tag %q: %w", tag, content.ErrInvalid)
	}
	refs, err := blobRefs(body)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("manifest: %w", err)
	}
	d := digest.FromBytes(body)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ref := range refs {
		if _, ok := s.blobs[repo][ref]; !ok {
			return "", fmt.Errorf("manifest %s: blob %s is not in %s, push it first: %w", d, ref, repo, content.ErrInvalid)
		}
	}
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
// wrapping content.ErrNotFound.
func (s *MemStore) GetManifest(_ context.Context, repo, reference string) (string, []byte, digest.Digest, error) {
	if err := checkName(repo); err != nil {
		return "", nil, "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := digest.Parse(reference)
	if err != nil {
		var ok bool
		if d, ok = s.tags[repo][reference]; !ok {
			return "", nil, "", fmt.Errorf("manifest %s:%s: %w", repo, reference, content.ErrNotFound)
		}
	}
	m, ok := s.manifests[repo][d]
	if !ok {
		return "", nil, "", fmt.Errorf("manifest %s@%s: %w", repo, d, content.ErrNotFound)
	}
	return m.mediaType, bytes.Clone(m.body), d, nil
}

// ListTags lists repo's tags, sorted; a repository never pushed to is an
// error wrapping content.ErrNotFound.
func (s *MemStore) ListTags(_ context.Context, repo string) ([]string, error) {
	if err := checkName(repo); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.blobs[repo] == nil && s.manifests[repo] == nil {
		return nil, fmt.Errorf("repository %s: %w", repo, content.ErrNotFound)
	}
	out := []string{}
	for t := range s.tags[repo] {
		out = append(out, t)
	}
	sort.Strings(out)
	return out, nil
}
