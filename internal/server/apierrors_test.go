package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// TestErrorCodes: the one table from domain errors to API codes, per
// scope, with errors wrapped as handlers and the store wrap them.
func TestErrorCodes(t *testing.T) {
	cases := []struct {
		scope errScope
		err   error
		want  api.Code // CodeInternal: no row (writeError answers 500)
	}{
		{anyRequest, db.ErrNotFound, api.CodeNotFound},
		{anyRequest, db.ErrReplay, api.CodeReplay},
		{anyRequest, db.ErrVersionOrder, api.CodeVersionOrder},
		{anyRequest, db.ErrDuplicate, api.CodeDuplicate},
		{anyRequest, db.ErrConflict, api.CodeConflict},
		{anyRequest, db.ErrInvalid, api.CodeBadRequest},
		{anyRequest, rollout.ErrIllegalTransition, api.CodeRolloutState},
		// A corrupt or oversized object outside an upload is the server's
		// own repository: an internal error, not the client's.
		{anyRequest, ostree.ErrCorrupt, api.CodeInternal},
		{anyRequest, ostree.ErrTooLarge, api.CodeInternal},
		{anyRequest, errors.New("disk on fire"), api.CodeInternal},

		{uploadRequest, ostree.ErrTooLarge, api.CodeTooLarge},
		{uploadRequest, ostree.ErrCorrupt, api.CodeBadRequest},
		{uploadRequest, ostree.ErrBadName, api.CodeBadRequest},
		{uploadRequest, ostree.ErrNoUpload, api.CodeNotFound},
		{uploadRequest, db.ErrNotFound, api.CodeInternal},

		{releaseRequest, db.ErrDuplicate, api.CodeDuplicateVersion},
		{releaseRequest, db.ErrVersionOrder, api.CodeVersionOrder},
		{releaseRequest, db.ErrConflict, api.CodeConflict},

		{tokenRequest, db.ErrNotFound, api.CodeUnauthorized},
		{tokenRequest, db.ErrConflict, api.CodeForbidden},

		{enrollRequest, db.ErrConflict, api.CodeEnrolled},
		{enrollRequest, db.ErrNotFound, api.CodeInternal},
	}
	for _, tc := range cases {
		err := fmt.Errorf("doing something: %w", tc.err)
		got, ok := codeOf(tc.scope, err)
		if got != tc.want || ok != (tc.want != api.CodeInternal) {
			t.Errorf("scope %d, %v: code %s (%v), want %s", tc.scope, tc.err, got, ok, tc.want)
		}
		if r := refuse(tc.scope, err, "refused"); (r == nil) != (tc.want == api.CodeInternal) {
			t.Errorf("scope %d, %v: refuse = %v", tc.scope, tc.err, r)
		} else if r != nil && !errors.Is(r, &api.Error{Code: tc.want}) {
			t.Errorf("scope %d, %v: refuse = %v, want code %s", tc.scope, tc.err, r, tc.want)
		}
	}
}

// TestWriteError: what a client sees for a domain error, an *api.Error
// and an unexpected error (no detail leaks).
func TestWriteError(t *testing.T) {
	a := &apiState{log: zap.NewNop()}
	cases := []struct {
		err        error
		status     int
		code       api.Code
		msgHas     string
		msgHasNone string
	}{
		{fmt.Errorf("pin school-1: %w", db.ErrNotFound), http.StatusNotFound, api.CodeNotFound, "pin school-1", ""},
		{fmt.Errorf("report 3: %w", db.ErrReplay), http.StatusConflict, api.CodeReplay, "report 3", ""},
		{fmt.Errorf("halt: %w", rollout.ErrIllegalTransition), http.StatusConflict, api.CodeRolloutState, "halt", ""},
		{api.Errorf(api.CodeForbidden, "no"), http.StatusForbidden, api.CodeForbidden, "no", ""},
		{fmt.Errorf("open /secret/path: %w", ostree.ErrCorrupt), http.StatusInternalServerError, api.CodeInternal, "internal error", "/secret/path"},
	}
	for _, tc := range cases {
		rec := httptest.NewRecorder()
		a.writeError(rec, httptest.NewRequest("GET", "/api/v1/x", nil), tc.err)
		var body api.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == nil {
			t.Fatalf("%v: body %q: %v", tc.err, rec.Body, err)
		}
		if rec.Code != tc.status || body.Error.Code != tc.code || !strings.Contains(body.Error.Message, tc.msgHas) ||
			(tc.msgHasNone != "" && strings.Contains(body.Error.Message, tc.msgHasNone)) {
			t.Errorf("%v: %d %+v, want %d %s with %q", tc.err, rec.Code, body.Error, tc.status, tc.code, tc.msgHas)
		}
	}
}

// TestErrorMessagesByLanguage: the API answers its error messages in
// es-MX when Accept-Language prefers Spanish, in English otherwise, with
// the same code and status.
func TestErrorMessagesByLanguage(t *testing.T) {
	a := &apiState{log: zap.NewNop()}
	for _, tc := range []struct {
		lang string
		err  error
		want string
	}{
		{"", api.Errorf(api.CodeUnknownChannel, "unknown channel %q", "beta"), `unknown channel "beta"`},
		{"en-US,es;q=0.5", api.Errorf(api.CodeUnknownChannel, "unknown channel %q", "beta"), `unknown channel "beta"`},
		{"es-MX,es;q=0.9", api.Errorf(api.CodeUnknownChannel, "unknown channel %q", "beta"), `canal desconocido "beta"`},
		{"es", api.Errorf(api.CodeForbidden, "the %s role cannot do this", "admin"), "el rol admin no puede hacer esto"},
		{"es", fmt.Errorf("open /secret: %w", ostree.ErrCorrupt), "error interno"},
		{"es", api.Errorf(api.CodeBadRequest, "a message the catalog lacks %d", 7), "a message the catalog lacks 7"},
	} {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest("GET", "/api/v1/x", nil)
		if tc.lang != "" {
			r.Header.Set("Accept-Language", tc.lang)
		}
		a.writeError(rec, r, tc.err)
		var body api.ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == nil {
			t.Fatalf("%v: body %q: %v", tc.err, rec.Body, err)
		}
		var ae *api.Error
		if errors.As(tc.err, &ae) && (body.Error.Code != ae.Code || rec.Code != ae.Code.HTTPStatus()) {
			t.Errorf("%s %v: %d %s, want the code %s unchanged", tc.lang, tc.err, rec.Code, body.Error.Code, ae.Code)
		}
		if body.Error.Message != tc.want {
			t.Errorf("Accept-Language %q, %v: message %q, want %q", tc.lang, tc.err, body.Error.Message, tc.want)
		}
	}
}
