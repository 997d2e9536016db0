package server

import (
	"errors"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// errScope is the kind of request an error happened in. The same domain
// error can mean different things: a corrupt ostree object is the
// client's fault while it uploads and the server's anywhere else, and a
// conflict on a device id refuses the device rather than reporting a
// race.
type errScope int

const (
	// anyRequest: what writeError applies to whatever a handler returns.
	anyRequest errScope = iota
	// uploadRequest: the bytes of an upload session (publish.go).
	uploadRequest
	// releaseRequest: recording a release and its rollout (publish.go).
	releaseRequest
	// tokenRequest: finding a token, binding it to a device id or
	// rotating a device credential (auth.go).
	tokenRequest
	// enrollRequest: enrolling a device with an enroll token (auth.go).
	enrollRequest
)

// errorCodes is the update and admin API's one mapping from domain errors
// to its error codes (api.Code.HTTPStatus gives the HTTP status). Within
// a scope the first matching row wins. Handlers choose the message; the
// code comes from here.
var errorCodes = []struct {
	scope errScope
	err   error
	code  api.Code
}{
	{anyRequest, db.ErrNotFound, api.CodeNotFound},
	{anyRequest, db.ErrReplay, api.CodeReplay},
	{anyRequest, db.ErrVersionOrder, api.CodeVersionOrder},
	{anyRequest, db.ErrDuplicate, api.CodeDuplicate},
	{anyRequest, db.ErrConflict, api.CodeConflict},
	{anyRequest, db.ErrInvalid, api.CodeBadRequest},
	{anyRequest, rollout.ErrIllegalTransition, api.CodeRolloutState},

	{uploadRequest, ostree.ErrTooLarge, api.CodeTooLarge},
	{uploadRequest, ostree.ErrCorrupt, api.CodeBadRequest},
	{uploadRequest, ostree.ErrBadName, api.CodeBadRequest},
	{uploadRequest, ostree.ErrNoUpload, api.CodeNotFound},

	{releaseRequest, db.ErrDuplicate, api.CodeDuplicateVersion},
	{releaseRequest, db.ErrVersionOrder, api.CodeVersionOrder},
	{releaseRequest, db.ErrConflict, api.CodeConflict},

	{tokenRequest, db.ErrNotFound, api.CodeUnauthorized},
	{tokenRequest, db.ErrConflict, api.CodeForbidden},

	{enrollRequest, db.ErrConflict, api.CodeEnrolled},
}

// codeOf returns the code errorCodes gives err in scope, and false when
// no row of that scope matches.
func codeOf(scope errScope, err error) (api.Code, bool) {
	for _, row := range errorCodes {
		if row.scope == scope && errors.Is(err, row.err) {
			return row.code, true
		}
	}
	return api.CodeInternal, false
}

// refuse is the *api.Error for err in scope with the handler's message, or
// nil when errorCodes has no row for it (the caller then returns err as
// it is, and writeError applies the anyRequest rows or answers
// "internal error").
func refuse(scope errScope, err error, format string, args ...any) error {
	code, ok := codeOf(scope, err)
	if !ok {
		return nil
	}
	return api.Errorf(code, format, args...)
}
