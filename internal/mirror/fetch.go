package mirror

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/mxos-linux/mxos-update/internal/httplimit"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/delta"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/storage"
)

// get fetches rel (relative to the upstream's base URL) and copies at most
// limit bytes of the body to w, with the device's time limits: response
// headers within pull.DefaultHeaderTimeout, a throughput floor, and
// pull.DefaultTimeout for the whole request.
func (s *syncer) get(ctx context.Context, rel string, limit int64, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, pull.DefaultTimeout)
	defer cancel()
	cctx, ccancel := context.WithCancelCause(ctx)
	defer ccancel(nil)
	u := s.base + "/" + rel
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "mxos-server-mirror")
	resp, err := httplimit.Do(s.cfg.HTTP, req, 0, ccancel)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("GET %s: %w", u, ostree.ErrNotFound)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %w: %s", u, pull.ErrHTTP, resp.Status)
	}
	if resp.ContentLength > limit {
		return fmt.Errorf("GET %s: %w: %d bytes, at most %d", u, ostree.ErrTooLarge, resp.ContentLength, limit)
	}
	watch := httplimit.NewWatcher(0, 0)
	defer watch.Close()
	body, done := watch.Watch(resp.Body, ccancel)
	defer done()
	n, err := io.Copy(w, io.LimitReader(body, limit+1))
	if err != nil {
		if cause := context.Cause(cctx); cause != nil {
			err = cause
		}
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if n > limit {
		return fmt.Errorf("GET %s: %w: more than %d bytes", u, ostree.ErrTooLarge, limit)
	}
	return nil
}

// getBytes is get into memory.
func (s *syncer) getBytes(ctx context.Context, rel string, limit int64) ([]byte, error) {
	var b bytes.Buffer
	if err := s.get(ctx, rel, limit, &b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// fetchDelta stores the static delta id, whose superblock the signed
// summary gives as want: superblock and parts are checked, staged under
// repo/tmp/delta-* (which ostree's recovery clears after a crash) and
// renamed into deltas/ as one directory. A delta already stored with
// that superblock is kept.
func (s *syncer) fetchDelta(ctx context.Context, id ostree.DeltaID, want ostree.Checksum) error {
	final := filepath.Join(s.repo.Path(), filepath.FromSlash(id.Dir()))
	if b, err := os.ReadFile(filepath.Join(final, "superblock")); err == nil && ostree.Checksum(sha256.Sum256(b)) == want {
		return nil
	}
	raw, err := s.getBytes(ctx, RepoDir+"/"+id.SuperblockPath(), delta.MaxSuperblockSize)
	if err != nil {
		return fmt.Errorf("superblock: %w", err)
	}
	if ostree.Checksum(sha256.Sum256(raw)) != want {
		return fmt.Errorf("%w: the superblock does not match the signed summary", ErrDelta)
	}
	sb, err := delta.ParseSuperblock(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDelta, err)
	}
	if sb.ID() != id || ostree.Checksum(sha256.Sum256(sb.Commit)) != id.To {
		return fmt.Errorf("%w: the superblock is for %s", ErrDelta, sb.ID().Name())
	}
	stage, err := os.MkdirTemp(filepath.Join(s.repo.Path(), "tmp"), "delta-mirror-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	if err := os.Chmod(stage, 0o755); err != nil {
		return err
	}
	for i, h := range sb.Parts {
		if h.Size > delta.MaxPartSize {
			return fmt.Errorf("%w: part %d is %d bytes (limit %d)", ErrDelta, i, h.Size, delta.MaxPartSize)
		}
		if err := s.fetchPart(ctx, id, i, h, filepath.Join(stage, fmt.Sprint(i))); err != nil {
			return fmt.Errorf("part %d: %w", i, err)
		}
	}
	if err := storage.WriteFile(filepath.Join(stage, "superblock"), raw, 0o644); err != nil {
		return err
	}
	if err := storage.SyncDir(stage); err != nil {
		return err
	}
	if _, err := os.Stat(final); err == nil {
		// Re-signed upstream: same pair, a new superblock.
		if err := s.repo.RemoveDelta(id); err != nil {
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

// fetchPart downloads part i to path: exactly h.Size bytes with h's
// SHA-256, fsynced.
func (s *syncer) fetchPart(ctx context.Context, id ostree.DeltaID, i int, h delta.PartHeader, path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	hash := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, hash)}
	if err := s.get(ctx, RepoDir+"/"+id.PartPath(i), int64(h.Size), cw); err != nil {
		return err
	}
	if cw.n != int64(h.Size) || ostree.Checksum(hash.Sum(nil)) != h.Checksum {
		return fmt.Errorf("%w: %d bytes that do not match the superblock's size %d and SHA-256", ErrDelta, cw.n, h.Size)
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
