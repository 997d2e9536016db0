package channelmeta

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// Error kinds. Every error from this package that is about the metadata
// itself wraps exactly one of them, so callers (the updater's state machine,
// mxosctl, the server) can decide with errors.Is whether to retry, alert or
// refuse, without parsing messages.
var (
	// ErrExpired: a role's signed expiry is in the past (freeze attack, a
	// server that stopped refreshing, or a device clock far ahead).
	ErrExpired = errors.New("channel metadata expired")
	// ErrRollback: a role's version is older than one already trusted, or
	// does not match the version the snapshot/timestamp pins.
	ErrRollback = errors.New("channel metadata version rollback or mismatch")
	// ErrBadSignature: a role is not signed by a threshold of the keys its
	// delegator names (e.g. targets signed by the online key).
	ErrBadSignature = errors.New("channel metadata not signed by the required keys")
	// ErrHashMismatch: bytes differ from the length/hashes signed for them.
	ErrHashMismatch = errors.New("channel metadata does not match its signed length or hashes")
	// ErrMalformed: not parseable, wrong type, or content violating the
	// record rules (path/record mismatch, bad commit checksum, …).
	ErrMalformed = errors.New("malformed channel metadata")
	// ErrTooLarge: a file exceeds its size limit; it was not read further.
	ErrTooLarge = errors.New("channel metadata file too large")
	// ErrFetch: the transport failed (network, HTTP status, missing file).
	ErrFetch = errors.New("fetching channel metadata failed")
	// ErrRejected: any other refusal by the TUF client workflow.
	ErrRejected = errors.New("channel metadata rejected")

	// ErrNotSigned: an offered release is not in the release-signed targets
	// for its channel and arch.
	ErrNotSigned = errors.New("release is not in the signed channel metadata")
	// ErrCommitMismatch: the offered commit differs from the signed one.
	ErrCommitMismatch = errors.New("offered commit differs from the signed release")
	// ErrRefMismatch: the offered OSTree ref differs from the signed one.
	ErrRefMismatch = errors.New("offered ref differs from the signed release")
	// ErrDigestMismatch: the offered OCI digest differs from the signed one.
	ErrDigestMismatch = errors.New("offered OCI digest differs from the signed release")
)

// MetadataError is what Client.Load returns when verification fails. It
// unwraps to both its Kind (one of the Err* values above) and the
// underlying error, so go-tuf's own types stay reachable with errors.As
// (e.g. *metadata.ErrExpiredMetadata).
//
// Beware when matching go-tuf errors with errors.Is: their Is methods
// compare types only, so errors.Is(err, &metadata.ErrExpiredMetadata{Msg:
// "anything"}) is true for every expiry. Check Error() text if it matters.
type MetadataError struct {
	// File is the last metadata file fetched before the failure (e.g.
	// "3.snapshot.json"); the failure is about it or the role it completes.
	File string
	Kind error
	Err  error
}

func (e *MetadataError) Error() string {
	if e.File == "" {
		return fmt.Sprintf("%v: %v", e.Kind, e.Err)
	}
	return fmt.Sprintf("%v (after fetching %s): %v", e.Kind, e.File, e.Err)
}

// Unwrap returns both the kind and the cause.
func (e *MetadataError) Unwrap() []error { return []error{e.Kind, e.Err} }

// KindOf maps an error from go-tuf (or from our fetchers and record
// checks) to one of the Err* kinds. It uses errors.As on concrete types,
// not errors.Is, because go-tuf's Is methods treat subtypes as equal
// (ErrExpiredMetadata "is" ErrRepository) and we want the most specific.
func KindOf(err error) error {
	for _, k := range []error{ErrExpired, ErrRollback, ErrBadSignature, ErrHashMismatch, ErrMalformed, ErrTooLarge, ErrFetch, ErrRejected} {
		if errors.Is(err, k) {
			return k
		}
	}
	var (
		expired   *metadata.ErrExpiredMetadata
		badVer    *metadata.ErrBadVersionNumber
		unsigned  *metadata.ErrUnsignedMetadata
		hashErr   *metadata.ErrLengthOrHashMismatch
		tooLarge  *metadata.ErrDownloadLengthMismatch
		httpErr   *metadata.ErrDownloadHTTP
		dlErr     *metadata.ErrDownload
		valErr    *metadata.ErrValue
		typeErr   *metadata.ErrType
		synErr    *json.SyntaxError
		umErr     *json.UnmarshalTypeError
		repoErr   *metadata.ErrRepository
		fetchFail *fetchError
	)
	switch {
	case errors.As(err, &expired):
		return ErrExpired
	case errors.As(err, &badVer):
		return ErrRollback
	case errors.As(err, &unsigned):
		return ErrBadSignature
	case errors.As(err, &hashErr):
		return ErrHashMismatch
	case errors.As(err, &tooLarge):
		return ErrTooLarge
	case errors.As(err, &httpErr), errors.As(err, &dlErr), errors.As(err, &fetchFail):
		return ErrFetch
	case errors.As(err, &valErr), errors.As(err, &typeErr), errors.As(err, &synErr),
		errors.As(err, &umErr), errors.Is(err, io.ErrUnexpectedEOF):
		return ErrMalformed
	case errors.As(err, &repoErr):
		return ErrRejected
	}
	return ErrRejected
}

// fetchError is a transport failure from our fetchers (kept distinct from
// go-tuf's ErrDownloadHTTP, which the updater interprets: a 404 on the next
// root version means "no rotation").
type fetchError struct {
	url string
	err error
}

func (e *fetchError) Error() string { return fmt.Sprintf("fetch %s: %v", e.url, e.err) }
func (e *fetchError) Unwrap() error { return e.err }

// malformedf builds an ErrMalformed error.
func malformedf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}
