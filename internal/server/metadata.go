package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// Signed channel metadata (internal/channelmeta): the TUF repository in
// DATA/metadata/ is served as static files at /metadata/, the release
// endpoint installs the release-signed targets that come with a release,
// every rollout change re-signs the rollout state, and a background loop
// keeps the online-signed roles from expiring.

const (
	metadataPrefix = "/metadata/"
	// ReasonUnsigned is the check answer when the decided target is not in
	// the signed targets: devices would refuse it anyway (CheckOffer), so
	// the server says "no update" rather than offer it.
	ReasonUnsigned = "unsigned"
	// metadataInterval is how often the online roles are re-checked. The
	// timestamp lives a day and is renewed at half its lifetime, so this
	// only needs to be well under twelve hours; a few minutes also repairs
	// a failed publication soon.
	metadataInterval = 5 * time.Minute
	// Offline roles only the release team or root key holders can renew:
	// warn this long before they expire (channelmeta.RenewWarning).
	targetsWarnBefore = publish.RenewWarning
	rootWarnBefore    = publish.RenewWarning
	// maxMetadataUpdate bounds PUT /api/v1/metadata: a root and a targets
	// file at their size limits, base64-encoded in JSON.
	maxMetadataUpdate = 16 << 20
	// maxMetadataFile bounds a served file (channelmeta's own hard cap).
	maxMetadataFile = 8 << 20
)

// metadataName is every file name the repository writes for devices:
// root, timestamp, snapshot, targets and rollouts, current or versioned.
// Anything else in the directory (temp files) is not served.
var metadataName = regexp.MustCompile(`^(?:([1-9][0-9]{0,18})\.)?(?:root|timestamp|snapshot|targets|rollouts)\.json$`)

// metadataHandler serves the metadata directory through an os.Root, so a
// symlink planted in it cannot reach outside.
type metadataHandler struct {
	root *os.Root
	log  *zap.Logger
}

func (h *metadataHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, metadataPrefix)
	m := metadataName.FindStringSubmatch(name)
	if m == nil {
		http.NotFound(w, r)
		return
	}
	data, modTime, err := h.read(name)
	if errors.Is(err, fs.ErrNotExist) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		h.log.Error("reading channel metadata", zap.String("file", name), zap.Error(err))
		http.Error(w, "internal server error", http.StatusInternalServerError)
		return
	}
	sum := sha256.Sum256(data)
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
	w.Header().Set("Content-Type", "application/json")
	if m[1] != "" {
		// N.role.json never changes once written (consistent snapshots).
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		// Current copies change in place: revalidate every time.
		w.Header().Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, "", modTime, bytes.NewReader(data))
}

// read returns a whole file: files are small and renamed into place, so
// reading at once gives one consistent version for the ETag and body.
func (h *metadataHandler) read(name string) ([]byte, time.Time, error) {
	f, err := h.root.Open(name)
	if err != nil {
		return nil, time.Time{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, err
	}
	if !st.Mode().IsRegular() {
		return nil, time.Time{}, fs.ErrNotExist
	}
	data, err := io.ReadAll(io.LimitReader(f, maxMetadataFile+1))
	if err != nil {
		return nil, time.Time{}, err
	}
	if len(data) > maxMetadataFile {
		return nil, time.Time{}, fmt.Errorf("%s is larger than %d bytes", name, maxMetadataFile)
	}
	return data, st.ModTime(), nil
}

// metaState is the API's handle on the metadata repository.
type metaState struct {
	repo *publish.Repo
	log  *zap.Logger
	now  func() time.Time

	// pubMu serialises "read rollouts from the store, sign them", so an
	// older reading never overwrites a newer one.
	pubMu sync.Mutex

	// signed caches the release-signed releases by path for the check
	// endpoint; the server is the only writer of targets (AcceptTargets),
	// so it is reloaded after each accept and by the background loop.
	mu     sync.RWMutex
	signed map[string]channelmeta.Release

	// share keeps the directory in step with the bucket's copy
	// (metastore.go); nil for a single server.
	share *metaShare
}

// write runs change, which changes the metadata directory, as the
// cluster's one writer when the metadata is shared (metaShare.write,
// joining tx when it is not nil), else directly.
func (m *metaState) write(ctx context.Context, tx *db.Tx, change func() error) error {
	if m.share == nil {
		return change()
	}
	return m.share.write(ctx, tx, change)
}

func releaseKey(channelName, arch, version string) string {
	return channelName + "/" + arch + "/" + version
}

// reloadSigned re-reads the releases in the current targets.
func (m *metaState) reloadSigned() error {
	rels, err := m.repo.Releases()
	if err != nil {
		return fmt.Errorf("reading signed releases: %w", err)
	}
	set := make(map[string]channelmeta.Release, len(rels))
	for _, r := range rels {
		set[releaseKey(r.Channel, r.Arch, r.Version)] = r
	}
	m.mu.Lock()
	m.signed = set
	m.mu.Unlock()
	return nil
}

// signedRelease looks a release up in the cached signed targets.
func (m *metaState) signedRelease(channelName, arch, version string) (channelmeta.Release, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r, ok := m.signed[releaseKey(channelName, arch, version)]
	return r, ok
}

// consistent reports whether an offered target is exactly a signed release.
func (m *metaState) consistent(t *api.Target) bool {
	rel, ok := m.signedRelease(t.Channel, t.Arch, t.Version)
	return ok && rel.Commit == t.Commit && rel.Ref == t.Ref &&
		(t.OCIDigest == "" || t.OCIDigest == rel.OCIDigest)
}

// acceptTargets installs release-signed targets and refreshes the cache.
// Refusals that are about the uploaded bytes become bad_request. tx holds
// the cluster lock (metaState.write).
func (m *metaState) acceptTargets(ctx context.Context, tx *db.Tx, data []byte, now time.Time) error {
	if err := m.write(ctx, tx, func() error { return m.repo.AcceptTargets(data, now) }); err != nil {
		for _, kind := range []error{channelmeta.ErrBadSignature, channelmeta.ErrRollback, channelmeta.ErrExpired,
			channelmeta.ErrMalformed, publish.ErrInvalid, channelmeta.ErrTooLarge, channelmeta.ErrHashMismatch} {
			if errors.Is(err, kind) {
				return api.Errorf(api.CodeBadRequest, "signed targets refused: %v", err)
			}
		}
		return fmt.Errorf("installing signed targets: %w", err)
	}
	if err := m.reloadSigned(); err != nil {
		m.log.Error("signed targets installed but not reloaded", zap.Error(err))
	}
	return nil
}

// checkListed refuses a release request whose targets do not list this
// very release. The bytes are only parsed here; AcceptTargets verifies the
// same bytes before anything is stored, so a forged listing goes no
// further.
func (m *metaState) checkListed(targets []byte, pl *releasePlan) error {
	if len(targets) == 0 {
		return api.Errorf(api.CodeBadRequest, "signed targets are required: this server publishes signed channel metadata, "+
			"so a release must come with targets metadata signed by the release key that lists it (mxosctl publish/promote build them)")
	}
	rels, err := publish.ListedReleases(targets)
	if err != nil {
		return api.Errorf(api.CodeBadRequest, "signed targets: %v", err)
	}
	for _, r := range rels {
		if r.Channel != pl.ch.Name || r.Arch != pl.req.Arch || r.Version != pl.req.Version {
			continue
		}
		if r.Commit != pl.commit.String() || r.Ref != pl.ref {
			return api.Errorf(api.CodeBadRequest, "signed targets list %s %s on %s as commit %s on ref %s, not commit %s on ref %s",
				r.Version, r.Arch, r.Channel, r.Commit, r.Ref, pl.commit, pl.ref)
		}
		if r.OCIDigest != pl.req.OCIDigest {
			return api.Errorf(api.CodeBadRequest, "signed targets list image %q for %s %s on %s, not %q",
				r.OCIDigest, r.Version, r.Arch, r.Channel, pl.req.OCIDigest)
		}
		return m.checkThreshold(targets, r, pl)
	}
	return api.Errorf(api.CodeBadRequest, "signed targets do not list %s %s on %s: sign targets that include this release",
		pl.req.Version, pl.req.Arch, pl.ch.Name)
}

// checkThreshold refuses a release on a channel with a threshold above 1
// (k of n release signatures) unless its record says so, so devices
// enforce it too, and k distinct release keys of root sign the targets.
func (m *metaState) checkThreshold(targets []byte, r channelmeta.Release, pl *releasePlan) error {
	need := pl.ch.SignaturesRequired()
	if need <= 1 {
		return nil
	}
	if r.Threshold < need {
		return api.Errorf(api.CodeBadRequest, "channel %s needs %d release signatures: the signed record of %s %s says %d "+
			"(sign with mxosctl promote --sign-only, then mxosctl release cosign)", pl.ch.Name, need, r.Version, r.Arch, max(r.Threshold, 1))
	}
	root, err := m.repo.Root()
	if err != nil {
		return fmt.Errorf("reading the signed root: %w", err)
	}
	n, err := publish.TargetsSigners(root, targets)
	if err != nil {
		return api.Errorf(api.CodeBadRequest, "signed targets: %v", err)
	}
	if err := pl.ch.CheckThreshold(n); err != nil {
		return api.Errorf(api.CodeBadRequest, "%v (add signatures with mxosctl release cosign)", err)
	}
	return nil
}

// publishRollouts signs the current rollout of every channel and arch as
// the store has it. Rollouts of releases missing from the signed targets
// (published before metadata was enabled) are left out with a warning:
// channelmeta refuses them and devices could not install them anyway.
//
// With onlyChanged (the periodic refresh), the rollouts are re-signed only
// when they differ from the signed ones.
func (a *apiState) publishRollouts(ctx context.Context, onlyChanged bool) error {
	m := a.meta
	m.pubMu.Lock()
	defer m.pubMu.Unlock()
	return m.write(ctx, nil, func() error { return a.signRollouts(ctx, onlyChanged) })
}

// signRollouts is publishRollouts under the lock.
func (a *apiState) signRollouts(ctx context.Context, onlyChanged bool) error {
	m := a.meta
	var states []channelmeta.RolloutState
	for _, ch := range a.channels.Channels() {
		for _, arch := range ch.Arches() {
			ro, err := a.store.CurrentRollout(ctx, ch.Name, arch)
			if errors.Is(err, db.ErrNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("publishing rollouts: %w", err)
			}
			if _, ok := m.signedRelease(ro.Channel, ro.Arch, ro.Version); !ok {
				m.log.Warn("rollout of a release missing from the signed targets is not published",
					zap.String("rollout", ro.ID), zap.String("channel", ro.Channel), zap.String("arch", ro.Arch), zap.String("version", ro.Version))
				continue
			}
			ramp, err := rollout.ParseRamp(ro.Ramp)
			if err != nil {
				return fmt.Errorf("publishing rollouts: rollout %s: %w", ro.ID, err)
			}
			st := channelmeta.RolloutState{Channel: ro.Channel, Arch: ro.Arch, RolloutID: ro.ID, Version: ro.Version,
				Ramp: ramp, State: ro.State, HaltReason: ro.HaltReason}
			if ro.State != rollout.StatePending {
				st.StartedAt = ro.StartedAt
			}
			// The update graph, for devices that decide without the server.
			g := ch.Graph()
			st.Barriers = g.Barriers
			for _, d := range g.DeadEnds {
				st.DeadEnds = append(st.DeadEnds, channelmeta.DeadEnd{Version: d.Version, Successor: d.Successor})
			}
			states = append(states, st)
		}
	}
	if onlyChanged {
		if _, err := m.repo.PublishRolloutsIfChanged(states, a.now()); err != nil {
			return fmt.Errorf("publishing rollouts: %w", err)
		}
		return nil
	}
	if err := m.repo.PublishRollouts(states, a.now()); err != nil {
		return fmt.Errorf("publishing rollouts: %w", err)
	}
	return nil
}

// rolloutsChanged re-signs the rollout state after a committed change.
// The change itself stands if this fails: the background loop retries.
func (a *apiState) rolloutsChanged() {
	if a.meta == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.publishRollouts(ctx, false); err != nil {
		a.log.Error("signing the rollout state; retrying in the background", zap.Error(err))
	}
}

// refreshMetadata republishes the rollouts (when the API runs) and renews
// the online roles, warning about offline roles that expire soon.
func (s *Server) refreshMetadata(ctx context.Context) {
	m := s.meta
	if err := m.reloadSigned(); err != nil {
		s.log.Error("channel metadata", zap.Error(err))
		return
	}
	if s.api != nil {
		if err := s.api.publishRollouts(ctx, m.share != nil); err != nil && ctx.Err() == nil {
			s.log.Error("channel metadata", zap.Error(err))
		}
	}
	now := m.now()
	var res publish.RefreshResult
	err := m.write(ctx, nil, func() error {
		var err error
		res, err = m.repo.Refresh(now)
		return err
	})
	if err != nil {
		s.log.Error("refreshing channel metadata", zap.Error(err))
		return
	}
	if len(res.Resigned) > 0 {
		s.log.Info("channel metadata re-signed", zap.Strings("roles", res.Resigned), zap.Time("timestamp_expires", res.TimestampExpires))
	}
	if res.TargetsExpires.Sub(now) < targetsWarnBefore {
		s.log.Warn("signed targets expire soon: renew them with the release key (mxosctl metadata renew --targets)", zap.Time("expires", res.TargetsExpires))
	}
	if res.RootExpires.Sub(now) < rootWarnBefore {
		s.log.Warn("signed root expires soon: renew it with the root keys (mxosctl metadata renew --root)", zap.Time("expires", res.RootExpires))
	}
}

// metadataLoop refreshes the metadata every metadataInterval until ctx
// ends (Serve runs the first refresh itself, before accepting devices).
func (s *Server) metadataLoop(ctx context.Context) {
	t := time.NewTicker(metadataInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.refreshMetadata(ctx)
		}
	}
}

// metadataRoutes registers PUT /api/v1/metadata (release role): signed
// root and targets made offline by mxosctl metadata renew, sign-existing
// and rotate-keys. The server holds no offline key: it only verifies
// (publish.Repo.AcceptRoot, AcceptTargets) and installs.
func (s *Server) metadataRoutes() {
	if s.meta == nil {
		return
	}
	perm := []auth.Permission{auth.PermPublish, auth.PermPromote}
	s.mux.Handle("PUT "+api.Prefix+"/metadata", s.api.authed(perm, s.handleMetadataPut))
}

func (s *Server) handleMetadataPut(w http.ResponseWriter, r *http.Request) error {
	a, m := s.api, s.meta
	var u api.MetadataUpdate
	r.Body = http.MaxBytesReader(w, r.Body, maxMetadataUpdate)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&u); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return api.Errorf(api.CodeTooLarge, "request body is larger than %d bytes", maxMetadataUpdate)
		}
		return api.Errorf(api.CodeBadRequest, "invalid JSON: %v", err)
	}
	if len(u.Root) == 0 && len(u.Targets) == 0 {
		return api.Errorf(api.CodeBadRequest, "nothing to install: send root, targets or both")
	}
	now := m.now()
	action := "metadata.targets"
	err := m.write(r.Context(), nil, func() error {
		if len(u.Root) > 0 {
			return m.repo.AcceptRoot(u.Root, u.Targets, now)
		}
		return m.repo.AcceptTargets(u.Targets, now)
	})
	if len(u.Root) > 0 {
		action = "metadata.root"
	}
	if err != nil {
		return metadataRefusal(err)
	}
	if err := m.reloadSigned(); err != nil {
		m.log.Error("signed metadata installed but not reloaded", zap.Error(err))
	}
	// Rollouts of releases that were not signed before can be signed now.
	a.rolloutsChanged()
	a.updates.Invalidate()
	st, err := m.repo.Status()
	if err != nil {
		return err
	}
	out := make([]api.MetadataRole, 0, len(st))
	detail := map[string]int64{}
	for _, rs := range st {
		out = append(out, api.MetadataRole{Role: rs.Role, Version: rs.Version, Expires: rs.Expires})
		detail[rs.Role] = rs.Version
	}
	d, _ := json.Marshal(detail)
	err = a.store.Tx(r.Context(), func(tx *db.Tx) error {
		_, err := tx.AppendAudit(r.Context(), db.Entry{Actor: actor(r), Action: action, Subject: "metadata", Detail: string(d), At: now})
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// metadataRefusal turns a refusal about uploaded bytes into bad_request.
func metadataRefusal(err error) error {
	for _, kind := range []error{channelmeta.ErrBadSignature, channelmeta.ErrRollback, channelmeta.ErrExpired,
		channelmeta.ErrMalformed, publish.ErrInvalid, channelmeta.ErrTooLarge, channelmeta.ErrHashMismatch,
		publish.ErrNeedTargets} {
		if errors.Is(err, kind) {
			return api.Errorf(api.CodeBadRequest, "signed metadata refused: %v", err)
		}
	}
	return fmt.Errorf("installing signed metadata: %w", err)
}

// metadataCollector exports, at each scrape, the expiry time and version
// of every role of the signed channel metadata:
//
//	mxos_metadata_expiry_timestamp_seconds{role="targets"} 1.78e9
//	mxos_metadata_version{role="targets"} 12
//
// so that an alert can fire well before an offline role expires.
type metadataCollector struct {
	repo    *publish.Repo
	expiry  *prometheus.Desc
	version *prometheus.Desc
}

func newMetadataCollector(repo *publish.Repo) *metadataCollector {
	return &metadataCollector{repo: repo,
		expiry: prometheus.NewDesc("mxos_metadata_expiry_timestamp_seconds",
			"When each role of the signed channel metadata expires (Unix time).", []string{"role"}, nil),
		version: prometheus.NewDesc("mxos_metadata_version",
			"Current version of each role of the signed channel metadata.", []string{"role"}, nil),
	}
}

func (c *metadataCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.expiry
	ch <- c.version
}

func (c *metadataCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.repo.Status()
	if err != nil {
		return
	}
	for _, rs := range st {
		ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, float64(rs.Expires.Unix()), rs.Role)
		ch <- prometheus.MustNewConstMetric(c.version, prometheus.GaugeValue, float64(rs.Version), rs.Role)
	}
}
