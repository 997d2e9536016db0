package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/db"
)

// Denied requests (401 and 403) are audited, at most deniedPerWindow
// entries per deniedWindow; the rest are counted and summed up in one
// "auth.denied.suppressed" entry when the next window's first denial is
// written, so a flood of bad requests costs the audit log a few entries
// an hour. mxos_api_denied_total counts every one.
const (
	deniedPerWindow = 30
	deniedWindow    = time.Hour
)

// denials is the audit rate limit's state.
type denials struct {
	mu         sync.Mutex
	start      time.Time
	n          int
	suppressed int
	total      *prometheus.CounterVec
}

// authed checks the bearer token and that its role has one of perms (nil
// perms: any valid token but an enroll token), then runs fn and writes
// its error, if any, as the API's JSON error. Every 401 and 403, from the
// check or from fn, and every enrollment refused for an enroll token's
// limits (403, 429) is audited as auth.denied (rate-limited).
func (a *apiState) authed(perms []auth.Permission, fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return a.authedWith(func(r *http.Request) (db.Token, error) { return a.authorize(r, perms) }, fn)
}

// authedDevice is authed for the routes of a device acting for itself
// (check, report): the credential comes from the credential index when
// it holds it, as a db.Token with only Role, DeviceID and ExpiresAt set.
func (a *apiState) authedDevice(fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	perms := []auth.Permission{auth.PermDevice}
	return a.authedWith(func(r *http.Request) (db.Token, error) {
		if tok, err := auth.FromHeader(r.Header.Get("Authorization")); err == nil {
			if c, ok := a.creds.Get(auth.Hash(tok)); ok && !(db.Token{ExpiresAt: c.ExpiresAt}).Expired(a.now()) {
				return db.Token{Role: auth.RoleDevice, DeviceID: c.DeviceID, ExpiresAt: c.ExpiresAt}, nil
			}
		}
		return a.authorize(r, perms)
	}, fn)
}

func (a *apiState) authedWith(authz func(*http.Request) (db.Token, error), fn func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, err := authz(r)
		if err == nil {
			r = r.WithContext(context.WithValue(r.Context(), tokenKey, t))
			err = fn(w, r)
		}
		if err != nil {
			var ae *api.Error
			if errors.As(err, &ae) && (ae.Code == api.CodeUnauthorized || ae.Code == api.CodeForbidden ||
				ae.Code == api.CodeEnrollCap || ae.Code == api.CodeEnrollRate) {
				if t.Name == "" && t.Role != "" {
					// From the credential index: the audit names the token.
					if full, ferr := a.authorize(r, nil); ferr == nil {
						t = full
					}
				}
				a.auditDenied(r, t, ae)
			}
			a.writeError(w, r, err)
		}
	})
}

// authorize answers 401 for a missing, malformed, unknown, revoked or
// expired token and 403 for a valid token whose role lacks the
// permission. An enroll token passes only where enrolling is the
// permission asked for.
func (a *apiState) authorize(r *http.Request, perms []auth.Permission) (db.Token, error) {
	tok, err := auth.FromHeader(r.Header.Get("Authorization"))
	if err != nil {
		return db.Token{}, api.Errorf(api.CodeUnauthorized, "a valid token is required (Authorization: Bearer …)")
	}
	t, err := a.lookupToken(r.Context(), auth.Hash(tok))
	if errors.Is(err, db.ErrNotFound) {
		return db.Token{}, refuse(tokenRequest, err, "unknown or revoked token")
	}
	if err != nil {
		return db.Token{}, fmt.Errorf("looking up token: %w", err)
	}
	if t.Expired(a.now()) {
		return t, api.Errorf(api.CodeUnauthorized, "token %s expired on %s", t.Name, t.ExpiresAt.UTC().Format(time.DateOnly))
	}
	if t.Role == auth.RoleEnroll && !slices.Contains(perms, auth.PermEnroll) {
		return t, api.Errorf(api.CodeForbidden, "an enroll token can only enroll a device")
	}
	if len(perms) == 0 {
		return t, nil
	}
	for _, p := range perms {
		if auth.Allowed(t.Role, p) {
			return t, nil
		}
	}
	return t, api.Errorf(api.CodeForbidden, "the %s role cannot do this", t.Role)
}

// forDevice checks that the request's device token may act for device
// id: it is bound to id, or it is bound to nothing yet and is bound to id
// now (the first id that uses a device token keeps it). Anything else is
// 403, and so is a device id an admin revoked.
func (a *apiState) forDevice(r *http.Request, id string) error {
	t, _ := r.Context().Value(tokenKey).(db.Token)
	if t.Role != auth.RoleDevice {
		return api.Errorf(api.CodeForbidden, "only a device credential can act for a device")
	}
	if t.DeviceID == "" && id != "" {
		bound, err := a.store.BindTokenDevice(r.Context(), t.ID, id, a.now())
		switch {
		case errors.Is(err, db.ErrConflict):
			return refuse(tokenRequest, err, "device %s was revoked; an admin must authorize it again", id)
		case errors.Is(err, db.ErrNotFound):
			return refuse(tokenRequest, err, "unknown or revoked token")
		case err != nil:
			return err
		}
		a.forgetTokens() // the cache holds it unbound
		if bound == id {
			a.log.Info("device token bound", zap.String("token", t.Name), zap.String("device", id))
		}
		t.DeviceID = bound
	}
	if t.DeviceID != id {
		return api.Errorf(api.CodeForbidden, "this credential belongs to another device, not %q", id)
	}
	return nil
}

// auditDenied records a denied request in the audit log, within the rate
// limit. Only the method and path are kept: queries and headers may carry
// secrets.
func (a *apiState) auditDenied(r *http.Request, t db.Token, ae *api.Error) {
	status := ae.Code.HTTPStatus()
	d := &a.denied
	d.total.WithLabelValues(strconv.Itoa(status)).Inc()
	now := a.now()
	d.mu.Lock()
	var suppressed int
	if now.Sub(d.start) >= deniedWindow || now.Before(d.start) {
		suppressed, d.suppressed = d.suppressed, 0
		d.start, d.n = now, 0
	}
	write := d.n < deniedPerWindow
	if write {
		d.n++
	} else {
		d.suppressed++
	}
	d.mu.Unlock()
	ctx := context.WithoutCancel(r.Context())
	if suppressed > 0 {
		detail, _ := json.Marshal(map[string]int{"suppressed": suppressed})
		if _, err := a.store.AppendAudit(ctx, db.Entry{Actor: "server", Action: "auth.denied.suppressed",
			Subject: "denied requests not audited one by one", Detail: string(detail), At: now}); err != nil {
			a.log.Error("auditing denied requests", zap.Error(err))
		}
	}
	if !write {
		return
	}
	who := "anonymous"
	if t.Name != "" {
		who = "token:" + t.Name
	}
	remote, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		remote = r.RemoteAddr
	}
	detail, _ := json.Marshal(map[string]any{"status": status, "code": ae.Code, "reason": ae.Message, "remote": remote})
	if _, err := a.store.AppendAudit(ctx, db.Entry{Actor: who, Action: "auth.denied",
		Subject: r.Method + " " + r.URL.Path, Detail: string(detail), At: now}); err != nil {
		a.log.Error("auditing a denied request", zap.Error(err))
	}
}

// authRoutes registers enrollment, credential rotation and the admins'
// device identity routes (internal/api admin.go), and the denial counter.
func (s *Server) authRoutes() {
	a := s.api
	a.denied.total = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mxos_api_denied_total",
		Help: "API requests refused for their credentials, by HTTP status (401, 403).",
	}, []string{"status"})
	a.metrics.reg.MustRegister(a.denied.total)
	p := api.Prefix
	h := func(pattern string, perm []auth.Permission, fn func(http.ResponseWriter, *http.Request) error) {
		s.mux.Handle(pattern, a.authed(perm, fn))
	}
	h("POST "+p+"/enroll", []auth.Permission{auth.PermEnroll}, a.handleEnroll)
	h("POST "+p+"/credential/rotate", []auth.Permission{auth.PermDevice}, a.handleRotate)
	h("GET "+p+"/identities", []auth.Permission{auth.PermReadDevices}, a.handleIdentities)
	h("GET "+p+"/devices/{id}/reports", []auth.Permission{auth.PermReadDevices}, a.handleDeviceReports)
	h("PUT "+p+"/identities/{id}", []auth.Permission{auth.PermManageDevices}, a.handleIdentityChange)
	h("DELETE "+p+"/identities/{id}", []auth.Permission{auth.PermManageDevices}, a.handleIdentityChange)
}

// newCredential makes a device credential for id.
func newCredential(id, by string, now time.Time) (db.Token, string, error) {
	plain, hash, err := auth.NewToken()
	if err != nil {
		return db.Token{}, "", err
	}
	tid := newID()
	return db.Token{ID: tid, Name: db.DeviceCredentialPrefix + id + "/" + tid, Role: auth.RoleDevice, Hash: hash,
		CreatedAt: now, CreatedBy: by, DeviceID: id, ExpiresAt: now.Add(auth.DeviceCredentialTTL)}, plain, nil
}

func (a *apiState) handleEnroll(w http.ResponseWriter, r *http.Request) error {
	var req api.EnrollRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	now, who := a.now(), actor(r)
	cred, plain, err := newCredential(req.DeviceID, who, now)
	if err != nil {
		return err
	}
	err = a.store.Tx(r.Context(), func(tx *db.Tx) error {
		enrollTok, _ := r.Context().Value(tokenKey).(db.Token)
		if err := enrollLimits(r.Context(), tx, who, enrollTok.MaxDevices, req.DeviceID, now); err != nil {
			return err
		}
		if err := tx.EnrollDevice(r.Context(), cred, who); err != nil {
			return err
		}
		detail, _ := json.Marshal(map[string]string{"credential": cred.ID, "expires": cred.ExpiresAt.UTC().Format(time.RFC3339)})
		_, err := tx.AppendAudit(r.Context(), db.Entry{Actor: who, Action: "device.enroll", Subject: req.DeviceID, Detail: string(detail), At: now})
		return err
	})
	var ae *api.Error
	if errors.As(err, &ae) && ae.Code == api.CodeEnrollRate {
		w.Header().Set("Retry-After", strconv.Itoa(int(EnrollWindow/time.Second)))
	}
	if errors.Is(err, db.ErrConflict) {
		return refuse(enrollRequest, err, "device %s is already enrolled, known or revoked; an admin must authorize it to enroll again (mxosctl devices authorize %s)", req.DeviceID, req.DeviceID)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, api.Credential{DeviceID: req.DeviceID, Token: plain, ExpiresAt: cred.ExpiresAt})
	return nil
}

// Enrollment limits per enroll token. The token is baked into images, so
// whoever copies it can enroll invented ids; the limits bound how many.
const (
	// EnrollCap is how many devices one enroll token enrolls in its life,
	// unless made with another cap (--max-devices).
	EnrollCap = 500
	// EnrollPerWindow enrollments per EnrollWindow: a school's machines
	// imaged on one day (a few labs at once) enroll without waiting; a
	// script cannot spend the cap in one go, and admins have time to see
	// the device.enroll entries in the audit log.
	EnrollPerWindow = 250
	EnrollWindow    = time.Hour
)

// enrollLimits refuses an enrollment of id by the enroll token who (its
// audit name) past its cap (maxDevices; 0 is EnrollCap) or
// EnrollPerWindow. An id an admin authorized is never refused for the
// limits: an admin vouched for it.
func enrollLimits(ctx context.Context, tx *db.Tx, who string, maxDevices int, id string, now time.Time) error {
	if maxDevices <= 0 {
		maxDevices = EnrollCap
	}
	if st, err := tx.IdentityState(ctx, id); err != nil || st == db.IdentityAuthorized {
		return err
	}
	total, err := tx.CountEnrollments(ctx, who, time.Time{})
	if err != nil {
		return err
	}
	if total >= maxDevices {
		return api.Errorf(api.CodeEnrollCap, "this enroll token has enrolled its %d devices; make a new one (mxosctl token create --role enroll --max-devices N) or authorize the device (mxosctl devices authorize ID)", maxDevices)
	}
	recent, err := tx.CountEnrollments(ctx, who, now.Add(-EnrollWindow))
	if err != nil {
		return err
	}
	if recent >= EnrollPerWindow {
		return api.Errorf(api.CodeEnrollRate, "this enroll token enrolled %d devices in the last %s; try again later", recent, EnrollWindow)
	}
	return nil
}

// handleRotate gives a device a new credential; the one it used stays
// valid for auth.RotationGrace, so an answer lost on the way can be asked
// for again.
func (a *apiState) handleRotate(w http.ResponseWriter, r *http.Request) error {
	if r.ContentLength > 0 {
		var empty struct{}
		if err := decode(w, r, &empty); err != nil {
			return err
		}
	}
	old, _ := r.Context().Value(tokenKey).(db.Token)
	if old.DeviceID == "" {
		return api.Errorf(api.CodeConflict, "this device token is not bound to a device yet: check for updates first")
	}
	now := a.now()
	next, plain, err := newCredential(old.DeviceID, "token:"+old.Name, now)
	if err != nil {
		return err
	}
	err = a.store.Tx(r.Context(), func(tx *db.Tx) error {
		if err := tx.RotateDeviceCredential(r.Context(), old, next, auth.RotationGrace); err != nil {
			return err
		}
		detail, _ := json.Marshal(map[string]string{"old": old.ID, "new": next.ID})
		_, err := tx.AppendAudit(r.Context(), db.Entry{Actor: actor(r), Action: "device.rotate", Subject: old.DeviceID, Detail: string(detail), At: now})
		return err
	})
	if errors.Is(err, db.ErrConflict) {
		return refuse(tokenRequest, err, "device %s was revoked", old.DeviceID)
	}
	if err != nil {
		return err
	}
	a.creds.Drop(old.Hash) // its life was cut: read it again
	a.tokensChanged(r.Context())
	writeJSON(w, http.StatusCreated, api.Credential{DeviceID: old.DeviceID, Token: plain, ExpiresAt: next.ExpiresAt})
	return nil
}

func toAPIIdentity(d db.DeviceIdentity) api.DeviceIdentity {
	return api.DeviceIdentity{DeviceID: d.DeviceID, State: string(d.State), UpdatedAt: d.UpdatedAt, UpdatedBy: d.UpdatedBy,
		Credentials: d.Credentials, CredentialExpires: d.CredentialExpires}
}

func (a *apiState) handleIdentities(w http.ResponseWriter, r *http.Request) error {
	ids, err := a.store.ListDeviceIdentities(r.Context())
	if err != nil {
		return err
	}
	writeList(w, ids, toAPIIdentity)
	return nil
}

// handleIdentityChange authorizes (PUT) or revokes (DELETE) a device id.
func (a *apiState) handleIdentityChange(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := (&api.EnrollRequest{DeviceID: id}).Validate(); err != nil {
		return err
	}
	now, who := a.now(), actor(r)
	action := "device.authorize"
	if r.Method == http.MethodDelete {
		action = "device.revoke"
	}
	var n int
	err := a.store.Tx(r.Context(), func(tx *db.Tx) error {
		var err error
		if action == "device.revoke" {
			n, err = tx.RevokeDevice(r.Context(), id, who, now)
		} else {
			n, err = tx.AuthorizeDevice(r.Context(), id, who, now)
		}
		if err != nil {
			return err
		}
		detail, _ := json.Marshal(map[string]int{"credentials_revoked": n})
		_, err = tx.AppendAudit(r.Context(), db.Entry{Actor: who, Action: action, Subject: id, Detail: string(detail), At: now})
		return err
	})
	if err != nil {
		return err
	}
	a.creds.DropDevice(id)
	a.tokensChanged(r.Context())
	st := db.IdentityAuthorized
	if action == "device.revoke" {
		st = db.IdentityRevoked
	}
	writeJSON(w, http.StatusOK, api.DeviceIdentity{DeviceID: id, State: string(st), UpdatedAt: now, UpdatedBy: who, Revoked: n})
	return nil
}

// handleDeviceReports shows a device's latest reports, every class
// included: refusals and download errors are shown even though they never
// count toward auto-halt.
func (a *apiState) handleDeviceReports(w http.ResponseWriter, r *http.Request) error {
	limit := 100
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return api.Errorf(api.CodeBadRequest, "limit must be 1 to 1000")
		}
		limit = n
	}
	reps, err := a.store.DeviceReports(r.Context(), r.PathValue("id"), limit)
	if err != nil {
		return err
	}
	writeList(w, reps, func(rep db.Report) api.DeviceReport {
		return api.DeviceReport{RolloutID: rep.RolloutID, Version: rep.Version, Event: rep.Event, Counted: rep.Event.ReleaseFailure(),
			Error: rep.Error, At: rep.At, Seq: rep.Seq}
	})
	return nil
}
