package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sync/singleflight"
)

// maxETagEntries bounds the digest cache. Mutable files are few (summary,
// its signature, config, refs, commitmeta, delta indexes and superblocks);
// past the bound an arbitrary entry is dropped, which costs one re-hash.
const maxETagEntries = 16384

// etagCache remembers the content digest of mutable repository files so a
// summary is hashed once per version, not once per request.
//
// An entry is valid for one version of a file, identified by fileID. The
// writer replaces files by rename, which always produces a new inode, so a
// matching (device, inode, size, mtime, ctime) means the same bytes.
type etagCache struct {
	mu      sync.Mutex
	entries map[string]etagEntry
	flight  singleflight.Group
}

type etagEntry struct {
	id   fileID
	etag string
}

func newETagCache() *etagCache {
	return &etagCache{entries: make(map[string]etagEntry)}
}

// get returns the strong ETag of f, the open file at repository path name
// described by fi. The digest is computed from f itself (with ReadAt, so
// f's offset is untouched), hence it always matches the bytes that will be
// served from f.
func (c *etagCache) get(name string, f *os.File, fi fs.FileInfo) (string, error) {
	id := fileIDOf(fi)
	c.mu.Lock()
	e, ok := c.entries[name]
	c.mu.Unlock()
	if ok && e.id == id {
		return e.etag, nil
	}

	// Concurrent requests for the same new version share one hash.
	key := name + "\x00" + id.String()
	v, err, _ := c.flight.Do(key, func() (any, error) {
		return hashETag(f, fi.Size())
	})
	if err != nil {
		return "", fmt.Errorf("hashing %s: %w", name, err)
	}
	etag := v.(string)

	c.mu.Lock()
	if len(c.entries) >= maxETagEntries {
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[name] = etagEntry{id: id, etag: etag}
	c.mu.Unlock()
	return etag, nil
}

func hashETag(f *os.File, size int64) (string, error) {
	h := sha256.New()
	n, err := io.Copy(h, io.NewSectionReader(f, 0, size))
	if err != nil {
		return "", err
	}
	if n != size {
		return "", fmt.Errorf("file shrank from %d to %d bytes while reading", size, n)
	}
	var sum [sha256.Size]byte
	var buf [2 + 2*sha256.Size]byte
	buf[0] = '"'
	hex.Encode(buf[1:], h.Sum(sum[:0]))
	buf[len(buf)-1] = '"'
	return string(buf[:]), nil
}

// fileID identifies one version of a file.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds since the epoch
}

func (id fileID) String() string {
	b := make([]byte, 0, 80)
	b = strconv.AppendUint(b, id.dev, 16)
	b = append(b, ':')
	b = strconv.AppendUint(b, id.ino, 16)
	b = append(b, ':')
	b = strconv.AppendInt(b, id.size, 16)
	b = append(b, ':')
	b = strconv.AppendInt(b, id.mtime, 16)
	b = append(b, ':')
	b = strconv.AppendInt(b, id.ctime, 16)
	return string(b)
}
