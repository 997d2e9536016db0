package server

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/storage/object"
)

// Serving the OSTree repository from object storage (Config.RepoStore).
//
// Publishing still writes DataDir/repo, with every durability and
// crash-point guarantee of the file-system path; the bucket is a copy
// the server keeps current: object.Mirror runs when the server starts and
// after every release or promotion it accepts, before the API answers.
// Mirror writes content-addressed files first and only when absent
// (If-None-Match: *), then refs and the other mutable files, then
// summary.sig and summary, each replaced with If-Match on the version it
// compared, so a reader of the bucket never sees a ref or summary naming
// an object that is not there, and two servers mirroring at once cannot
// interleave (the loser fails and mirrors again next time).
//
// /repo/ is then answered from the bucket: streamed through this process
// by default (ETag and Range from the bucket, revalidation as for files),
// or, with Config.RepoRedirect, file contents (.filez) and static delta
// parts, the bulk of the bytes, are a 307 to a presigned URL, while
// metadata objects (small, latency-bound, and read by clients that
// refuse redirects, such as the release team's API client) and mutable
// files are still streamed. Paths are
// classified exactly as for the directory (repopath.go), so the same
// requests are refused.

// repoStorePrefix is where the repository lives in the bucket.
const repoStorePrefix = "repo/"

// storeRepo serves /repo/ from an object store and keeps it mirrored.
type storeRepo struct {
	store    object.Store
	redirect bool
	dir      string // DataDir/repo, the source of the mirror
	log      *zap.Logger
	mu       sync.Mutex // one mirror at a time in this process
}

func (h *storeRepo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, repoPrefix)
	if !ok {
		writeStatus(w, http.StatusNotFound)
		return
	}
	kind, status := classifyRepoPath(name)
	if status != 0 {
		writeStatus(w, status)
		return
	}
	o := object.ServeOptions{Immutable: kind == kindImmutable, Redirect: h.redirect && bulk(name)}
	if kind == kindMutableText {
		o.ContentType = "text/plain; charset=utf-8"
	}
	if err := object.Serve(w, r, h.store, repoStorePrefix+name, o); err != nil {
		h.log.Error("object storage failed", zap.String("path", name), zap.Error(err))
	}
}

// mirror copies the repository's new and changed files to the store.
func (h *storeRepo) mirror(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	st, err := object.Mirror(ctx, h.store, repoStorePrefix, h.dir, func(p string) bool {
		k, status := classifyRepoPath(p)
		return status == 0 && k == kindImmutable
	})
	if err != nil {
		return fmt.Errorf("mirroring the repository to object storage: %w", err)
	}
	h.log.Info("repository mirrored to object storage", zap.Int("created", st.Created),
		zap.Int("replaced", st.Replaced), zap.Int("unchanged", st.Unchanged), zap.Int64("bytes", st.Bytes))
	return nil
}

// MirrorRepo copies DataDir/repo to Config.RepoStore (a no-op without
// one). mxos-server runs it at start; the release API runs it after every
// accepted release.
func (s *Server) MirrorRepo(ctx context.Context) error {
	if s.repoStore == nil {
		return nil
	}
	return s.repoStore.mirror(ctx)
}

func newStoreRepo(cfg Config) *storeRepo {
	if cfg.RepoStore == nil {
		return nil
	}
	return &storeRepo{store: cfg.RepoStore, redirect: cfg.RepoRedirect, dir: filepath.Join(cfg.DataDir, "repo"), log: cfg.Logger.Named("repo")}
}

// bulk reports whether a content-addressed path is file content or a
// delta part rather than a metadata object.
func bulk(name string) bool {
	return strings.HasSuffix(name, ".filez") || strings.HasPrefix(name, "deltas/")
}
