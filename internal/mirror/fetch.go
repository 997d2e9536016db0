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
// summary gives as want, checked and staged by delta.Install. A delta
// already stored with that superblock is kept.
func (s *syncer) fetchDelta(ctx context.Context, id ostree.DeltaID, want ostree.Checksum) error {
	final := filepath.Join(s.repo.Path(), filepath.FromSlash(id.Dir()))
	if b, err := os.ReadFile(filepath.Join(final, "superblock")); err == nil && ostree.Checksum(sha256.Sum256(b)) == want {
		return nil
	}
	get := func(ctx context.Context, rel string, limit int64, w io.Writer) error {
		return s.get(ctx, RepoDir+"/"+rel, limit, w)
	}
	raw, sb, err := delta.FetchSuperblock(ctx, id, want, get)
	if err != nil {
		return err
	}
	return delta.Install(ctx, s.repo, id, raw, sb, get)
}
