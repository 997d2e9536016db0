package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/oci/registry"
	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// RecoverStats says what Recover finished or removed.
type RecoverStats struct {
	RepoRecovered  bool // the repository's write lock was free and its leftovers handled
	RepoBusy       bool // another writer holds the lock: it finishes its own work
	StaleUploads   int  // OSTree upload sessions removed
	StaleRegistry  int  // registry upload sessions removed
	SummaryPending bool // a summary swap was journaled when the server started
}

// Recover finishes, when the server starts, what a crash of the server or
// of mxosctl on the same data directory cut short, instead of waiting for
// the next write: a summary swap journaled in repo/tmp/summary-next (until
// it is finished, clients may get a summary whose summary.sig does not
// sign it), the staging directories of dead writers, OSTree upload
// sessions idle for longer than ostree.UploadMaxAge and registry upload
// sessions idle for longer than the registry's UploadTTL. Sessions younger
// than that are kept: clients resume them after a restart. A writer that
// holds the repository's lock is alive and is left alone.
func Recover(dataDir string, opts registry.Options, now time.Time, log *zap.Logger) (RecoverStats, error) {
	if log == nil {
		log = zap.NewNop()
	}
	var st RecoverStats
	repoDir := filepath.Join(dataDir, "repo")
	if _, err := os.Stat(filepath.Join(repoDir, "config")); err == nil {
		repo, err := ostree.Open(repoDir)
		if err != nil {
			return st, fmt.Errorf("recovery: %w", err)
		}
		if _, err := os.Stat(filepath.Join(repoDir, "tmp", "summary-next")); err == nil {
			st.SummaryPending = true
		}
		ok, err := repo.Recover()
		if err != nil {
			return st, fmt.Errorf("recovery: %w", err)
		}
		st.RepoRecovered, st.RepoBusy = ok, !ok
		if st.StaleUploads, err = repo.CleanUploads(now); err != nil {
			return st, fmt.Errorf("recovery: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return st, fmt.Errorf("recovery: %w", err)
	}
	ociDir := filepath.Join(dataDir, "oci")
	if _, err := os.Stat(ociDir); err == nil {
		store, err := registry.Open(ociDir, opts)
		if err != nil {
			return st, fmt.Errorf("recovery: %w", err)
		}
		if st.StaleRegistry, err = store.ExpireUploads(now); err != nil {
			return st, fmt.Errorf("recovery: registry uploads: %w", err)
		}
	}
	switch {
	case st.RepoBusy:
		log.Info("recovery: another writer holds the repository lock; it finishes its own work")
	case st.SummaryPending:
		log.Warn("recovery: finished a summary update cut short by a crash")
	}
	if st.StaleUploads+st.StaleRegistry > 0 {
		log.Info("recovery: removed stale upload sessions", zap.Int("ostree", st.StaleUploads), zap.Int("registry", st.StaleRegistry))
	}
	return st, nil
}
