package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/rollout"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/storage/object"
	"github.com/mxos-linux/mxos-update/internal/tlogstore"
)

// Remote publishing (internal/api/publish.go): upload sessions staging
// verified objects, and releases that move a channel's ref to a commit the
// release machine signed. The server never holds the release key; it
// checks commits against Config.TrustedKeys and signs only the summary,
// with Config.OnlineSigners.

// DefaultMaxObjectSize caps one uploaded content object (compressed).
const DefaultMaxObjectSize = 4 << 30

// Request body caps of the publishing API. A missing-objects request holds
// up to api.MaxMissingObjects names of about 75 bytes; a release request
// carries signatures and, optionally, the TUF targets metadata.
const (
	maxMissingBody = 1 << 20
	maxReleaseBody = 16 << 20
)

// publishAPI is the API state plus what publishing needs.
type publishAPI struct {
	*apiState
	dataDir   string
	trusted   []sign.Verifier
	online    []sign.Signer
	maxObject int64
	tlog      *tlogstore.Log // nil without Config.TransparencyLog
	repoStore *storeRepo     // nil without Config.RepoStore
}

// publishRoutes registers the routes of internal/api/publish.go.
func (s *Server) publishRoutes() {
	a := &publishAPI{apiState: s.api, dataDir: s.cfg.DataDir, trusted: s.cfg.TrustedKeys,
		online: s.cfg.OnlineSigners, maxObject: s.cfg.MaxObjectSize, tlog: s.cfg.TransparencyLog, repoStore: s.repoStore}
	if a.maxObject <= 0 {
		a.maxObject = DefaultMaxObjectSize
	}
	p := api.Prefix
	h := func(pattern string, perm []auth.Permission, fn func(http.ResponseWriter, *http.Request) error) {
		s.mux.Handle(pattern, a.authed(perm, fn))
	}
	pub := []auth.Permission{auth.PermPublish, auth.PermPromote}
	h("POST "+p+"/uploads", pub, a.handleUploadCreate)
	h("POST "+p+"/uploads/{id}/missing", pub, a.handleUploadMissing)
	h("PUT "+p+"/uploads/{id}/objects/{name}", pub, a.handleUploadObject)
	h("POST "+p+"/uploads/{id}/commit", pub, a.handleUploadCommit)
	h("POST "+p+"/releases", pub, a.handleReleaseCreate)
	h("GET "+p+"/releases", nil, a.handleReleases)
}

// repo opens the repository, after checking that publishing is set up:
// without both key sets the server could accept nothing it can vouch for.
func (a *publishAPI) repo() (*ostree.Repo, error) {
	if len(a.trusted) == 0 || len(a.online) == 0 {
		return nil, api.Errorf(api.CodeInternal, "publishing is not configured on this server: start mxos-server with --release-keys (release public keys) and --online-keys (online secret keys)")
	}
	r, err := ostree.Open(filepath.Join(a.dataDir, "repo"))
	if err != nil {
		return nil, fmt.Errorf("publishing: %w", err)
	}
	return r, nil
}

// openUpload opens the session named in the path.
func (a *publishAPI) openUpload(r *http.Request) (*ostree.Upload, error) {
	repo, err := a.repo()
	if err != nil {
		return nil, err
	}
	u, err := repo.OpenUpload(r.PathValue("id"))
	if errors.Is(err, ostree.ErrNoUpload) {
		return nil, refuse(uploadRequest, err, "no upload session %q (sessions end when committed or after a day idle)", trunc(r.PathValue("id")))
	}
	return u, err
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func (a *publishAPI) handleUploadCreate(w http.ResponseWriter, r *http.Request) error {
	repo, err := a.repo()
	if err != nil {
		return err
	}
	// Abandoned sessions are swept here: creating one is rare and cheap.
	if _, err := repo.CleanUploads(a.now()); err != nil {
		a.log.Warn("cleaning old upload sessions", zap.Error(err))
	}
	u, err := repo.NewUpload()
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, api.UploadSession{ID: u.ID()})
	return nil
}

func (a *publishAPI) handleUploadMissing(w http.ResponseWriter, r *http.Request) error {
	var req api.MissingRequest
	if err := decodeLimit(w, r, &req, maxMissingBody); err != nil {
		return err
	}
	if len(req.Objects) > api.MaxMissingObjects {
		return api.Errorf(api.CodeTooLarge, "%d objects in one request; at most %d", len(req.Objects), api.MaxMissingObjects)
	}
	u, err := a.openUpload(r)
	if err != nil {
		return err
	}
	repo, _ := a.repo()
	out := api.MissingResponse{Missing: []string{}}
	seen := map[string]bool{}
	for _, name := range req.Objects {
		c, t, err := ostree.ParseObjectName(name)
		if err != nil {
			return api.Errorf(api.CodeBadRequest, "%v", err)
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		if !repo.HasObject(c, t) && !u.Has(c, t) {
			out.Missing = append(out.Missing, name)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *publishAPI) handleUploadObject(w http.ResponseWriter, r *http.Request) error {
	c, t, err := ostree.ParseObjectName(r.PathValue("name"))
	if err != nil {
		return api.Errorf(api.CodeBadRequest, "%v", err)
	}
	limit := a.maxObject
	if t.IsMetadata() {
		limit = ostree.DeviceLimit(t)
	}
	if r.ContentLength > limit {
		return api.Errorf(api.CodeTooLarge, "a %s object may be at most %d bytes", t, limit)
	}
	u, err := a.openUpload(r)
	if err != nil {
		return err
	}
	if err := u.Put(c, t, r.Body, limit); err != nil {
		code, ok := codeOf(uploadRequest, err)
		switch {
		case !ok:
			return fmt.Errorf("receiving %s: %w", r.PathValue("name"), err)
		case errors.Is(err, ostree.ErrNoUpload):
			return api.Errorf(code, "upload session %s ended", u.ID())
		}
		return api.Errorf(code, "%v", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *publishAPI) handleUploadCommit(w http.ResponseWriter, r *http.Request) error {
	u, err := a.openUpload(r)
	if err != nil {
		return err
	}
	err = u.Commit()
	if errors.Is(err, ostree.ErrNoUpload) {
		return refuse(uploadRequest, err, "upload session %s ended", u.ID())
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *publishAPI) handleReleases(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	names := a.channels.Names()
	if c := q.Get("channel"); c != "" {
		if _, err := a.channels.Get(c); err != nil {
			return api.Errorf(api.CodeUnknownChannel, "unknown channel %q", c)
		}
		names = []string{c}
	}
	arch := q.Get("arch")
	if arch != "" {
		known := false
		for _, n := range names {
			ch, _ := a.channels.Get(n)
			if _, ok := ch.Ref(arch); ok {
				known = true
			}
		}
		if !known {
			return api.Errorf(api.CodeUnknownArch, "no channel here has the %q architecture", arch)
		}
	}
	out := []api.Release{}
	for _, n := range names {
		rs, err := a.store.ListReleases(r.Context(), n, arch)
		if err != nil {
			return err
		}
		for _, rel := range rs {
			out = append(out, *toAPIRelease(rel))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// releasePlan is a validated ReleaseRequest: release.Plan, with the
// short names the metadata checks use.
type releasePlan struct {
	plan       *release.Plan
	req        api.ReleaseRequest
	ch         *channel.Channel
	ref        string
	commit     ostree.Checksum
	ramp       string // "" for no rollout
	srcRef     string
	srcCommit  ostree.Checksum
	actionName string
}

// planRelease runs the release gates (release.Service: who may do what on
// which channel, versions, rollouts) and, with signed channel metadata on,
// checks that the signed targets list the release. Refusals come before
// the repository is touched.
func (a *publishAPI) planRelease(r *http.Request, req api.ReleaseRequest) (*releasePlan, error) {
	tok, _ := r.Context().Value(tokenKey).(db.Token)
	svc := &release.Service{Channels: a.channels, Store: releaseStore{a.store}}
	p, err := svc.Plan(r.Context(), release.Caller{Role: tok.Role, Token: tok.Name}, req)
	if err != nil {
		return nil, err
	}
	pl := &releasePlan{plan: p, req: req, ch: p.Channel, ref: p.Ref, commit: p.Commit, ramp: p.Ramp,
		srcRef: p.SourceRef, srcCommit: p.SourceCommit, actionName: string(p.Action)}
	if a.meta != nil {
		if err := a.meta.checkListed(req.Targets, pl); err != nil {
			return nil, err
		}
	}
	return pl, nil
}

// releaseStore adapts the database to release.Store.
type releaseStore struct{ s *db.Store }

func (rs releaseStore) Versions(ctx context.Context, ch, arch string) ([]string, error) {
	rels, err := rs.s.ListReleases(ctx, ch, arch)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(rels))
	for i, r := range rels {
		out[i] = r.Version
	}
	return out, nil
}

func (rs releaseStore) Commit(ctx context.Context, ch, arch, version string) (string, error) {
	rel, err := rs.s.GetRelease(ctx, ch, arch, version)
	if errors.Is(err, db.ErrNotFound) {
		return "", fmt.Errorf("%s/%s %s: %w", ch, arch, version, release.ErrNoRelease)
	}
	return rel.Commit, err
}

func (rs releaseStore) OpenRollout(ctx context.Context, ch, arch string) (*release.OpenRollout, error) {
	ro, err := rs.s.CurrentRollout(ctx, ch, arch)
	switch {
	case errors.Is(err, db.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	case ro.State == rollout.StatePending || ro.State == rollout.StateActive || ro.State == rollout.StatePaused:
		return &release.OpenRollout{ID: ro.ID, Version: ro.Version, State: ro.State}, nil
	}
	return nil, nil
}

// handleReleaseCreate publishes or promotes. Order: every check that needs
// only the database (planRelease); then one database transaction that
// records the release, its rollout and the audit entry and, last, has the
// Acceptor verify the commit and move the ref. A refusal anywhere rolls
// the transaction back, and the Acceptor changes nothing when it refuses,
// so a refused request leaves both the database and the repository as
// they were. (Only a failed database commit after the ref moved could
// leave them apart; the error is logged.)
func (a *publishAPI) handleReleaseCreate(w http.ResponseWriter, r *http.Request) error {
	var req api.ReleaseRequest
	if err := decodeLimit(w, r, &req, maxReleaseBody); err != nil {
		return err
	}
	repo, err := a.repo()
	if err != nil {
		return err
	}
	pl, err := a.planRelease(r, req)
	if err != nil {
		return err
	}
	ctx := r.Context()
	now := a.now()
	who := actor(r)
	rel := db.Release{Channel: pl.ch.Name, Arch: req.Arch, Version: req.Version, Ref: pl.ref, Commit: pl.commit.String(),
		PublishedAt: now, PublishedBy: who, PromotedFrom: req.PromotedFrom, OCIDigest: req.OCIDigest}
	acc := &release.Acceptor{Repo: repo, Trusted: a.trusted, Online: a.online, Now: a.now,
		Deltas: &release.DeltaPolicy{Sources: pl.ch.DeltaSources(), Scratch: pl.ch.StaticDeltaFromScratch}}
	moved := false
	// The release's objects go to the bucket before the lock is taken
	// (content-addressed, so any time is safe); under it only what the
	// release changes is written.
	var present *object.Present
	if a.repoStore != nil {
		present = &object.Present{}
		if err := a.repoStore.mirrorObjects(ctx, present); err != nil {
			return err
		}
	}
	err = a.store.Tx(ctx, func(tx *db.Tx) error {
		// One publish or promotion at a time across every server on this
		// database (a no-op on SQLite, whose write lock already is that).
		if err := tx.LockCluster(ctx, db.LockPublish); err != nil {
			return err
		}
		// With the repository in a bucket, build on what the bucket has
		// (another replica may have published since): repostore.go.
		var view *syncView
		if a.repoStore != nil {
			var err error
			if view, err = a.repoStore.sync(ctx, repo); err != nil {
				return err
			}
		}
		if err := tx.AddRelease(ctx, rel); err != nil {
			if errors.Is(err, db.ErrDuplicate) || errors.Is(err, db.ErrVersionOrder) {
				return refuse(releaseRequest, err, "%v", err)
			}
			return err
		}
		detail := map[string]string{"commit": rel.Commit, "version": rel.Version, "ref": rel.Ref}
		if pl.ramp != "" {
			ro := db.Rollout{ID: newID(), Channel: rel.Channel, Arch: rel.Arch, Version: rel.Version, Ramp: pl.ramp,
				State: rollout.StateActive, CreatedAt: now, CreatedBy: who}
			if err := tx.CreateRollout(ctx, ro); err != nil {
				if errors.Is(err, db.ErrConflict) {
					return refuse(releaseRequest, err, "%v", err)
				}
				return err
			}
			detail["rollout"], detail["ramp"] = ro.ID, ro.Ramp
		}
		if req.PromotedFrom != "" {
			detail["promoted_from"] = req.PromotedFrom
		}
		dj, _ := json.Marshal(detail)
		if _, err := tx.AppendAudit(ctx, db.Entry{Actor: who, Action: pl.actionName,
			Subject: rel.Channel + "/" + rel.Arch + "/" + rel.Version, Detail: string(dj), At: now}); err != nil {
			return err
		}
		// Signed targets go in before the ref moves: a refused targets
		// upload must leave the repository as it was. If the Acceptor or
		// the database commit fails after this, the installed targets list
		// a release the server does not offer, which is harmless (it is
		// release-signed) and a retry re-lists it.
		if a.meta != nil {
			if err := a.meta.acceptTargets(ctx, tx, req.Targets, now); err != nil {
				return err
			}
		}
		if err := a.logRelease(ctx, rel, pl.ramp); err != nil { // tlog.go
			return err
		}
		prev, prevErr := repo.ResolveRef(pl.ref)
		if prevErr != nil && !errors.Is(prevErr, ostree.ErrNotFound) {
			return prevErr
		}
		if _, err := acc.Accept(ctx, pl.plan.AcceptRequest()); err != nil {
			return release.AcceptAPIError(err)
		}
		moved = true
		// The bucket holds the release before the lock is let go and the
		// API answers. If it cannot, the release is rolled back, and so
		// is the local ref (else a later mirror would publish a release
		// the database does not record).
		if a.repoStore != nil {
			if err := a.repoStore.mirror(ctx, view, present); err != nil {
				if rerr := restoreRef(repo, pl.ref, prev, prevErr == nil, a.online, now); rerr != nil {
					a.log.Error("restoring the ref after a failed mirror", zap.String("ref", pl.ref), zap.Error(rerr))
				} else {
					moved = false
				}
				return err
			}
		}
		return nil
	})
	if err != nil {
		if moved {
			a.log.Error("the ref moved but the release was not recorded", zap.String("ref", pl.ref),
				zap.String("commit", rel.Commit), zap.String("version", rel.Version), zap.Error(err))
		}
		return err
	}
	a.updates.Invalidate() // checks must see the new release and rollout
	if a.meta != nil {
		a.rolloutsChanged() // the release may have started a rollout
	} else if len(req.Targets) > 0 {
		a.log.Warn("release came with signed targets, but signed channel metadata is off on this server: ignored",
			zap.String("channel", rel.Channel), zap.String("version", rel.Version))
	}
	a.log.Info(pl.actionName, zap.String("channel", rel.Channel), zap.String("arch", rel.Arch),
		zap.String("version", rel.Version), zap.String("commit", rel.Commit))
	writeJSON(w, http.StatusCreated, toAPIRelease(rel))
	return nil
}

// decodeLimit is decode with a body cap of its own.
func decodeLimit(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return api.Errorf(api.CodeTooLarge, "request body is larger than %d bytes", limit)
		}
		return api.Errorf(api.CodeBadRequest, "invalid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return api.Errorf(api.CodeBadRequest, "invalid JSON: data after the object")
	}
	return nil
}

// restoreRef points ref back at prev (or removes it when it had none)
// and re-signs the summary.
func restoreRef(repo *ostree.Repo, ref string, prev ostree.Checksum, had bool, online []sign.Signer, now time.Time) error {
	txn, err := repo.Begin()
	if err != nil {
		return err
	}
	defer txn.Close()
	if had {
		err = txn.SetRef(ref, prev)
	} else {
		err = txn.DeleteRef(ref)
	}
	if err != nil {
		return err
	}
	if err := txn.WriteSummary(now, func(b []byte) (ostree.Metadata, error) { return release.SignData(online, b, nil) }); err != nil {
		return err
	}
	return txn.Close()
}
