package object

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/mxos-linux/mxos-update/internal/storage"
)

// Blobs is a content-addressed blob store on any Store, with the method
// set of storage.Blobs (the directory store): the registry's blobs in a
// bucket. Keys are prefix + <algorithm>/<hh>/<hex>. Errors wrap
// storage.ErrNotFound, storage.ErrDigestMismatch and the others of
// storage, so callers decide on them as they do for the directory store.
type Blobs struct {
	store  Store
	prefix string
}

// NewBlobs keeps blobs in s under prefix ("" or a key ending in "/").
func NewBlobs(s Store, prefix string) (*Blobs, error) {
	if prefix != "" && (!strings.HasSuffix(prefix, "/") || CheckKey(strings.TrimSuffix(prefix, "/")) != nil) {
		return nil, fmt.Errorf("%w: blob prefix %q must be a key ending in /", ErrBadKey, prefix)
	}
	return &Blobs{store: s, prefix: prefix}, nil
}

// Store is the object store the blobs live in.
func (b *Blobs) Store() Store { return b.store }

func (b *Blobs) key(d digest.Digest) (string, error) {
	if err := storage.Validate(d); err != nil {
		return "", err
	}
	return b.prefix + BlobKey(d), nil
}

// blobErr adds storage.ErrNotFound to ErrNotFound.
func blobErr(d digest.Digest, err error) error {
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: %s: %w", storage.ErrNotFound, d, err)
	}
	return err
}

// refreshAge is how old an existing blob must be before a Put of the same
// digest renews its time: younger ones are inside any GC grace period.
const refreshAge = time.Minute

// Put stores r under d after checking its digest and size (-1: any).
// Putting a blob that is there already checks r anyway and renews the
// blob's time, as storage.Blobs does.
func (b *Blobs) Put(d digest.Digest, size int64, r io.Reader) error {
	key, err := b.key(d)
	if err != nil {
		return err
	}
	info, err := b.store.PutVerified(context.Background(), key, d, size, r)
	if err != nil {
		return fmt.Errorf("storing %s: %w", d, err)
	}
	if time.Since(info.ModTime) > refreshAge {
		if err := b.store.Touch(context.Background(), key); err != nil {
			return fmt.Errorf("storing %s: %w", d, blobErr(d, err))
		}
	}
	return nil
}

// PutFile stores the file at file under d and removes the file. On a
// mismatch the file is left in place and nothing is stored.
func (b *Blobs) PutFile(d digest.Digest, size int64, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("storing %s: %w", d, err)
	}
	err = b.Put(d, size, f)
	f.Close()
	if err != nil {
		return err
	}
	return os.Remove(file)
}

// Open opens the blob d.
func (b *Blobs) Open(d digest.Digest) (io.ReadSeekCloser, error) {
	key, err := b.key(d)
	if err != nil {
		return nil, err
	}
	r, err := b.store.Get(context.Background(), key)
	if err != nil {
		return nil, blobErr(d, err)
	}
	return r, nil
}

// Stat describes the blob d.
func (b *Blobs) Stat(d digest.Digest) (fs.FileInfo, error) {
	key, err := b.key(d)
	if err != nil {
		return nil, err
	}
	info, err := b.store.Stat(context.Background(), key)
	if err != nil {
		return nil, blobErr(d, err)
	}
	return FileInfo(info), nil
}

// Touch renews the time of d.
func (b *Blobs) Touch(d digest.Digest) error {
	key, err := b.key(d)
	if err != nil {
		return err
	}
	return blobErr(d, b.store.Touch(context.Background(), key))
}

// Delete removes d; a missing blob is storage.ErrNotFound.
func (b *Blobs) Delete(d digest.Digest) error {
	key, err := b.key(d)
	if err != nil {
		return err
	}
	return blobErr(d, b.store.Delete(context.Background(), key))
}

// Walk calls fn for every blob. Objects under the prefix that are not
// blobs are skipped.
func (b *Blobs) Walk(fn func(d digest.Digest, fi fs.FileInfo) error) error {
	for _, alg := range []digest.Algorithm{digest.SHA256, digest.SHA512} {
		err := b.store.List(context.Background(), b.prefix+string(alg)+"/", func(info Info) error {
			rest := strings.TrimPrefix(info.Key, b.prefix+string(alg)+"/")
			hh, hex, ok := strings.Cut(rest, "/")
			d := digest.NewDigestFromEncoded(alg, hex)
			if !ok || storage.Validate(d) != nil || !strings.HasPrefix(hex, hh) || len(hh) != 2 {
				return nil
			}
			return fn(d, FileInfo(info))
		})
		if err != nil {
			return fmt.Errorf("walking blobs: %w", err)
		}
	}
	return nil
}

// FileInfo presents an object's Info as an fs.FileInfo (a read-only
// regular file).
func FileInfo(i Info) fs.FileInfo { return fileInfo{i} }

type fileInfo struct{ i Info }

func (f fileInfo) Name() string       { return path.Base(f.i.Key) }
func (f fileInfo) Size() int64        { return f.i.Size }
func (f fileInfo) Mode() fs.FileMode  { return 0o444 }
func (f fileInfo) ModTime() time.Time { return f.i.ModTime }
func (f fileInfo) IsDir() bool        { return false }
func (f fileInfo) Sys() any           { return f.i }
