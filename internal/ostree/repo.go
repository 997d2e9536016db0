package ostree

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mxos-linux/mxos-update/internal/storage"
)

const archiveConfig = "[core]\nrepo_version=1\nmode=archive-z2\n"

// Repo is an archive-mode OSTree repository on disk. Reads are safe from
// many goroutines and processes at once; writes go through a Txn.
type Repo struct {
	path string
}

// Path is the repository directory.
func (r *Repo) Path() string { return r.path }

// Create makes an empty archive repository at dir, or opens the one that is
// already there.
func Create(dir string) (*Repo, error) {
	if r, err := Open(dir); err == nil {
		return r, nil
	}
	// deltas/ and delta-indexes/ are made here rather than by the first
	// static delta, so a publish never syncs the repository directory
	// itself before its summary rename (the crash points tell them apart
	// by path).
	for _, d := range []string{"", "objects", "refs/heads", "refs/remotes", "refs/mirrors", "tmp", "state", "extensions", "deltas", "delta-indexes"} {
		if err := mkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("create repository: %w", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "config")); errors.Is(err, fs.ErrNotExist) {
		if err := writeFileAtomic("", filepath.Join(dir, "config"), []byte(archiveConfig), 0o644); err != nil {
			return nil, fmt.Errorf("create repository: %w", err)
		}
	}
	return Open(dir)
}

// Open opens an existing archive repository.
func Open(dir string) (*Repo, error) {
	cfg, err := os.ReadFile(filepath.Join(dir, "config"))
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", dir, err)
	}
	mode := configValue(string(cfg), "core", "mode")
	if mode != "archive-z2" && mode != "archive" {
		return nil, fmt.Errorf("open repository %s: mode %q is not archive", dir, mode)
	}
	return &Repo{path: dir}, nil
}

// configValue reads key from [section] of a GKeyFile-style file.
func configValue(cfg, section, key string) string {
	in := false
	for _, line := range strings.Split(cfg, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			in = line == "["+section+"]"
			continue
		}
		if !in {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func (r *Repo) objectFile(c Checksum, t ObjectType) string {
	return filepath.Join(r.path, filepath.FromSlash(ObjectPath(c, t)))
}

// ObjectFile is the path of an object's file, for readers that send stored
// objects as they are (uploads to a server).
func (r *Repo) ObjectFile(c Checksum, t ObjectType) string { return r.objectFile(c, t) }

// HasObject reports whether the object is stored.
func (r *Repo) HasObject(c Checksum, t ObjectType) bool {
	_, err := os.Lstat(r.objectFile(c, t))
	return err == nil
}

// ReadMetadata reads a dirtree, dirmeta or commit object and checks that its
// bytes hash to its name.
func (r *Repo) ReadMetadata(c Checksum, t ObjectType) ([]byte, error) {
	if !t.IsMetadata() {
		return nil, fmt.Errorf("read %s: not a metadata object type", t)
	}
	b, err := readLimited(r.objectFile(c, t), MaxMetadataSize)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &ObjectError{c, t, ErrNotFound}
		}
		return nil, &ObjectError{c, t, err}
	}
	if sha256.Sum256(b) != c {
		return nil, &ObjectError{c, t, fmt.Errorf("%w: bytes do not match the checksum", ErrCorrupt)}
	}
	return b, nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	return b, nil
}

// ReadCommit reads and parses a commit.
func (r *Repo) ReadCommit(c Checksum) (*Commit, error) {
	b, err := r.ReadMetadata(c, ObjCommit)
	if err != nil {
		return nil, err
	}
	cm, err := ParseCommit(b)
	if err != nil {
		return nil, &ObjectError{c, ObjCommit, err}
	}
	return cm, nil
}

// ReadDirTree reads and parses a dirtree.
func (r *Repo) ReadDirTree(c Checksum) (*DirTree, error) {
	b, err := r.ReadMetadata(c, ObjDirTree)
	if err != nil {
		return nil, err
	}
	d, err := ParseDirTree(b)
	if err != nil {
		return nil, &ObjectError{c, ObjDirTree, err}
	}
	return d, nil
}

// ReadDirMeta reads and parses a dirmeta.
func (r *Repo) ReadDirMeta(c Checksum) (*DirMeta, error) {
	b, err := r.ReadMetadata(c, ObjDirMeta)
	if err != nil {
		return nil, err
	}
	m, err := ParseDirMeta(b)
	if err != nil {
		return nil, &ObjectError{c, ObjDirMeta, err}
	}
	return m, nil
}

// ReadCommitMeta returns the detached metadata of a commit, or nil metadata
// and no error when it has none.
func (r *Repo) ReadCommitMeta(c Checksum) (Metadata, error) {
	b, err := readLimited(r.objectFile(c, ObjCommitMeta), MaxMetadataSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &ObjectError{c, ObjCommitMeta, err}
	}
	m, err := ParseMetadata(b)
	if err != nil {
		return nil, &ObjectError{c, ObjCommitMeta, err}
	}
	return m, nil
}

// OpenContent opens a content object; reading it to EOF verifies it.
func (r *Repo) OpenContent(c Checksum) (*ContentReader, error) {
	f, err := os.Open(r.objectFile(c, ObjFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &ObjectError{c, ObjFile, ErrNotFound}
		}
		return nil, &ObjectError{c, ObjFile, err}
	}
	cr, err := OpenFilez(f, c)
	if err != nil {
		f.Close()
		return nil, &ObjectError{c, ObjFile, err}
	}
	cr.closer = f
	return cr, nil
}

// VerifyContent reads a content object to the end, checking it.
func (r *Repo) VerifyContent(c Checksum) (*FileHeader, error) {
	cr, err := r.OpenContent(c)
	if err != nil {
		return nil, err
	}
	defer cr.Close()
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return nil, &ObjectError{c, ObjFile, err}
	}
	return cr.Header, nil
}

// ResolveRef returns the commit a ref points at.
func (r *Repo) ResolveRef(ref string) (Checksum, error) {
	if err := ValidateRef(ref); err != nil {
		return Checksum{}, err
	}
	b, err := os.ReadFile(filepath.Join(r.path, "refs", "heads", filepath.FromSlash(ref)))
	if errors.Is(err, fs.ErrNotExist) {
		return Checksum{}, fmt.Errorf("ref %s: %w", ref, ErrNotFound)
	}
	if err != nil {
		return Checksum{}, fmt.Errorf("ref %s: %w", ref, err)
	}
	c, err := ParseChecksum(string(bytes.TrimSpace(b)))
	if err != nil {
		return Checksum{}, fmt.Errorf("ref %s: %w", ref, err)
	}
	return c, nil
}

// ListRefs returns every ref under refs/heads.
func (r *Repo) ListRefs() (map[string]Checksum, error) {
	root := filepath.Join(r.path, "refs", "heads")
	refs := map[string]Checksum{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				return fs.SkipDir
			}
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		ref := filepath.ToSlash(rel)
		if ValidateRef(ref) != nil {
			return nil // temp files and strays are not refs
		}
		c, err := r.ResolveRef(ref)
		if err != nil {
			return err
		}
		refs[ref] = c
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list refs: %w", err)
	}
	return refs, nil
}

// The durable-write primitive lives in internal/storage, shared with the
// OCI registry and the device; these names keep the call sites short.
var (
	syncDir  = storage.SyncDir
	syncfs   = storage.Syncfs
	mkdirAll = storage.MkdirAll
)

// writeFileAtomic is storage.WriteFile with its temporary file in tmpDir
// (next to path when empty).
func writeFileAtomic(tmpDir, path string, data []byte, perm fs.FileMode) error {
	return storage.WriteFile(path, data, perm, storage.TempDir(tmpDir))
}
