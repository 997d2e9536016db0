package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/changefeed"
	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/credindex"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/i18n"
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
	// creds holds every live bound device credential (internal/credindex):
	// a device's check or report reads no token row.
	creds *credindex.Index
	// changes follows the cache change feed (changes.go): pins, rollouts,
	// releases and groups changed through any replica.
	changes *changefeed.Follower

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
	ticket := a.creds.Begin()
	t, err := a.store.TokenByHash(ctx, hash)
	if err != nil {
		return t, err
	}
	if t.Role == auth.RoleDevice && t.DeviceID != "" {
		a.creds.Add(ticket, hash, credindex.Credential{DeviceID: t.DeviceID, ExpiresAt: t.ExpiresAt})
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

// tokensChanged is called after this server revoked tokens or cut their
// lives (and dropped them from the credential index itself, whatever
// the clock): the next request already sees the change, and the feed is
// read at once for changes made elsewhere.
func (a *apiState) tokensChanged(ctx context.Context) {
	a.forgetTokens()
	if err := a.creds.Sync(context.WithoutCancel(ctx)); err != nil {
		// The index stops answering until a Sync succeeds: nothing
		// revoked is accepted meanwhile.
		a.log.Warn("reading token changes", zap.Error(err))
	}
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
	rel := []auth.Permission{auth.PermRollout}
	adm := []auth.Permission{auth.PermPin}
	// A device's check and report need only its credential's binding and
	// expiry, which the credential index holds.
	s.mux.Handle("POST "+p+"/check", a.authedDevice(a.handleCheck))
	s.mux.Handle("POST "+p+"/report", a.authedDevice(a.handleReport))
	h("GET "+p+"/channels", []auth.Permission{auth.PermReadChannels}, a.handleChannels)
	h("GET "+p+"/rollouts", []auth.Permission{auth.PermRollout, auth.PermReadAudit}, a.handleRollouts)
	h("POST "+p+"/rollouts", rel, a.handleRolloutStart)
	h("POST "+p+"/rollouts/{id}/{action}", rel, a.handleRolloutAction)
	h("GET "+p+"/pins", adm, a.handlePins)
	h("PUT "+p+"/pins", adm, a.handleSetPin)
	h("DELETE "+p+"/pins/{scope}/{target}", adm, a.handleDeletePin)
	h("GET "+p+"/devices", []auth.Permission{auth.PermReadDevices}, a.handleDevices)
	h("PUT "+p+"/devices/{id}/group", adm, a.handleSetGroup)
	h("POST "+p+"/images", []auth.Permission{auth.PermPublish}, a.handleImageImport) // api_images.go
	h("GET "+p+"/reports/timeline", []auth.Permission{auth.PermRollout, auth.PermReadDevices}, a.handleReportTimeline)
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

// writeError maps domain errors to the API's stable codes (errorCodes,
// apierrors.go). Unexpected
// errors are logged and answered without detail.
func (a *apiState) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *api.Error
	if !errors.As(err, &ae) {
		if code, ok := codeOf(anyRequest, err); ok {
			ae = api.Errorf(code, "%s", err.Error())
		} else {
			a.log.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
			ae = api.Errorf(api.CodeInternal, "internal error")
		}
	}
	writeJSON(w, ae.Code.HTTPStatus(), api.ErrorBody{Error: localize(r, ae)})
}

// localize answers ae's message in the language the request's
// Accept-Language asks for (es-MX or English), through the i18n catalog;
// a message the catalog lacks stays in English. The code never changes.
func localize(r *http.Request, ae *api.Error) *api.Error {
	p := i18n.AcceptLanguage(r.Header.Get("Accept-Language"))
	format, args := ae.Format()
	if !p.Spanish() || format == "" || !i18n.Has(format) {
		return ae
	}
	return &api.Error{Code: ae.Code, Message: p.T(format, slices.Clone(args)...)}
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
