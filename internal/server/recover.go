package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/oci/registry"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/sign"
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

// RecoverReleases undoes, when the server starts, a release that a crash
// cut short after it moved its channel's ref but before the database
// recorded it (the release's database transaction commits only after the
// Acceptor moved the ref and rewrote the summary). Such a ref names a
// commit the update API does not offer, the release team's retry would be
// refused as a duplicate version, and the summary may still list the old
// commit. The database is the record: a channel ref with recorded
// releases whose commit is not the newest recorded one, is a child of
// it, and carries a version the database does not have, is moved back to
// the recorded commit and the summary is rewritten (signed with online).
// Anything else that disagrees with the database is logged and left
// alone. Without online signers nothing is changed: the server could not
// sign the summary. It returns the refs it moved back.
//
// It must run before the server takes requests, and no other server may
// be publishing into the same repository and database while it runs: for
// the milliseconds between a live server's ref move and its database
// commit, that release looks exactly like one cut short.
func RecoverReleases(ctx context.Context, dataDir string, store *db.Store, set *channel.Set, online []sign.Signer, now time.Time, log *zap.Logger) ([]string, error) {
	if log == nil {
		log = zap.NewNop()
	}
	repoDir := filepath.Join(dataDir, "repo")
	if _, err := os.Stat(filepath.Join(repoDir, "config")); err != nil || len(online) == 0 || store == nil || set == nil {
		return nil, nil
	}
	repo, err := ostree.Open(repoDir)
	if err != nil {
		return nil, fmt.Errorf("recovery: %w", err)
	}
	back := map[string]ostree.Checksum{}
	for _, ch := range set.Channels() {
		for _, arch := range ch.Arches() {
			ref, _ := ch.Ref(arch)
			rels, err := store.ListReleases(ctx, ch.Name, arch)
			if err != nil {
				return nil, fmt.Errorf("recovery: %w", err)
			}
			if len(rels) == 0 || rels[0].Ref != ref {
				continue
			}
			recorded, err := ostree.ParseChecksum(rels[0].Commit)
			if err != nil {
				return nil, fmt.Errorf("recovery: release %s/%s %s: %w", ch.Name, arch, rels[0].Version, err)
			}
			cur, err := repo.ResolveRef(ref)
			if err != nil || cur == recorded {
				continue
			}
			cm, err := repo.ReadCommit(cur)
			if err == nil && cm.Parent == recorded {
				_, err = store.GetRelease(ctx, ch.Name, arch, cm.Version())
				if errors.Is(err, db.ErrNotFound) {
					back[ref] = recorded
					continue
				}
			}
			log.Warn("recovery: a channel ref names a commit that is not its newest recorded release; left alone",
				zap.String("ref", ref), zap.String("commit", cur.String()), zap.String("recorded", recorded.String()))
		}
	}
	if len(back) == 0 {
		return nil, nil
	}
	txn, err := repo.Begin()
	if err != nil {
		return nil, fmt.Errorf("recovery: %w", err)
	}
	defer txn.Close()
	var refs []string
	for ref, c := range back {
		if err := txn.SetRef(ref, c); err != nil {
			return nil, fmt.Errorf("recovery: %w", err)
		}
		refs = append(refs, ref)
		log.Warn("recovery: moved a ref back to its last recorded release: a release was cut short before it was recorded",
			zap.String("ref", ref), zap.String("commit", c.String()))
	}
	if err := txn.WriteSummary(now, func(b []byte) (ostree.Metadata, error) { return release.SignData(online, b, nil) }); err != nil {
		return nil, fmt.Errorf("recovery: %w", err)
	}
	sort.Strings(refs)
	return refs, nil
}
