package publish

import (
	"errors"
	"fmt"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
)

// Errors of the publishing side. Verification failures are the kinds of
// package channelmeta (ErrMalformed, ErrBadSignature, …), which errors from
// this package wrap too.
var (
	// ErrInvalid: an input record or key set given to the server/CLI side
	// is not acceptable (nothing was signed or written).
	ErrInvalid = errors.New("invalid channel metadata input")
	// ErrExists: Init found an existing repository.
	ErrExists = errors.New("channel metadata repository already exists")
	// ErrNoOnlineKey: the operation needs the online key and the Repo has none.
	ErrNoOnlineKey = errors.New("no online key loaded")
	// ErrNeedTargets: a root rotation changes the release or online keys, so
	// targets must be re-signed and published together with it.
	ErrNeedTargets = errors.New("root rotation invalidates the current targets; publish re-signed targets with it")
)

// invalidf builds an ErrInvalid error.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// malformedf builds a channelmeta.ErrMalformed error.
func malformedf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", channelmeta.ErrMalformed, fmt.Sprintf(format, args...))
}

// wrapKind wraps a go-tuf error from a server-side check with its kind.
func wrapKind(what string, err error) error {
	return fmt.Errorf("%s: %w: %w", what, channelmeta.KindOf(err), err)
}
