package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/sign"
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

// Several servers writing one bucket (replicas on one database): each
// keeps its own DataDir/repo, which may be behind the bucket (another
// replica published since). So every write to the bucket happens under
// the cluster lock (db.LockPublish) and starts with sync: the writer
// reads the bucket's summary, brings every ref the bucket has newer than
// its own into DataDir/repo (pulled from the bucket with the release and
// online keys verifying it, as any client would: internal/ostree/pull),
// and remembers the ETags of the bucket's summary, summary.sig and refs
// it built on. Its summary then lists every ref of the bucket plus its
// own change, and the mirror replaces those files only if they are still
// the versions it read (object.MirrorExpecting: If-Match, If-None-Match
// for refs the bucket did not have), so a writer with a stale view fails
// instead of overwriting newer files. The release's objects are copied
// before the lock is taken (mirrorObjects), so the lock is held only for
// the small files a release changes. A ref the writer has newer than the
// bucket (a release recorded and accepted here whose mirror failed) is
// kept and mirrored. Static deltas another replica made are brought in
// too, verified (repodeltas.go), so a summary written here lists them as
// well as its own. At start (MirrorRepo), a server whose data
// directory has nothing newer than the bucket writes nothing to it.

// repoStorePrefix is where the repository lives in the bucket.
const repoStorePrefix = "repo/"

// storeRepo serves /repo/ from an object store and keeps it mirrored.
type storeRepo struct {
	store    object.Store
	redirect bool
	dir      string // DataDir/repo, the source of the mirror
	log      *zap.Logger
	mu       sync.Mutex // one mirror at a time in this process
	// Keys that verify what sync pulls from the bucket: release keys
	// (commits) and the online keys' public halves (summary).
	trusted, online []sign.Verifier
	// fetch brings another server's release in, verified (Config.RepoFetch).
	fetch RepoFetchFunc
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

func immutableRepoPath(p string) bool {
	k, status := classifyRepoPath(p)
	return status == 0 && k == kindImmutable
}

// mirrorObjects copies the repository's content-addressed files the
// store lacks (no lock needed: they never change), recording them in
// present. A publish runs it before taking the cluster lock, so that the
// bulk of a release is not uploaded while the lock (and, on SQLite, the
// database's write lock) is held.
func (h *storeRepo) mirrorObjects(ctx context.Context, present *object.Present) error {
	st, err := object.MirrorObjects(ctx, h.store, repoStorePrefix, h.dir, immutableRepoPath, present)
	if err != nil {
		return fmt.Errorf("copying the repository's objects to object storage: %w", err)
	}
	h.log.Debug("repository objects copied to object storage", zap.Int("created", st.Created), zap.Int64("bytes", st.Bytes))
	return nil
}

// mirror copies the repository's new and changed files to the store;
// with a sync's view, only onto the versions that sync read. Immutable
// files in present (may be nil) are taken as stored.
func (h *storeRepo) mirror(ctx context.Context, view *syncView, present *object.Present) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var expect map[string]string
	if view != nil {
		expect = view.expect
	}
	st, err := object.MirrorExpecting(ctx, h.store, repoStorePrefix, h.dir, immutableRepoPath, expect, present)
	if err != nil {
		return fmt.Errorf("mirroring the repository to object storage: %w", err)
	}
	h.log.Info("repository mirrored to object storage", zap.Int("created", st.Created),
		zap.Int("replaced", st.Replaced), zap.Int("unchanged", st.Unchanged), zap.Int64("bytes", st.Bytes))
	return nil
}

// MirrorRepo copies DataDir/repo to Config.RepoStore (a no-op without
// one). mxos-server runs it at start; the release API mirrors every
// accepted release itself. With a database it takes the cluster lock and
// syncs first: the data directory gets what the bucket has newer, and
// the bucket gets only what the data directory has newer (nothing, for a
// replica that was merely down while others published).
func (s *Server) MirrorRepo(ctx context.Context) error {
	if s.repoStore == nil {
		return nil
	}
	if s.cfg.Store == nil {
		return s.repoStore.mirror(ctx, nil, nil)
	}
	return s.cfg.Store.Tx(ctx, func(tx *db.Tx) error {
		if err := tx.LockCluster(ctx, db.LockPublish); err != nil {
			return err
		}
		repo, err := ostree.Open(s.repoStore.dir)
		if err != nil {
			return fmt.Errorf("mirroring the repository: %w", err)
		}
		if len(s.cfg.OnlineSigners) == 0 || len(s.cfg.TrustedKeys) == 0 {
			// A server that cannot publish (a replica that only serves)
			// never changes a bucket that has a repository; it fills an
			// empty one from its data directory, as a single server does.
			if _, err := s.repoStore.store.Stat(ctx, repoStorePrefix+"summary"); err == nil {
				return nil
			} else if !errors.Is(err, object.ErrNotFound) {
				return fmt.Errorf("reading the repository in object storage: %w", err)
			}
		}
		view, err := s.repoStore.sync(ctx, repo)
		if err != nil {
			return err
		}
		if view.bucketSummary && !view.localAhead {
			return nil // the bucket has everything this server has
		}
		if len(view.pulled) > 0 {
			// The local summary predates what was pulled: list it too.
			txn, err := repo.Begin()
			if err != nil {
				return fmt.Errorf("mirroring the repository: %w", err)
			}
			defer txn.Close()
			if err := txn.WriteSummary(time.Now(), func(b []byte) (ostree.Metadata, error) { return release.SignData(s.cfg.OnlineSigners, b, nil) }); err != nil {
				return fmt.Errorf("mirroring the repository: %w", err)
			}
			if err := txn.Close(); err != nil {
				return fmt.Errorf("mirroring the repository: %w", err)
			}
		}
		return s.repoStore.mirror(ctx, view, nil)
	})
}

// syncView is what a writer read of the bucket under the cluster lock.
type syncView struct {
	expect        map[string]string // path → ETag read ("" absent): summary, summary.sig, refs
	bucketSummary bool              // the bucket has a summary
	pulled        []string          // refs brought from the bucket into DataDir/repo
	deltas        []string          // static deltas brought from the bucket (repodeltas.go)
	localAhead    bool              // DataDir/repo has a ref the bucket's summary lacks or names older
}

// storeURL is the base URL the puller fetches the bucket's repository
// from; storeTransport answers it from the store.
const storeURL = "http://object-store.invalid/repo"

// sync brings into repo every ref the bucket's summary names newer than
// repo has (see the comment at the top), and returns what it read. Call
// it under the cluster lock.
func (h *storeRepo) sync(ctx context.Context, repo *ostree.Repo) (*syncView, error) {
	v := &syncView{expect: map[string]string{}}
	fail := func(err error) (*syncView, error) {
		return nil, fmt.Errorf("reading the repository in object storage: %w", err)
	}
	for _, p := range []string{"summary", "summary.sig"} {
		info, err := h.store.Stat(ctx, repoStorePrefix+p)
		switch {
		case errors.Is(err, object.ErrNotFound):
			v.expect[p] = ""
		case err != nil:
			return fail(err)
		default:
			v.expect[p] = info.ETag
		}
	}
	if err := h.store.List(ctx, repoStorePrefix+"refs/", func(i object.Info) error {
		v.expect[strings.TrimPrefix(i.Key, repoStorePrefix)] = i.ETag
		return nil
	}); err != nil {
		return fail(err)
	}
	local, err := repo.ListRefs()
	if err != nil {
		return fail(err)
	}
	v.bucketSummary = v.expect["summary"] != ""
	if !v.bucketSummary {
		v.localAhead = len(local) > 0
		return v, nil
	}
	r, err := h.store.Get(ctx, repoStorePrefix+"summary")
	if err != nil {
		return fail(err)
	}
	b, err := io.ReadAll(io.LimitReader(r, maxSummarySize+1))
	r.Close()
	if err != nil {
		return fail(err)
	}
	sum, err := ostree.ParseSummary(b)
	if err != nil {
		return fail(fmt.Errorf("summary: %w", err))
	}
	hc := &http.Client{Transport: storeTransport{h.store}}
	inBucket := map[string]bool{}
	for _, ref := range sum.Refs {
		inBucket[ref.Name] = true
		mine, ok := local[ref.Name]
		if ok && mine == ref.Checksum {
			continue
		}
		if ok {
			newer, err := h.bucketNewer(ctx, repo, mine, ref.Checksum)
			if err != nil {
				return fail(fmt.Errorf("ref %s: %w", ref.Name, err))
			}
			if !newer {
				v.localAhead = true
				h.log.Warn("this server's ref is newer than the bucket's: keeping it", zap.String("ref", ref.Name),
					zap.String("local", mine.String()), zap.String("bucket", ref.Checksum.String()))
				continue
			}
		}
		if h.fetch == nil {
			return fail(errors.New("another server published here and this server cannot fetch releases (Config.RepoFetch unset)"))
		}
		if len(h.online) == 0 || len(h.trusted) == 0 {
			return fail(errors.New("another server published here: verifying its releases needs the release keys (--release-keys) and the online keys' public halves in --online-keys"))
		}
		if err := h.fetch(ctx, repo, storeURL, hc, ref.Name, ref.Checksum, h.online, h.trusted); err != nil {
			return fail(err)
		}
		v.pulled = append(v.pulled, ref.Name)
	}
	for name := range local {
		if !inBucket[name] {
			v.localAhead = true
		}
	}
	if len(v.pulled) > 0 {
		h.log.Info("brought newer refs from object storage", zap.Strings("refs", v.pulled))
	}
	// Deltas last: they are taken only to refs' current commits.
	if v.deltas, err = h.importDeltas(ctx, repo, sum, b); err != nil {
		return fail(fmt.Errorf("static deltas: %w", err))
	}
	if len(v.deltas) > 0 {
		h.log.Info("brought static deltas from object storage", zap.Strings("deltas", v.deltas))
	}
	return v, nil
}

// bucketNewer reports whether the bucket's commit is newer (by commit
// timestamp) than the local one.
func (h *storeRepo) bucketNewer(ctx context.Context, repo *ostree.Repo, mine, theirs ostree.Checksum) (bool, error) {
	lc, err := repo.ReadCommit(mine)
	if err != nil {
		return false, err
	}
	r, err := h.store.Get(ctx, repoStorePrefix+ostree.ObjectPath(theirs, ostree.ObjCommit))
	if err != nil {
		return false, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, ostree.MaxMetadataSize+1))
	if err != nil {
		return false, err
	}
	bc, err := ostree.ParseCommit(b)
	if err != nil {
		return false, err
	}
	return bc.Timestamp > lc.Timestamp, nil
}

// storeTransport answers the puller's GETs of storeURL from the store.
type storeTransport struct{ store object.Store }

func (t storeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	resp := &http.Response{Request: req, Header: http.Header{}, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	r, err := t.store.Get(req.Context(), strings.TrimPrefix(req.URL.Path, "/"))
	switch {
	case errors.Is(err, object.ErrNotFound) || errors.Is(err, object.ErrBadKey):
		resp.StatusCode, resp.Status, resp.Body = http.StatusNotFound, "404 Not Found", http.NoBody
		return resp, nil
	case err != nil:
		return nil, err
	}
	resp.StatusCode, resp.Status, resp.Body, resp.ContentLength = http.StatusOK, "200 OK", r, r.Info().Size
	return resp, nil
}

// maxSummarySize bounds a summary read from the bucket (the device
// puller's own bound).
const maxSummarySize = 10 << 20

// RepoFetchFunc brings ref's commit want from the repository at url
// (reached through hc) into repo, checked as a device checks it: the
// summary signed by summaryKeys, the commit by commitKeys, every object by
// its name. internal/ostree/pull provides it (pull.FetchVerified); the
// server takes it as a value because pull's tests start servers, so server
// cannot import pull.
type RepoFetchFunc func(ctx context.Context, repo *ostree.Repo, url string, hc *http.Client, ref string, want ostree.Checksum, summaryKeys, commitKeys []sign.Verifier) error

func newStoreRepo(cfg Config) *storeRepo {
	if cfg.RepoStore == nil {
		return nil
	}
	return &storeRepo{store: cfg.RepoStore, redirect: cfg.RepoRedirect, dir: filepath.Join(cfg.DataDir, "repo"), log: cfg.Logger.Named("repo"),
		trusted: cfg.TrustedKeys, online: cfg.OnlineVerifiers, fetch: cfg.RepoFetch}
}

// bulk reports whether a content-addressed path is file content or a
// delta part rather than a metadata object.
func bulk(name string) bool {
	return strings.HasSuffix(name, ".filez") || strings.HasPrefix(name, "deltas/")
}
