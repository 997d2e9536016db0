package storage

import (
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// Errors callers decide on. Each is wrapped with context.
var (
	// ErrNotFound: no blob with that digest.
	ErrNotFound = errors.New("blob not found")
	// ErrBadDigest: not a well-formed sha256 or sha512 digest.
	ErrBadDigest = errors.New("invalid digest")
	// ErrDigestMismatch: the bytes do not hash to the digest given.
	ErrDigestMismatch = errors.New("content does not match digest")
	// ErrSizeMismatch: the bytes are not as long as the size given.
	ErrSizeMismatch = errors.New("content does not match size")
)

// tmpName is the directory for writes in progress; its leading dot keeps
// it apart from algorithm directories.
const tmpName = ".tmp"

// staleTmp is how old a temporary file must be before Open removes it.
const staleTmp = time.Hour

// Blobs is a content-addressed store on a directory. It is safe for use by
// many goroutines.
type Blobs struct {
	dir string
	tmp string
}

// OpenBlobs opens (creating if needed) a blob store in dir and removes
// temporary files an earlier crash left behind.
func OpenBlobs(dir string) (*Blobs, error) {
	b := &Blobs{dir: dir, tmp: filepath.Join(dir, tmpName)}
	if err := MkdirAll(b.tmp, 0o755); err != nil {
		return nil, fmt.Errorf("blob store %s: %w", dir, err)
	}
	ents, err := os.ReadDir(b.tmp)
	if err != nil {
		return nil, fmt.Errorf("blob store %s: %w", dir, err)
	}
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTmp {
			_ = os.Remove(filepath.Join(b.tmp, e.Name()))
		}
	}
	return b, nil
}

// Dir is the store's directory.
func (b *Blobs) Dir() string { return b.dir }

// TempDir is where writes in progress live; files created there can be
// moved into the store with PutFile.
func (b *Blobs) TempDir() string { return b.tmp }

// Validate checks that d is a sha256 or sha512 digest in canonical form.
func Validate(d digest.Digest) error {
	alg, hex, ok := strings.Cut(string(d), ":")
	if !ok {
		return fmt.Errorf("%w: %q", ErrBadDigest, string(d))
	}
	var n int
	switch alg {
	case "sha256":
		n = 64
	case "sha512":
		n = 128
	default:
		return fmt.Errorf("%w: unsupported algorithm in %q (use sha256 or sha512)", ErrBadDigest, string(d))
	}
	if len(hex) != n {
		return fmt.Errorf("%w: %q", ErrBadDigest, string(d))
	}
	for i := 0; i < len(hex); i++ {
		c := hex[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("%w: %q", ErrBadDigest, string(d))
		}
	}
	return nil
}

// NewHash returns the hash for d's algorithm (d must be valid).
func NewHash(d digest.Digest) hash.Hash {
	if d.Algorithm() == digest.SHA512 {
		return sha512.New()
	}
	return sha256.New()
}

// Path is the file of d. It does not check that the blob exists.
func (b *Blobs) Path(d digest.Digest) (string, error) {
	if err := Validate(d); err != nil {
		return "", err
	}
	hex := d.Encoded()
	return filepath.Join(b.dir, string(d.Algorithm()), hex[:2], hex), nil
}

// Put stores the bytes of r under d. size is the expected length, or -1
// when unknown. The blob becomes visible only after its digest and size
// have been checked and it has been synced; on any error nothing is left
// behind. Putting a blob that is already there reads and checks r anyway
// (so a caller's mistake is still reported) and refreshes its modification
// time, which garbage collection uses as a grace period.
func (b *Blobs) Put(d digest.Digest, size int64, r io.Reader) error {
	final, err := b.Path(d)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(b.tmp, "put-")
	if err != nil {
		return fmt.Errorf("storing %s: %w", d, err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		if tmp != "" {
			os.Remove(tmp)
		}
	}()
	h := NewHash(d)
	src := r
	if size >= 0 {
		// One byte more than expected is enough to detect a longer body.
		src = io.LimitReader(r, size+1)
	}
	n, err := io.Copy(io.MultiWriter(f, h), src)
	if err != nil {
		return fmt.Errorf("storing %s: %w", d, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("storing %s: %w: got %d bytes, want %d", d, ErrSizeMismatch, n, size)
	}
	if got := digest.NewDigest(d.Algorithm(), h); got != d {
		return fmt.Errorf("storing %s: %w (got %s)", d, ErrDigestMismatch, got)
	}
	if err := b.commit(f, tmp, final); err != nil {
		return fmt.Errorf("storing %s: %w", d, err)
	}
	f, tmp = nil, ""
	return nil
}

// PutFile moves the file at path (which must be on the store's file
// system, for example in TempDir) into the store under d after checking
// its size (-1: any) and digest. On a mismatch the file is left in place
// and nothing is stored.
func (b *Blobs) PutFile(d digest.Digest, size int64, path string) error {
	final, err := b.Path(d)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("storing %s: %w", d, err)
	}
	h := NewHash(d)
	n, err := io.Copy(h, f)
	if err != nil {
		f.Close()
		return fmt.Errorf("storing %s: %w", d, err)
	}
	if size >= 0 && n != size {
		f.Close()
		return fmt.Errorf("storing %s: %w: got %d bytes, want %d", d, ErrSizeMismatch, n, size)
	}
	if got := digest.NewDigest(d.Algorithm(), h); got != d {
		f.Close()
		return fmt.Errorf("storing %s: %w (got %s)", d, ErrDigestMismatch, got)
	}
	if err := b.commit(f, path, final); err != nil {
		return fmt.Errorf("storing %s: %w", d, err)
	}
	return nil
}

// commit syncs and closes f (at tmp) and renames it to final, or, when
// final already exists, drops tmp and refreshes final's time.
func (b *Blobs) commit(f *os.File, tmp, final string) error {
	if _, err := os.Stat(final); err == nil {
		f.Close()
		os.Remove(tmp)
		now := time.Now()
		return os.Chtimes(final, now, now)
	}
	if err := f.Chmod(0o444); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	dir := filepath.Dir(final)
	if err := MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	return SyncDir(dir)
}

// Open opens the blob d for reading.
func (b *Blobs) Open(d digest.Digest) (*os.File, error) {
	p, err := b.Path(d)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	return f, err
}

// Stat describes the blob d.
func (b *Blobs) Stat(d digest.Digest) (fs.FileInfo, error) {
	p, err := b.Path(d)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	return fi, err
}

// Touch refreshes the modification time of d, so a collector that spares
// young blobs spares it again.
func (b *Blobs) Touch(d digest.Digest) error {
	p, err := b.Path(d)
	if err != nil {
		return err
	}
	now := time.Now()
	err = os.Chtimes(p, now, now)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	return err
}

// Delete removes the blob d. Deleting a missing blob is ErrNotFound.
func (b *Blobs) Delete(d digest.Digest) error {
	p, err := b.Path(d)
	if err != nil {
		return err
	}
	err = os.Remove(p)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	return err
}

// Walk calls fn for every blob in the store, in no particular order.
// Files that are not blobs (wrong names, temporary files) are skipped.
// fn may delete the blob it is given.
func (b *Blobs) Walk(fn func(d digest.Digest, fi fs.FileInfo) error) error {
	for _, alg := range []digest.Algorithm{digest.SHA256, digest.SHA512} {
		algDir := filepath.Join(b.dir, string(alg))
		prefixes, err := os.ReadDir(algDir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("walking blobs: %w", err)
		}
		for _, p := range prefixes {
			if !p.IsDir() {
				continue
			}
			ents, err := os.ReadDir(filepath.Join(algDir, p.Name()))
			if err != nil {
				return fmt.Errorf("walking blobs: %w", err)
			}
			for _, e := range ents {
				d := digest.NewDigestFromEncoded(alg, e.Name())
				if Validate(d) != nil || !strings.HasPrefix(e.Name(), p.Name()) || !e.Type().IsRegular() {
					continue
				}
				fi, err := e.Info()
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err != nil {
					return fmt.Errorf("walking blobs: %w", err)
				}
				if err := fn(d, fi); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
