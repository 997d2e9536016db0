package delta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/storage"
)

// Copying a static delta from another repository as files (a school
// mirror from its upstream, a replica from the shared bucket): checked as
// a client checks it, then stored whole, so a repository never lists a
// delta it does not hold or one its signed summary does not vouch for.

// ErrRefused: a delta's files do not match what the signed summary says
// of them (or the superblock says of its parts).
var ErrRefused = errors.New("static delta refused")

// GetFunc copies at most limit bytes of the repository file rel (such as
// id.SuperblockPath() or id.PartPath(i)) to w; more is an error.
type GetFunc func(ctx context.Context, rel string, limit int64, w io.Writer) error

// FetchSuperblock reads delta id's superblock through get and checks its
// SHA-256 against want (from a summary whose signature was checked) and
// its from, to and commit against id. Mismatches wrap ErrRefused.
func FetchSuperblock(ctx context.Context, id ostree.DeltaID, want ostree.Checksum, get GetFunc) ([]byte, *Superblock, error) {
	var b bytes.Buffer
	if err := get(ctx, id.SuperblockPath(), MaxSuperblockSize, &b); err != nil {
		return nil, nil, fmt.Errorf("superblock: %w", err)
	}
	raw := b.Bytes()
	if ostree.Checksum(sha256.Sum256(raw)) != want {
		return nil, nil, fmt.Errorf("%w: the superblock does not match the signed summary", ErrRefused)
	}
	sb, err := ParseSuperblock(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if sb.ID() != id || ostree.Checksum(sha256.Sum256(sb.Commit)) != id.To {
		return nil, nil, fmt.Errorf("%w: the superblock is for %s", ErrRefused, sb.ID().Name())
	}
	return raw, sb, nil
}

// Install stores delta id, whose superblock FetchSuperblock returned as
// raw and sb, in repo: each part is fetched through get and must have the
// superblock's size and SHA-256 (else ErrRefused), is fsynced, and the
// delta is staged under repo/tmp/delta-* (which recovery clears after a
// crash) and renamed into deltas/ as one directory, replacing a delta of
// the same pair.
func Install(ctx context.Context, repo *ostree.Repo, id ostree.DeltaID, raw []byte, sb *Superblock, get GetFunc) error {
	stage, err := os.MkdirTemp(filepath.Join(repo.Path(), "tmp"), "delta-copy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	if err := os.Chmod(stage, 0o755); err != nil {
		return err
	}
	for i, ph := range sb.Parts {
		if ph.Size > MaxPartSize {
			return fmt.Errorf("%w: part %d is %d bytes (limit %d)", ErrRefused, i, ph.Size, MaxPartSize)
		}
		if err := copyPart(ctx, id, i, ph, filepath.Join(stage, strconv.Itoa(i)), get); err != nil {
			return fmt.Errorf("part %d: %w", i, err)
		}
	}
	if err := storage.WriteFile(filepath.Join(stage, "superblock"), raw, 0o644); err != nil {
		return err
	}
	if err := storage.SyncDir(stage); err != nil {
		return err
	}
	final := filepath.Join(repo.Path(), filepath.FromSlash(id.Dir()))
	if _, err := os.Stat(final); err == nil {
		if err := repo.RemoveDelta(id); err != nil { // same pair, another superblock
			return err
		}
	}
	if err := storage.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return err
	}
	if err := os.Rename(stage, final); err != nil {
		return err
	}
	return storage.SyncDir(filepath.Dir(final))
}

// copyPart fetches part i to path: exactly ph.Size bytes with ph's
// SHA-256, fsynced.
func copyPart(ctx context.Context, id ostree.DeltaID, i int, ph PartHeader, path string, get GetFunc) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	hash := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, hash)}
	if err := get(ctx, id.PartPath(i), int64(ph.Size), cw); err != nil {
		return err
	}
	if cw.n != int64(ph.Size) || ostree.Checksum(hash.Sum(nil)) != ph.Checksum {
		return fmt.Errorf("%w: %d bytes that do not match the superblock's size %d and SHA-256", ErrRefused, cw.n, ph.Size)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
