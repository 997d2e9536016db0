package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mxos-linux/mxos-update/internal/oci/content"

	"github.com/opencontainers/go-digest"

	"github.com/mxos-linux/mxos-update/internal/storage"
)

// ContentStore is the Go API for writing and reading images without HTTP
// (internal/oci/content); Store implements it.
type ContentStore = content.ContentStore

var _ ContentStore = (*Store)(nil)

// Defaults for Options.
const (
	DefaultGCGrace   = time.Hour
	DefaultUploadTTL = 24 * time.Hour
)

// Options tune a Store; the zero value is fine.
type Options struct {
	// GCGrace spares blobs, blob links and untagged manifests younger than
	// this from garbage collection, so a push in progress (blobs first,
	// manifest last) is never collected under the pusher. Default
	// DefaultGCGrace.
	GCGrace time.Duration
	// UploadTTL is how long an idle upload session is kept. Default
	// DefaultUploadTTL.
	UploadTTL time.Duration
	// Blobs, when set, holds the blob bytes instead of DIR/blobs: an S3
	// bucket through object.Blobs. Repository metadata (links, tags,
	// manifest records) and upload sessions stay in DIR.
	Blobs BlobStore
}

// BlobStore is where blob bytes live: the directory store
// (storage.Blobs, the default) or object.Blobs on an S3 bucket. Its
// errors wrap storage's (ErrNotFound, ErrDigestMismatch, ErrSizeMismatch,
// ErrBadDigest).
type BlobStore interface {
	// Put stores r under d once its digest and size (-1: any) match.
	Put(d digest.Digest, size int64, r io.Reader) error
	// PutFile moves a local file (an upload's data) into the store.
	PutFile(d digest.Digest, size int64, path string) error
	// Open reads the blob; an *os.File for the directory store, so
	// blob GETs use sendfile.
	Open(d digest.Digest) (io.ReadSeekCloser, error)
	Stat(d digest.Digest) (fs.FileInfo, error)
	Touch(d digest.Digest) error
	Delete(d digest.Digest) error
	Walk(fn func(d digest.Digest, fi fs.FileInfo) error) error
}

// dirBlobs is the directory store with Open returning the interface.
type dirBlobs struct{ *storage.Blobs }

func (b dirBlobs) Open(d digest.Digest) (io.ReadSeekCloser, error) {
	f, err := b.Blobs.Open(d)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Store is the registry's content on disk (see the package doc for the
// layout). It is safe for concurrent use within one process.
type Store struct {
	dir   string
	blobs BlobStore
	tmp   string
	opts  Options

	// gc is held shared by operations that make content reachable (link a
	// blob, store a manifest) and exclusively by GC, so a blob checked as
	// present cannot be collected before the manifest naming it is stored.
	gc sync.RWMutex
}

// Open opens (creating if needed) the registry content in dir.
func Open(dir string, opts Options) (*Store, error) {
	if opts.GCGrace <= 0 {
		opts.GCGrace = DefaultGCGrace
	}
	if opts.UploadTTL <= 0 {
		opts.UploadTTL = DefaultUploadTTL
	}
	s := &Store{dir: dir, tmp: filepath.Join(dir, "tmp"), opts: opts}
	for _, d := range []string{s.tmp, filepath.Join(dir, "repos"), filepath.Join(dir, "uploads")} {
		if err := storage.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("opening registry %s: %w", dir, err)
		}
	}
	if opts.Blobs != nil {
		s.blobs = opts.Blobs
	} else {
		b, err := storage.OpenBlobs(filepath.Join(dir, "blobs"))
		if err != nil {
			return nil, fmt.Errorf("opening registry: %w", err)
		}
		s.blobs = dirBlobs{b}
	}
	// Temporary files of atomic writes a crash interrupted.
	if ents, err := os.ReadDir(s.tmp); err == nil {
		for _, e := range ents {
			_ = os.Remove(filepath.Join(s.tmp, e.Name()))
		}
	}
	return s, nil
}

// Dir is the registry's directory.
func (s *Store) Dir() string { return s.dir }

// Blobs is the underlying blob store.
func (s *Store) Blobs() BlobStore { return s.blobs }

func (s *Store) repoDir(name string) string {
	return filepath.Join(s.dir, "repos", filepath.FromSlash(name))
}

func (s *Store) layerLink(name string, d digest.Digest) string {
	return filepath.Join(s.repoDir(name), "_layers", string(d.Algorithm()), d.Encoded())
}

func (s *Store) manifestLink(name string, d digest.Digest) string {
	return filepath.Join(s.repoDir(name), "_manifests", string(d.Algorithm()), d.Encoded())
}

func (s *Store) tagFile(name, tag string) string {
	return filepath.Join(s.repoDir(name), "_tags", tag)
}

func (s *Store) referrersDir(name string, subject digest.Digest) string {
	return filepath.Join(s.repoDir(name), "_referrers", string(subject.Algorithm())+"-"+subject.Encoded())
}

func (s *Store) referrerFile(name string, subject, d digest.Digest) string {
	return filepath.Join(s.referrersDir(name, subject), string(d.Algorithm())+"-"+d.Encoded())
}

// repoExists reports whether anything was ever pushed to name.
func (s *Store) repoExists(name string) bool {
	for _, sub := range []string{"_layers", "_manifests", "_tags"} {
		if _, err := os.Stat(filepath.Join(s.repoDir(name), sub)); err == nil {
			return true
		}
	}
	return false
}

// writeAtomic writes a metadata file atomically, creating its directory.
func (s *Store) writeAtomic(path string, data []byte) error {
	return storage.WriteFile(path, data, 0o644, storage.TempDir(s.tmp))
}

// linkBlob makes the stored blob d part of repository name. It refreshes
// the blob's time so GC's grace period starts again.
func (s *Store) linkBlob(name string, d digest.Digest) error {
	p := s.layerLink(name, d)
	if err := storage.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	now := time.Now()
	if err := os.Chtimes(p, now, now); err != nil {
		return err
	}
	if err := s.blobs.Touch(d); err != nil {
		return err
	}
	return storage.SyncDir(filepath.Dir(p))
}

// blobLinked reports whether d was pushed to (or mounted in) name.
func (s *Store) blobLinked(name string, d digest.Digest) bool {
	_, err := os.Stat(s.layerLink(name, d))
	return err == nil
}

// putBlob stores r under d and links it into name. A blob already in the
// store is only linked.
func (s *Store) putBlob(name string, d digest.Digest, size int64, r io.Reader) error {
	if fi, err := s.blobs.Stat(d); err == nil && (size < 0 || fi.Size() == size) {
		s.gc.RLock()
		defer s.gc.RUnlock()
		return s.linkBlob(name, d)
	}
	if err := s.blobs.Put(d, size, r); err != nil {
		return blobPutError(err)
	}
	s.gc.RLock()
	defer s.gc.RUnlock()
	return s.linkBlob(name, d)
}

// blobPutError maps storage refusals to spec errors.
func blobPutError(err error) error {
	switch {
	case errors.Is(err, storage.ErrDigestMismatch):
		return errorf(CodeDigestInvalid, "the content does not match the digest")
	case errors.Is(err, storage.ErrSizeMismatch):
		return errorf(CodeSizeInvalid, "the content does not match the size")
	case errors.Is(err, storage.ErrBadDigest):
		return errorf(CodeDigestInvalid, "invalid digest")
	}
	return err
}

// mount links a blob of repository from (any repository when from is
// empty) into name. It reports false when there is nothing to mount.
func (s *Store) mount(name, from string, d digest.Digest) (bool, error) {
	if from != "" && !s.blobLinked(from, d) {
		return false, nil
	}
	if _, err := s.blobs.Stat(d); err != nil {
		return false, nil
	}
	s.gc.RLock()
	defer s.gc.RUnlock()
	return true, s.linkBlob(name, d)
}

// unlinkBlob removes d from repository name; the bytes stay until GC.
func (s *Store) unlinkBlob(name string, d digest.Digest) error {
	err := os.Remove(s.layerLink(name, d))
	if errors.Is(err, fs.ErrNotExist) {
		return errorf(CodeBlobUnknown, "blob %s is not in %s", d, name)
	}
	return err
}

// manifestMeta is the content of a manifest link file.
type manifestMeta struct {
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
	Subject   digest.Digest `json:"subject,omitempty"`
}

func (s *Store) readManifestMeta(name string, d digest.Digest) (manifestMeta, error) {
	var m manifestMeta
	b, err := os.ReadFile(s.manifestLink(name, d))
	if errors.Is(err, fs.ErrNotExist) {
		return m, errorf(CodeManifestUnknown, "manifest %s is not in %s", d, name)
	}
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("manifest link %s in %s: %w", d, name, err)
	}
	return m, nil
}

// readTag returns the digest tag points at.
func (s *Store) readTag(name, tag string) (digest.Digest, error) {
	b, err := os.ReadFile(s.tagFile(name, tag))
	if errors.Is(err, fs.ErrNotExist) {
		return "", errorf(CodeManifestUnknown, "tag %s is not in %s", tag, name)
	}
	if err != nil {
		return "", err
	}
	d := digest.Digest(strings.TrimSpace(string(b)))
	if storage.Validate(d) != nil {
		return "", fmt.Errorf("tag %s in %s: corrupt link", tag, name)
	}
	return d, nil
}

// resolve turns a tag or digest reference into a digest and its meta.
func (s *Store) resolve(name, ref string) (digest.Digest, manifestMeta, error) {
	tag, d, err := parseReference(ref)
	if err != nil {
		return "", manifestMeta{}, err
	}
	if tag != "" {
		if d, err = s.readTag(name, tag); err != nil {
			return "", manifestMeta{}, err
		}
	}
	m, err := s.readManifestMeta(name, d)
	return d, m, err
}

// putManifest checks and stores a manifest: its bytes into the blob store,
// the referrer entry, the link, then the tags, in that order, so a tag
// never points at something incomplete. want is the digest the client
// named ("" when pushed by tag).
func (s *Store) putManifest(name string, want digest.Digest, tags []string, contentType string, body []byte) (digest.Digest, *manifestInfo, error) {
	if err := checkName(name); err != nil {
		return "", nil, err
	}
	for _, t := range tags {
		if err := checkTag(t); err != nil {
			return "", nil, err
		}
	}
	d := digest.Canonical.FromBytes(body)
	if want != "" {
		if storage.Validate(want) != nil {
			return "", nil, errorf(CodeDigestInvalid, "invalid digest %q", truncate(string(want)))
		}
		d = want.Algorithm().FromBytes(body)
		if d != want {
			return "", nil, errorf(CodeDigestInvalid, "the manifest does not match digest %s", want)
		}
	}
	m, err := parseManifest(contentType, body)
	if err != nil {
		return "", nil, err
	}
	s.gc.RLock()
	defer s.gc.RUnlock()
	for _, ref := range m.blobRefs() {
		if !s.blobLinked(name, ref.Digest) {
			return "", nil, errorf(CodeManifestBlobUnknown, "blob %s is not in %s: push it first", ref.Digest, name).
				withDetail(map[string]string{"digest": ref.Digest.String()})
		}
	}
	if err := s.blobs.Put(d, int64(len(body)), bytes.NewReader(body)); err != nil {
		return "", nil, fmt.Errorf("storing manifest %s: %w", d, err)
	}
	meta := manifestMeta{MediaType: m.MediaType, Size: int64(len(body))}
	if m.Subject != nil {
		meta.Subject = m.Subject.Digest
		desc := descriptor{MediaType: m.MediaType, Digest: d, Size: int64(len(body)), ArtifactType: m.ArtifactType, Annotations: m.Annotations}
		b, _ := json.Marshal(desc)
		if err := s.writeAtomic(s.referrerFile(name, m.Subject.Digest, d), b); err != nil {
			return "", nil, fmt.Errorf("storing referrer %s: %w", d, err)
		}
	}
	mb, _ := json.Marshal(meta)
	if err := s.writeAtomic(s.manifestLink(name, d), mb); err != nil {
		return "", nil, fmt.Errorf("storing manifest link %s: %w", d, err)
	}
	for _, t := range tags {
		if err := s.writeAtomic(s.tagFile(name, t), []byte(d.String()+"\n")); err != nil {
			return "", nil, fmt.Errorf("storing tag %s: %w", t, err)
		}
	}
	return d, m, nil
}

// deleteTag removes a tag, not the manifest.
func (s *Store) deleteTag(name, tag string) error {
	err := os.Remove(s.tagFile(name, tag))
	if errors.Is(err, fs.ErrNotExist) {
		return errorf(CodeManifestUnknown, "tag %s is not in %s", tag, name)
	}
	return err
}

// deleteManifest removes manifest d from name with the tags pointing at
// it and its referrer entry. Its bytes stay until GC.
func (s *Store) deleteManifest(name string, d digest.Digest) error {
	meta, err := s.readManifestMeta(name, d)
	if err != nil {
		return err
	}
	tags, err := s.tags(name)
	if err != nil {
		return err
	}
	for _, t := range tags {
		if td, err := s.readTag(name, t); err == nil && td == d {
			if err := os.Remove(s.tagFile(name, t)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	if err := os.Remove(s.manifestLink(name, d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if meta.Subject != "" {
		if err := os.Remove(s.referrerFile(name, meta.Subject, d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		_ = os.Remove(s.referrersDir(name, meta.Subject)) // only when empty
	}
	return nil
}

// tags lists the tags of name, sorted; an unknown repository is
// NAME_UNKNOWN.
func (s *Store) tags(name string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.repoDir(name), "_tags"))
	if errors.Is(err, fs.ErrNotExist) {
		if s.repoExists(name) {
			return []string{}, nil
		}
		return nil, errorf(CodeNameUnknown, "repository %s is not known", name)
	}
	if err != nil {
		return nil, err
	}
	tags := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.Type().IsRegular() && tagRE.MatchString(e.Name()) {
			tags = append(tags, e.Name())
		}
	}
	slices.Sort(tags)
	return tags, nil
}

// referrers lists the descriptors of manifests in name whose subject is d.
func (s *Store) referrers(name string, d digest.Digest, artifactType string) ([]descriptor, error) {
	dir := s.referrersDir(name, d)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return []descriptor{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := []descriptor{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		var desc descriptor
		if err := json.Unmarshal(b, &desc); err != nil {
			continue
		}
		if artifactType != "" && desc.ArtifactType != artifactType {
			continue
		}
		out = append(out, desc)
	}
	slices.SortFunc(out, func(a, b descriptor) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	return out, nil
}

// --- ContentStore ---

// PutBlob implements ContentStore.
func (s *Store) PutBlob(ctx context.Context, repo string, d digest.Digest, size int64, r io.Reader) error {
	if err := checkName(repo); err != nil {
		return err
	}
	if _, err := parseDigest(string(d)); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.putBlob(repo, d, size, r); err != nil {
		return fmt.Errorf("put blob %s in %s: %w", d, repo, err)
	}
	return nil
}

// HasBlob implements ContentStore: whether d is in repo.
func (s *Store) HasBlob(ctx context.Context, repo string, d digest.Digest) (bool, error) {
	if err := checkName(repo); err != nil {
		return false, err
	}
	if _, err := parseDigest(string(d)); err != nil {
		return false, err
	}
	if !s.blobLinked(repo, d) {
		return false, nil
	}
	_, err := s.blobs.Stat(d)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// PutManifest implements ContentStore.
func (s *Store) PutManifest(ctx context.Context, repo, tag, mediaType string, body []byte) (digest.Digest, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	var tags []string
	if tag != "" {
		tags = []string{tag}
	}
	d, _, err := s.putManifest(repo, "", tags, mediaType, body)
	if err != nil {
		return "", fmt.Errorf("put manifest in %s: %w", repo, err)
	}
	return d, nil
}

// GetManifest implements ContentStore.
func (s *Store) GetManifest(ctx context.Context, repo, reference string) (string, []byte, digest.Digest, error) {
	if err := checkName(repo); err != nil {
		return "", nil, "", err
	}
	d, meta, err := s.resolve(repo, reference)
	if err != nil {
		return "", nil, "", fmt.Errorf("get manifest %s in %s: %w", truncate(reference), repo, err)
	}
	f, err := s.blobs.Open(d)
	if err != nil {
		return "", nil, "", fmt.Errorf("get manifest %s in %s: %w", d, repo, err)
	}
	defer f.Close()
	body, err := io.ReadAll(io.LimitReader(f, MaxManifestSize+1))
	if err != nil {
		return "", nil, "", fmt.Errorf("get manifest %s in %s: %w", d, repo, err)
	}
	return meta.MediaType, body, d, nil
}

// ListTags implements ContentStore.
func (s *Store) ListTags(ctx context.Context, repo string) ([]string, error) {
	if err := checkName(repo); err != nil {
		return nil, err
	}
	t, err := s.tags(repo)
	if err != nil {
		return nil, fmt.Errorf("list tags of %s: %w", repo, err)
	}
	return t, nil
}
