package object

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"
)

// Errors callers decide on; each is wrapped with the key. Digest and size
// mismatches of PutVerified are storage.ErrDigestMismatch and
// storage.ErrSizeMismatch, as for the directory blob store.
var (
	// ErrNotFound: no object under that key.
	ErrNotFound = errors.New("object not found")
	// ErrPrecondition: a conditional write lost (the key exists for
	// IfNoneMatch, or holds another version than IfMatch names).
	ErrPrecondition = errors.New("object changed by another writer")
	// ErrBadKey: the key is not one this package stores (see CheckKey).
	ErrBadKey = errors.New("invalid object key")
)

// MaxKeyLen is S3's limit on a key, applied to every backend.
const MaxKeyLen = 1024

// reservedPrefix starts the names the directory backend keeps for itself
// (temporary files, the lock file); no key's first component may start
// with it.
const reservedPrefix = ".mxos-"

// Info describes a stored object.
type Info struct {
	Key     string
	Size    int64
	ModTime time.Time
	// ETag is opaque: it changes whenever the object is replaced with
	// other bytes, and it is what Condition.IfMatch takes.
	ETag string
}

// Condition makes a Put conditional. The zero value writes always.
type Condition struct {
	// IfNoneMatch writes only when the key does not exist (S3's
	// If-None-Match: *).
	IfNoneMatch bool
	// IfMatch writes only when the key holds the version with this ETag
	// (S3's If-Match). A missing key fails with ErrPrecondition.
	IfMatch string
}

// Reader reads one version of an object. Seek moves within it; reads
// after the object was replaced fail rather than mix two versions.
type Reader interface {
	io.ReadSeekCloser
	Info() Info
}

// Store is where the server's files live: a directory (Dir) or an
// S3-compatible bucket (package internal/storage/s3). Every method takes a
// key checked by CheckKey.
type Store interface {
	// Get opens the object under key.
	Get(ctx context.Context, key string) (Reader, error)
	// Stat describes the object under key.
	Stat(ctx context.Context, key string) (Info, error)
	// Put stores r (size bytes, or -1 when unknown) under key if c holds.
	// Readers never see a partial object.
	Put(ctx context.Context, key string, r io.Reader, size int64, c Condition) (Info, error)
	// PutVerified stores r under key only after its bytes hashed to d
	// and counted size (-1: any); until then nothing is visible under
	// key, and on a mismatch nothing is stored. An existing object under
	// key is kept as it is (content-addressed keys never change), though
	// r is still read and checked.
	PutVerified(ctx context.Context, key string, d digest.Digest, size int64, r io.Reader) (Info, error)
	// Touch refreshes the modification time of key (garbage collection
	// grace periods).
	Touch(ctx context.Context, key string) error
	// Delete removes key; a missing key is ErrNotFound.
	Delete(ctx context.Context, key string) error
	// List calls fn for every object whose key starts with prefix, in no
	// particular order. Objects whose keys CheckKey refuses are skipped.
	List(ctx context.Context, prefix string, fn func(Info) error) error
}

// CheckKey accepts the keys every backend stores alike: 1 to MaxKeyLen
// bytes of UTF-8 without control characters or backslashes, components
// separated by single slashes, none empty, "." or "..", and a first
// component that does not start with ".mxos-". So "../x", "/x", "a//b"
// and "a/./b" are refused before any backend sees them.
func CheckKey(key string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("%w: %q: %s", ErrBadKey, truncate(key), err)
	}
	return nil
}

func checkKey(key string) error {
	if key == "" {
		return errors.New("empty")
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("longer than %d bytes", MaxKeyLen)
	}
	if !utf8.ValidString(key) {
		return errors.New("not UTF-8")
	}
	for _, c := range key {
		if c < 0x20 || c == 0x7f || c == '\\' {
			return errors.New("control character or backslash")
		}
	}
	for i, part := range strings.Split(key, "/") {
		switch {
		case part == "":
			return errors.New("empty path component")
		case part == "." || part == "..":
			return errors.New("dot path component")
		case i == 0 && strings.HasPrefix(part, reservedPrefix):
			return errors.New("reserved name")
		}
	}
	return nil
}

// checkPrefix accepts "" and any prefix of a valid key.
func checkPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	// A prefix ending in "/" or in a partial component is valid when it
	// becomes a valid key with one more byte.
	if err := checkKey(prefix + "x"); err != nil {
		return fmt.Errorf("%w: prefix %q: %s", ErrBadKey, truncate(prefix), err)
	}
	return nil
}

// CheckPrefix is CheckKey for List's prefix: "" or the start of a valid key.
func CheckPrefix(prefix string) error { return checkPrefix(prefix) }

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// BlobKey is the key of a content-addressed blob: sha256/ab/abcd…, the
// same layout as the directory blob store (storage.Blobs).
func BlobKey(d digest.Digest) string {
	hex := d.Encoded()
	return string(d.Algorithm()) + "/" + hex[:2] + "/" + hex
}
