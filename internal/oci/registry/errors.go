package registry

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/mxos-linux/mxos-update/internal/oci/content"
)

// ErrorCode is one of the distribution spec's error codes; clients match
// on them, so they never change.
type ErrorCode string

// The spec's error codes (distribution-spec, "Error Codes").
const (
	CodeBlobUnknown         ErrorCode = "BLOB_UNKNOWN"
	CodeBlobUploadInvalid   ErrorCode = "BLOB_UPLOAD_INVALID"
	CodeBlobUploadUnknown   ErrorCode = "BLOB_UPLOAD_UNKNOWN"
	CodeDigestInvalid       ErrorCode = "DIGEST_INVALID"
	CodeManifestBlobUnknown ErrorCode = "MANIFEST_BLOB_UNKNOWN"
	CodeManifestInvalid     ErrorCode = "MANIFEST_INVALID"
	CodeManifestUnknown     ErrorCode = "MANIFEST_UNKNOWN"
	CodeNameInvalid         ErrorCode = "NAME_INVALID"
	CodeNameUnknown         ErrorCode = "NAME_UNKNOWN"
	CodeSizeInvalid         ErrorCode = "SIZE_INVALID"
	CodeUnauthorized        ErrorCode = "UNAUTHORIZED"
	CodeDenied              ErrorCode = "DENIED"
	CodeUnsupported         ErrorCode = "UNSUPPORTED"
	// The spec spells it without underscores.
	CodeTooManyRequests ErrorCode = "TOOMANYREQUESTS"
)

// Sentinels for callers of the Go API (errors.Is).
var (
	// ErrNotFound: unknown repository, tag, manifest, blob or upload
	// (content.ErrNotFound, shared with the other content stores).
	ErrNotFound = content.ErrNotFound
	// ErrInvalid: the caller's input was refused (bad name, digest,
	// manifest, size, range).
	ErrInvalid = content.ErrInvalid
	// ErrUnauthorized is what an Authorize function returns when the
	// request carries no valid credentials: the handler answers 401 with
	// a Basic challenge (content.ErrUnauthorized, which the remote client
	// reports for a 401 too).
	ErrUnauthorized = content.ErrUnauthorized
	// ErrDenied is what an Authorize function returns for valid
	// credentials that may not write: the handler answers 403 DENIED
	// (content.ErrDenied).
	ErrDenied = content.ErrDenied
)

// Error is a refusal with its spec code and HTTP status. Its message is
// short and safe to show to the client.
type Error struct {
	Code    ErrorCode
	Status  int
	Message string
	Detail  any
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Is makes the codes match the package sentinels.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		switch e.Code {
		case CodeBlobUnknown, CodeBlobUploadUnknown, CodeManifestUnknown, CodeNameUnknown:
			return true
		}
	case ErrInvalid:
		switch e.Code {
		case CodeBlobUploadInvalid, CodeDigestInvalid, CodeManifestBlobUnknown, CodeManifestInvalid,
			CodeNameInvalid, CodeSizeInvalid, CodeUnsupported:
			return true
		}
	}
	return false
}

var defaultStatus = map[ErrorCode]int{
	CodeBlobUnknown:         http.StatusNotFound,
	CodeBlobUploadInvalid:   http.StatusBadRequest,
	CodeBlobUploadUnknown:   http.StatusNotFound,
	CodeDigestInvalid:       http.StatusBadRequest,
	CodeManifestBlobUnknown: http.StatusBadRequest,
	CodeManifestInvalid:     http.StatusBadRequest,
	CodeManifestUnknown:     http.StatusNotFound,
	CodeNameInvalid:         http.StatusBadRequest,
	CodeNameUnknown:         http.StatusNotFound,
	CodeSizeInvalid:         http.StatusBadRequest,
	CodeUnauthorized:        http.StatusUnauthorized,
	CodeDenied:              http.StatusForbidden,
	CodeUnsupported:         http.StatusMethodNotAllowed,
	CodeTooManyRequests:     http.StatusTooManyRequests,
}

// errorf builds an Error with the code's usual status.
func errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Status: defaultStatus[code], Message: fmt.Sprintf(format, args...)}
}

func (e *Error) withStatus(status int) *Error { e.Status = status; return e }

func (e *Error) withDetail(d any) *Error { e.Detail = d; return e }

type wireError struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
	Detail  any       `json:"detail,omitempty"`
}

func writeErr(w http.ResponseWriter, e *Error) {
	b, _ := json.Marshal(struct {
		Errors []wireError `json:"errors"`
	}{[]wireError{{Code: e.Code, Message: e.Message, Detail: e.Detail}}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(e.Status)
	_, _ = w.Write(append(b, '\n'))
}
