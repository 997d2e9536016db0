package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/rollout"
	"github.com/mxos-linux/mxos-update/internal/updates"
)

// maxBodyBytes bounds every JSON request body; the largest legitimate one
// (a report with its error text) is a few KiB.
const maxBodyBytes = 64 << 10

// apiState is what the update and admin API needs; nil when the server
// runs as a plain repository server.
type apiState struct {
	store    *db.Store
	channels *channel.Set
	updates  *updates.Service
	now      func() time.Time
	log      *zap.Logger
	metrics  *metrics
	meta     *metaState // nil when signed channel metadata is off

	// tokens caches successful token lookups for tokenTTL: a device fleet
	// authenticates on every check. Revoking through this server clears
	// it; a revocation made through another replica applies within the TTL.
	tokMu  sync.Mutex
	tokens map[[32]byte]cachedToken

	denied denials // auth.go: the audit rate limit of denied requests
}

type cachedToken struct {
	t       db.Token
	expires time.Time
}

const tokenTTL = time.Second

func (a *apiState) lookupToken(ctx context.Context, hash []byte) (db.Token, error) {
	var k [32]byte
	copy(k[:], hash)
	now := time.Now()
	a.tokMu.Lock()
	c, ok := a.tokens[k]
	a.tokMu.Unlock()
	if ok && now.Before(c.expires) {
		return c.t, nil
	}
	t, err := a.store.TokenByHash(ctx, hash)
	if err != nil {
		return t, err
	}
	a.tokMu.Lock()
	if a.tokens == nil || len(a.tokens) > 100000 {
		a.tokens = map[[32]byte]cachedToken{}
	}
	a.tokens[k] = cachedToken{t: t, expires: now.Add(tokenTTL)}
	a.tokMu.Unlock()
	return t, nil
}

func (a *apiState) forgetTokens() {
	a.tokMu.Lock()
	a.tokens = nil
	a.tokMu.Unlock()
}

type ctxKey int

const tokenKey ctxKey = 0

// apiRoutes registers the routes listed in internal/api (admin.go).
func (s *Server) apiRoutes() {
	a := s.api
	p := api.Prefix
	h := func(pattern string, perm []auth.Permission, fn func(http.ResponseWriter, *http.Request) error) {
		s.mux.Handle(pattern, a.authed(perm, fn))
	}
	dev := []auth.Permission{auth.PermDevice}
	rel := []auth.Permission{auth.PermRollout}
	adm := []auth.Permission{auth.PermPin}
	h("POST "+p+"/check", dev, a.handleCheck)
	h("POST "+p+"/report", dev, a.handleReport)
	h("GET "+p+"/channels", []auth.Permission{auth.PermReadChannels}, a.handleChannels)
	h("GET "+p+"/rollouts", []auth.Permission{auth.PermRollout, auth.PermReadAudit}, a.handleRollouts)
	h("POST "+p+"/rollouts", rel, a.handleRolloutStart)
	h("POST "+p+"/rollouts/{id}/{action}", rel, a.handleRolloutAction)
	h("GET "+p+"/pins", adm, a.handlePins)
	h("PUT "+p+"/pins", adm, a.handleSetPin)
	h("DELETE "+p+"/pins/{scope}/{target}", adm, a.handleDeletePin)
	h("GET "+p+"/devices", []auth.Permission{auth.PermReadDevices}, a.handleDevices)
	h("PUT "+p+"/devices/{id}/group", adm, a.handleSetGroup)
	h("GET "+p+"/audit", []auth.Permission{auth.PermReadAudit}, a.handleAudit)
	h("GET "+p+"/tokens", []auth.Permission{auth.PermManageTokens}, a.handleTokens)
	h("POST "+p+"/tokens", []auth.Permission{auth.PermManageTokens, auth.PermCreateReleaseTokens}, a.handleTokenCreate)
	h("DELETE "+p+"/tokens/{name}", []auth.Permission{auth.PermManageTokens}, a.handleTokenRevoke)
	s.publishRoutes()   // publish.go
	s.fleetLockRoutes() // fleetlock.go
	s.authRoutes()      // auth.go
	s.deviceRoutes()    // device_reports.go
}

// actor names the token behind a request in the audit log.
func actor(r *http.Request) string {
	t, _ := r.Context().Value(tokenKey).(db.Token)
	return "token:" + t.Name
}

// writeError maps domain errors to the API's stable codes. Unexpected
// errors are logged and answered without detail.
func (a *apiState) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *api.Error
	switch {
	case errors.As(err, &ae):
	case errors.Is(err, db.ErrNotFound):
		ae = api.Errorf(api.CodeNotFound, "%s", err.Error())
	case errors.Is(err, db.ErrReplay):
		ae = api.Errorf(api.CodeReplay, "%s", err.Error())
	case errors.Is(err, db.ErrVersionOrder):
		ae = api.Errorf(api.CodeVersionOrder, "%s", err.Error())
	case errors.Is(err, db.ErrDuplicate):
		ae = api.Errorf(api.CodeDuplicate, "%s", err.Error())
	case errors.Is(err, db.ErrConflict):
		ae = api.Errorf(api.CodeConflict, "%s", err.Error())
	case errors.Is(err, db.ErrInvalid):
		ae = api.Errorf(api.CodeBadRequest, "%s", err.Error())
	case errors.Is(err, rollout.ErrIllegalTransition):
		ae = api.Errorf(api.CodeRolloutState, "%s", err.Error())
	default:
		a.log.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		ae = api.Errorf(api.CodeInternal, "internal error")
	}
	writeJSON(w, ae.Code.HTTPStatus(), api.ErrorBody{Error: ae})
}

// writeList answers 200 with items in their API form: a JSON array,
// empty rather than null when there are none.
func writeList[T, U any](w http.ResponseWriter, items []T, apiForm func(T) U) {
	out := make([]U, 0, len(items))
	for _, it := range items {
		out = append(out, apiForm(it))
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decode reads one JSON object, refusing unknown fields, trailing data and
// bodies over maxBodyBytes.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return api.Errorf(api.CodeTooLarge, "request body is larger than %d bytes", maxBodyBytes)
		}
		return api.Errorf(api.CodeBadRequest, "invalid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return api.Errorf(api.CodeBadRequest, "invalid JSON: data after the object")
	}
	return nil
}

func (a *apiState) handleCheck(w http.ResponseWriter, r *http.Request) error {
	var req api.CheckRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	if err := a.forDevice(r, req.DeviceID); err != nil {
		return err
	}
	resp, err := a.updates.Check(r.Context(), req)
	if err != nil {
		return err
	}
	if a.meta != nil && resp.Target != nil && !a.meta.consistent(resp.Target) {
		// The answer must agree with the signed metadata; a device would
		// refuse this offer, so it is a server-side inconsistency to fix.
		a.log.Error("check answer names a release that is not in the signed targets; answering no update",
			zap.String("device", req.DeviceID), zap.String("channel", resp.Target.Channel), zap.String("arch", resp.Target.Arch),
			zap.String("version", resp.Target.Version), zap.String("commit", resp.Target.Commit))
		resp = api.CheckResponse{Reason: ReasonUnsigned}
	}
	a.metrics.checks.WithLabelValues(req.Channel, resp.Reason).Inc()
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (a *apiState) handleReport(w http.ResponseWriter, r *http.Request) error {
	var req api.ReportRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	if err := a.forDevice(r, req.DeviceID); err != nil {
		return err
	}
	if err := a.updates.Report(r.Context(), req); err != nil {
		return err
	}
	a.metrics.reports.WithLabelValues(string(req.Event)).Inc()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func toAPIRelease(r db.Release) *api.Release {
	return &api.Release{Channel: r.Channel, Arch: r.Arch, Version: r.Version, Ref: r.Ref, Commit: r.Commit,
		OCIDigest: r.OCIDigest, PublishedAt: r.PublishedAt, PublishedBy: r.PublishedBy, PromotedFrom: r.PromotedFrom}
}

func (a *apiState) rolloutStatus(ctx context.Context, ro db.Rollout) (api.RolloutStatus, error) {
	st := api.RolloutStatus{ID: ro.ID, Channel: ro.Channel, Arch: ro.Arch, Version: ro.Version, Ramp: ro.Ramp,
		State: string(ro.State), StartedAt: ro.StartedAt, UpdatedAt: ro.UpdatedAt, HaltReason: ro.HaltReason, CreatedBy: ro.CreatedBy}
	now := a.now()
	switch ro.State {
	case rollout.StateActive:
		if ramp, err := rollout.ParseRamp(ro.Ramp); err == nil {
			st.Fraction = ramp.FractionAt(ro.StartedAt, now)
		}
	case rollout.StateComplete:
		st.Fraction = 1
	}
	if ch, err := a.channels.Get(ro.Channel); err == nil {
		stats, err := a.store.RolloutStats(ctx, ro.ID, now.Add(-ch.HaltPolicy().Window))
		if err != nil {
			return st, err
		}
		st.Successes, st.Failures = stats.Successes, stats.Failures
	}
	return st, nil
}

func (a *apiState) handleChannels(w http.ResponseWriter, r *http.Request) error {
	var out []api.ChannelStatus
	for _, ch := range a.channels.Channels() {
		cs := api.ChannelStatus{Name: ch.Name, Description: ch.Description, PromotesFrom: ch.PromotesFrom}
		if ramp, err := ch.DefaultRamp(); err == nil {
			cs.DefaultRamp = ramp.String()
		}
		for _, arch := range ch.Arches() {
			ref, _ := ch.Ref(arch)
			as := api.ArchStatus{Arch: arch, Ref: ref}
			if rel, err := a.store.LatestRelease(r.Context(), ch.Name, arch); err == nil {
				as.Latest = toAPIRelease(rel)
			} else if !errors.Is(err, db.ErrNotFound) {
				return err
			}
			if ro, err := a.store.CurrentRollout(r.Context(), ch.Name, arch); err == nil {
				st, err := a.rolloutStatus(r.Context(), ro)
				if err != nil {
					return err
				}
				as.Rollout = &st
			} else if !errors.Is(err, db.ErrNotFound) {
				return err
			}
			cs.Arches = append(cs.Arches, as)
		}
		out = append(out, cs)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *apiState) handleRollouts(w http.ResponseWriter, r *http.Request) error {
	chName := r.URL.Query().Get("channel")
	if chName != "" {
		if _, err := a.channels.Get(chName); err != nil {
			return api.Errorf(api.CodeUnknownChannel, "unknown channel %q", chName)
		}
	}
	ros, err := a.store.ListRollouts(r.Context(), chName)
	if err != nil {
		return err
	}
	out := make([]api.RolloutStatus, 0, len(ros))
	for _, ro := range ros {
		st, err := a.rolloutStatus(r.Context(), ro)
		if err != nil {
			return err
		}
		out = append(out, st)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (a *apiState) handleRolloutStart(w http.ResponseWriter, r *http.Request) error {
	var req api.RolloutStartRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	ch, err := a.channels.Get(req.Channel)
	if err != nil {
		return api.Errorf(api.CodeUnknownChannel, "unknown channel %q", req.Channel)
	}
	if req.Version == "" {
		return api.Errorf(api.CodeBadRequest, "version is required")
	}
	ramp := req.Ramp
	if ramp == "" {
		dr, err := ch.DefaultRamp()
		if err != nil {
			return err
		}
		ramp = dr.String()
	} else if _, err := rollout.ParseRamp(ramp); err != nil {
		return api.Errorf(api.CodeBadRequest, "%v", err)
	}
	arches := ch.Arches()
	if req.Arch != "" {
		if _, ok := ch.Ref(req.Arch); !ok {
			return api.Errorf(api.CodeUnknownArch, "channel %s has no %s", ch.Name, req.Arch)
		}
		arches = []string{req.Arch}
	}
	now := a.now()
	who := actor(r)
	var out []db.Rollout
	err = a.store.Tx(r.Context(), func(tx *db.Tx) error {
		for _, arch := range arches {
			if _, err := tx.GetRelease(r.Context(), ch.Name, arch, req.Version); errors.Is(err, db.ErrNotFound) {
				if req.Arch == "" {
					continue // this architecture has no such release
				}
				return api.Errorf(api.CodeNotFound, "%s %s is not published on %s", req.Version, arch, ch.Name)
			} else if err != nil {
				return err
			}
			ro := db.Rollout{ID: newID(), Channel: ch.Name, Arch: arch, Version: req.Version, Ramp: ramp,
				State: rollout.StateActive, CreatedAt: now, CreatedBy: who}
			if err := tx.CreateRollout(r.Context(), ro); err != nil {
				return err
			}
			detail, _ := json.Marshal(map[string]string{"rollout": ro.ID, "ramp": ramp})
			if _, err := tx.AppendAudit(r.Context(), db.Entry{Actor: who, Action: "rollout.start",
				Subject: ch.Name + "/" + arch + "/" + req.Version, Detail: string(detail), At: now}); err != nil {
				return err
			}
			out = append(out, ro)
		}
		if len(out) == 0 {
			return api.Errorf(api.CodeNotFound, "%s is not published on %s", req.Version, ch.Name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	a.updates.Invalidate()
	a.rolloutsChanged()
	var sts []api.RolloutStatus
	for _, ro := range out {
		ro, _ = a.store.GetRollout(r.Context(), ro.ID)
		st, err := a.rolloutStatus(r.Context(), ro)
		if err != nil {
			return err
		}
		sts = append(sts, st)
	}
	writeJSON(w, http.StatusCreated, sts)
	return nil
}

func (a *apiState) handleRolloutAction(w http.ResponseWriter, r *http.Request) error {
	var req api.RolloutActionRequest
	if r.ContentLength != 0 {
		if err := decode(w, r, &req); err != nil {
			return err
		}
	}
	action, err := rollout.ParseAction(r.PathValue("action"))
	if err != nil || action == rollout.ActionStart {
		return api.Errorf(api.CodeBadRequest, "unknown action %q: use pause, resume, halt or complete", r.PathValue("action"))
	}
	id := r.PathValue("id")
	ro, err := a.store.GetRollout(r.Context(), id)
	if err != nil {
		return err
	}
	to, err := rollout.Transition(ro.State, action)
	if err != nil {
		return api.Errorf(api.CodeRolloutState, "%v", err)
	}
	now := a.now()
	who := actor(r)
	err = a.store.Tx(r.Context(), func(tx *db.Tx) error {
		if err := tx.SetRolloutState(r.Context(), id, ro.State, to, req.Reason, now); err != nil {
			return err
		}
		detail, _ := json.Marshal(map[string]string{"rollout": id, "from": string(ro.State), "to": string(to), "reason": req.Reason})
		_, err := tx.AppendAudit(r.Context(), db.Entry{Actor: who, Action: "rollout." + string(action),
			Subject: ro.Channel + "/" + ro.Arch + "/" + ro.Version, Detail: string(detail), At: now})
		return err
	})
	if err != nil {
		return err
	}
	a.updates.Invalidate()
	a.rolloutsChanged()
	ro, err = a.store.GetRollout(r.Context(), id)
	if err != nil {
		return err
	}
	st, err := a.rolloutStatus(r.Context(), ro)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func toAPIPin(p db.Pin) api.Pin {
	return api.Pin{Scope: string(p.Scope), Target: p.Target, Channel: p.Channel, Version: p.Version, CreatedBy: p.CreatedBy, CreatedAt: p.CreatedAt}
}

func (a *apiState) handlePins(w http.ResponseWriter, r *http.Request) error {
	pins, err := a.store.ListPins(r.Context())
	if err != nil {
		return err
	}
	writeList(w, pins, toAPIPin)
	return nil
}

func (a *apiState) handleSetPin(w http.ResponseWriter, r *http.Request) error {
	var req api.Pin
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Channel == "" && req.Version == "" {
		return api.Errorf(api.CodeBadRequest, "a pin needs a channel, a version or both")
	}
	if req.Channel != "" {
		if _, err := a.channels.Get(req.Channel); err != nil {
			return api.Errorf(api.CodeUnknownChannel, "unknown channel %q", req.Channel)
		}
	}
	if req.Version != "" {
		if _, err := rollout.ParseVersion(req.Version); err != nil {
			return api.Errorf(api.CodeBadRequest, "%v", err)
		}
	}
	now := a.now()
	who := actor(r)
	p := db.Pin{Scope: db.PinScope(req.Scope), Target: req.Target, Channel: req.Channel, Version: req.Version, CreatedBy: who, CreatedAt: now}
	err := a.store.Tx(r.Context(), func(tx *db.Tx) error {
		if err := tx.SetPin(r.Context(), p); err != nil {
			return err
		}
		detail, _ := json.Marshal(map[string]string{"channel": p.Channel, "version": p.Version})
		_, err := tx.AppendAudit(r.Context(), db.Entry{Actor: who, Action: "pin.set", Subject: req.Scope + "/" + req.Target, Detail: string(detail), At: now})
		return err
	})
	if err != nil {
		return err
	}
	a.updates.Invalidate()
	writeJSON(w, http.StatusOK, toAPIPin(p))
	return nil
}

func (a *apiState) handleDeletePin(w http.ResponseWriter, r *http.Request) error {
	scope, target := r.PathValue("scope"), r.PathValue("target")
	now := a.now()
	who := actor(r)
	err := a.store.Tx(r.Context(), func(tx *db.Tx) error {
		if err := tx.DeletePin(r.Context(), db.PinScope(scope), target); err != nil {
			return err
		}
		_, err := tx.AppendAudit(r.Context(), db.Entry{Actor: who, Action: "pin.delete", Subject: scope + "/" + target, At: now})
		return err
	})
	if err != nil {
		return err
	}
	a.updates.Invalidate()
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *apiState) handleDevices(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := db.DeviceFilter{Channel: q.Get("channel"), Group: q.Get("group"), After: q.Get("after"), Limit: 100}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return api.Errorf(api.CodeBadRequest, "limit must be 1 to 1000")
		}
		f.Limit = n
	}
	devs, err := a.store.ListDevices(r.Context(), f)
	if err != nil {
		return err
	}
	total, err := a.store.CountDevices(r.Context(), db.DeviceFilter{Channel: f.Channel, Group: f.Group})
	if err != nil {
		return err
	}
	out := api.DeviceList{Devices: make([]api.Device, 0, len(devs)), Total: total}
	for _, d := range devs {
		out.Devices = append(out.Devices, api.Device{ID: d.ID, Arch: d.Arch, Channel: d.Channel, Group: d.Group,
			BootedCommit: d.BootedCommit, Version: d.Version, FirstSeen: d.FirstSeen, LastSeen: d.LastSeen})
	}
	if len(devs) == f.Limit {
		out.Next = devs[len(devs)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *apiState) handleSetGroup(w http.ResponseWriter, r *http.Request) error {
	var req api.GroupRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	id := r.PathValue("id")
	now := a.now()
	who := actor(r)
	err := a.store.Tx(r.Context(), func(tx *db.Tx) error {
		if err := tx.SetDeviceGroup(r.Context(), id, req.Group); err != nil {
			return err
		}
		detail, _ := json.Marshal(map[string]string{"group": req.Group})
		_, err := tx.AppendAudit(r.Context(), db.Entry{Actor: who, Action: "device.group", Subject: id, Detail: string(detail), At: now})
		return err
	})
	if err != nil {
		return err
	}
	a.updates.ForgetDevice(id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *apiState) handleAudit(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	after, limit := int64(0), 100
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return api.Errorf(api.CodeBadRequest, "after must be a sequence number")
		}
		after = n
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return api.Errorf(api.CodeBadRequest, "limit must be 1 to 1000")
		}
		limit = n
	}
	entries, err := a.store.ListAudit(r.Context(), after, limit)
	if err != nil {
		return err
	}
	out := api.AuditList{Entries: make([]api.AuditEntry, 0, len(entries)), Verified: true}
	for _, e := range entries {
		out.Entries = append(out.Entries, api.AuditEntry{Seq: e.Seq, Actor: e.Actor, Action: e.Action, Subject: e.Subject,
			Detail: e.Detail, At: e.At, PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash)})
	}
	if err := a.store.VerifyAudit(r.Context()); err != nil {
		out.Verified, out.VerifyError = false, err.Error()
	}
	seq, hash, err := a.store.AuditHead(r.Context())
	if err != nil {
		return err
	}
	out.HeadSeq, out.HeadHash = seq, hex.EncodeToString(hash)
	writeJSON(w, http.StatusOK, out)
	return nil
}

func toTokenInfo(t db.Token) api.TokenInfo {
	return api.TokenInfo{ID: t.ID, Name: t.Name, Role: string(t.Role), CreatedAt: t.CreatedAt, CreatedBy: t.CreatedBy,
		RevokedAt: t.RevokedAt, DeviceID: t.DeviceID, ExpiresAt: t.ExpiresAt, MaxDevices: t.MaxDevices}
}

func (a *apiState) handleTokens(w http.ResponseWriter, r *http.Request) error {
	toks, err := a.store.ListTokens(r.Context(), r.URL.Query().Get("credentials") == "1")
	if err != nil {
		return err
	}
	writeList(w, toks, toTokenInfo)
	return nil
}

// handleTokenCreate makes a token over the API: release tokens only for
// the release role, every other role for admins (auth.CanCreate).
func (a *apiState) handleTokenCreate(w http.ResponseWriter, r *http.Request) error {
	var req api.TokenCreateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	role, err := auth.ParseRole(req.Role)
	if err != nil {
		return api.Errorf(api.CodeBadRequest, "%v", err)
	}
	creator, _ := r.Context().Value(tokenKey).(db.Token)
	if !auth.CanCreate(creator.Role, role) {
		if role == auth.RoleRelease {
			return api.Errorf(api.CodeForbidden, "only the release role makes release tokens (or mxos-server token create on the server)")
		}
		return api.Errorf(api.CodeForbidden, "the %s role cannot make %s tokens", creator.Role, role)
	}
	opts := TokenOptions{Name: req.Name, Role: role, By: actor(r), Now: a.now(), DeviceID: req.DeviceID, MaxDevices: req.MaxDevices}
	if req.Expires != "" {
		if opts.TTL, err = auth.ParseTTL(req.Expires); err != nil {
			return api.Errorf(api.CodeBadRequest, "expires: %v", err)
		}
	}
	created, err := CreateTokenWith(r.Context(), a.store, opts)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, created)
	return nil
}

// TokenOptions describes a token to make.
type TokenOptions struct {
	Name string
	Role auth.Role
	By   string // the audit log's actor
	Now  time.Time
	// TTL is the token's lifetime; 0 is auth.DefaultTTL(Role).
	TTL time.Duration
	// DeviceID binds a device token to one device from the start.
	DeviceID string
	// MaxDevices caps an enroll token's enrollments (0: EnrollCap).
	MaxDevices int
}

// CreateToken makes a token with its role's default lifetime; see
// CreateTokenWith.
func CreateToken(ctx context.Context, store *db.Store, name string, role auth.Role, by string, now time.Time) (api.TokenCreated, error) {
	return CreateTokenWith(ctx, store, TokenOptions{Name: name, Role: role, By: by, Now: now})
}

// CreateTokenWith makes a token, stores its hash and records it in the
// audit log. The plain token is returned once and never stored or
// logged. Names starting with db.DeviceCredentialPrefix are kept for
// credentials made by enrollment.
func CreateTokenWith(ctx context.Context, store *db.Store, o TokenOptions) (api.TokenCreated, error) {
	if strings.HasPrefix(o.Name, db.DeviceCredentialPrefix) {
		return api.TokenCreated{}, api.Errorf(api.CodeBadRequest, "token names starting with %q are kept for device credentials", db.DeviceCredentialPrefix)
	}
	if o.DeviceID != "" && o.Role != auth.RoleDevice {
		return api.TokenCreated{}, api.Errorf(api.CodeBadRequest, "only device tokens are bound to a device")
	}
	if o.MaxDevices < 0 || (o.MaxDevices != 0 && o.Role != auth.RoleEnroll) {
		return api.TokenCreated{}, api.Errorf(api.CodeBadRequest, "max devices: only an enroll token has a cap, and it is a positive number")
	}
	if o.DeviceID != "" {
		if err := (&api.EnrollRequest{DeviceID: o.DeviceID}).Validate(); err != nil {
			return api.TokenCreated{}, err
		}
	}
	ttl := o.TTL
	if ttl == 0 {
		ttl = auth.DefaultTTL(o.Role)
	}
	if ttl < 0 || ttl > auth.MaxTTL {
		return api.TokenCreated{}, api.Errorf(api.CodeBadRequest, "a token lives at most %s", auth.MaxTTL)
	}
	plain, hash, err := auth.NewToken()
	if err != nil {
		return api.TokenCreated{}, err
	}
	t := db.Token{ID: newID(), Name: o.Name, Role: o.Role, Hash: hash, CreatedAt: o.Now, CreatedBy: o.By,
		DeviceID: o.DeviceID, ExpiresAt: o.Now.Add(ttl), MaxDevices: o.MaxDevices}
	err = store.Tx(ctx, func(tx *db.Tx) error {
		if o.DeviceID != "" {
			// A token made for a device id counts as that id's binding, so
			// it is refused for a revoked id like any other binding.
			st, err := tx.IdentityState(ctx, o.DeviceID)
			if err != nil {
				return err
			}
			if st == db.IdentityRevoked {
				return api.Errorf(api.CodeConflict, "device %s was revoked; authorize it first", o.DeviceID)
			}
		}
		if err := tx.CreateToken(ctx, t); err != nil {
			return err
		}
		detail, _ := json.Marshal(map[string]string{"role": string(o.Role), "id": t.ID, "device": o.DeviceID,
			"expires": t.ExpiresAt.UTC().Format(time.RFC3339)})
		_, err := tx.AppendAudit(ctx, db.Entry{Actor: o.By, Action: "token.create", Subject: o.Name, Detail: string(detail), At: o.Now})
		return err
	})
	if err != nil {
		return api.TokenCreated{}, err
	}
	return api.TokenCreated{TokenInfo: toTokenInfo(t), Token: plain}, nil
}

// handleTokenRevoke revokes a token by name or id. The last admin token
// that works cannot be revoked over the API (nobody could manage tokens
// afterwards); on the server's machine, mxos-server token revoke can.
func (a *apiState) handleTokenRevoke(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	now := a.now()
	who := actor(r)
	err := a.store.Tx(r.Context(), func(tx *db.Tx) error {
		t, err := tx.RevokeToken(r.Context(), name, now)
		if err != nil {
			return err
		}
		if t.Role == auth.RoleAdmin && !t.Expired(now) {
			n, err := tx.CountLiveTokens(r.Context(), auth.RoleAdmin, now)
			if err != nil {
				return err
			}
			if n == 0 {
				return api.Errorf(api.CodeConflict, "%s is the last admin token: create another one first (or use mxos-server token revoke on the server)", t.Name)
			}
		}
		a.forgetTokens()
		_, err = tx.AppendAudit(r.Context(), db.Entry{Actor: who, Action: "token.revoke", Subject: t.Name, At: now})
		return err
	})
	if err != nil {
		return err
	}
	a.forgetTokens() // again after the commit: a lookup in between may have cached it
	w.WriteHeader(http.StatusNoContent)
	return nil
}
