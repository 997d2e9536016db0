// Package api holds the wire types and stable error codes shared by the
// server, mxosctl and the device updater. It is plain data: JSON shapes,
// no behaviour beyond validation, and nothing but the standard library, so
// the device side can import it without pulling in server code.
//
// Error responses are always {"error": {"code": "...", "message": "..."}};
// clients branch on Code, never on Message, which may be translated.
package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/mxos-linux/mxos-update/internal/event"
)

// Code is a stable, machine-readable error code.
type Code string

// Error codes. Adding is fine; renaming breaks clients in the field.
const (
	CodeBadRequest       Code = "bad_request"
	CodeTooLarge         Code = "too_large"
	CodeUnauthorized     Code = "unauthorized"
	CodeForbidden        Code = "forbidden"
	CodeNotFound         Code = "not_found"
	CodeUnknownChannel   Code = "unknown_channel"
	CodeUnknownArch      Code = "unknown_arch"
	CodeDuplicate        Code = "duplicate"
	CodeDuplicateVersion Code = "duplicate_version"
	CodeVersionOrder     Code = "version_order"
	CodePromotion        Code = "promotion_not_allowed"
	CodeRolloutState     Code = "rollout_state"
	CodeConflict         Code = "conflict"
	// CodeReplay: a report's sequence number is not above the last one
	// accepted from the device (a replay, or a device whose counter went
	// back).
	CodeReplay Code = "replayed"
	// CodeEnrolled: the device id already enrolled (or was revoked); an
	// admin must authorize it before it enrolls again.
	CodeEnrolled Code = "already_enrolled"
	// CodeEnrollCap, CodeEnrollRate: the enroll token reached its cap on enrolled
	// devices (403) or its hourly enrollment rate (429, with Retry-After).
	CodeEnrollCap  Code = "enroll_cap_reached"
	CodeEnrollRate Code = "enroll_rate_limited"
	CodeInternal   Code = "internal"
	// CodeUnavailable: a service the request needs did not answer (the
	// transparency log's witnesses); the same request may succeed later.
	CodeUnavailable Code = "unavailable"
)

// HTTPStatus is the status a code is served with.
func (c Code) HTTPStatus() int {
	switch c {
	case CodeBadRequest, CodeUnknownChannel, CodeUnknownArch:
		return http.StatusBadRequest
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeForbidden, CodeEnrollCap:
		return http.StatusForbidden
	case CodeEnrollRate:
		return http.StatusTooManyRequests
	case CodeNotFound:
		return http.StatusNotFound
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	case CodeDuplicate, CodeDuplicateVersion, CodeVersionOrder, CodePromotion, CodeRolloutState, CodeConflict, CodeFleetLockBusy,
		CodeReplay, CodeEnrolled:
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// Error is an API error; it is also the error type clients return.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Is lets errors.Is match on the code alone.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Message == "" || t.Message == e.Message)
}

// Errorf builds an *Error.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// CheckRequest is what a device sends to ask for an update. Devices
// register by checking: the first check creates the device.
type CheckRequest struct {
	DeviceID     string `json:"device_id"`
	Arch         string `json:"arch"`
	Channel      string `json:"channel"`
	BootedCommit string `json:"booted_commit"`
	Version      string `json:"version"`
	Group        string `json:"group,omitempty"`
}

// Validate checks the fields every check must carry.
func (r *CheckRequest) Validate() error {
	switch {
	case r.DeviceID == "" || len(r.DeviceID) > 128:
		return Errorf(CodeBadRequest, "device_id must be 1 to 128 characters")
	case r.Arch == "":
		return Errorf(CodeBadRequest, "arch is required")
	case r.Channel == "":
		return Errorf(CodeBadRequest, "channel is required")
	case r.BootedCommit != "" && !isHex64(r.BootedCommit):
		return Errorf(CodeBadRequest, "booted_commit must be 64 hex digits")
	}
	return nil
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Target is a release a device should move to.
type Target struct {
	Channel   string `json:"channel"`
	Arch      string `json:"arch"`
	Version   string `json:"version"`
	Ref       string `json:"ref"`
	Commit    string `json:"commit"`
	OCIDigest string `json:"oci_digest,omitempty"`
	RolloutID string `json:"rollout_id,omitempty"`
}

// CheckResponse answers a check: an update (Target set) or none, and why.
// Reason is one of the rollout decision codes ("eligible", "not-yet",
// "paused", "halted", "rolled-back", "up-to-date", "pinned", ...).
type CheckResponse struct {
	Update bool    `json:"update"`
	Target *Target `json:"target,omitempty"`
	Reason string  `json:"reason"`
}

// Event is a step a device reports, or how an update ended. Package
// event owns the list and which events count toward auto-halt; the names
// below are the wire package's spelling of the same values.
type Event = event.Event

// Events devices report (see package event for what each means).
const (
	EventDownloadStarted  = event.DownloadStarted
	EventDownloadFinished = event.DownloadFinished
	EventDeployed         = event.Deployed
	EventHealthOK         = event.HealthOK
	EventRolledBack       = event.RolledBack
	EventHealthFailed     = event.HealthFailed
	EventBootFailed       = event.BootFailed
	EventRefused          = event.Refused
	EventDownloadFailed   = event.DownloadFailed
	EventConfigError      = event.ConfigError
	EventFailed           = event.Failed
)

// Events lists every event.
var Events = event.All

// ReleaseFailures lists the events that count toward auto-halt.
var ReleaseFailures = event.ReleaseFailures

// ReportRequest is one event from a device.
//
// Seq is the device's report sequence number: each report must carry a
// larger one than the last the server accepted from that device, so a
// replayed report is refused (CodeReplay). The agent uses the larger of
// its last number plus one and the Unix time in microseconds, so a device
// that lost its counter still moves forward.
type ReportRequest struct {
	DeviceID  string    `json:"device_id"`
	Seq       int64     `json:"seq"`
	RolloutID string    `json:"rollout_id,omitempty"`
	Version   string    `json:"version"`
	Event     Event     `json:"event"`
	Error     string    `json:"error,omitempty"`
	At        time.Time `json:"at,omitzero"`
}

// Validate checks a report.
func (r *ReportRequest) Validate() error {
	switch {
	case r.DeviceID == "" || len(r.DeviceID) > 128:
		return Errorf(CodeBadRequest, "device_id must be 1 to 128 characters")
	case !r.Event.Valid():
		return Errorf(CodeBadRequest, "unknown event %q", r.Event)
	case r.Version == "":
		return Errorf(CodeBadRequest, "version is required")
	case r.Seq < 1:
		return Errorf(CodeBadRequest, "seq must be a positive sequence number")
	case len(r.Error) > 4096:
		return Errorf(CodeTooLarge, "error text is longer than 4096 bytes")
	}
	return nil
}
