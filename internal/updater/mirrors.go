package updater

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/storage"
)

// Mirror failover. The device reads two things from mirrors: the signed
// channel metadata (from each mirror's /metadata/ sibling, then the
// server's: metadataURLs) and the OSTree repository (the pull package
// tries each mirror of Config.Mirrors in turn, see its documentation). A
// mirror is never trusted to be complete or current, so any failure of
// one moves on to the next before the device gives up:
//
//   - no answer, a silent or trickling connection (response-header
//     timeout of 30 s and a throughput floor on every request), an HTTP
//     error, a file too large;
//   - metadata that does not verify (bad signature, malformed, expired,
//     a version older than the device already trusts);
//   - a stale view: metadata that verifies (old but not expired) yet does
//     not list the release the server offers. The server's offer says
//     what is current; a mirror that has not synced it yet, or that
//     replays old metadata, is passed over, and the device says so.
//
// The offer is refused only when no source allows it; the error then
// gives the most telling reason: a verified refusal first, then a
// verification failure, then a network one.

// metadataState loads and verifies the channel metadata from each URL of
// metadataURLs in turn and returns the first state that accept (when not
// nil) takes. When none does, the error wraps ErrRefused and the best
// reason; a refusal by accept is returned as a *staleError.
func (a *Agent) metadataState(ctx context.Context, accept func(*channelmeta.State) error) (*channelmeta.State, error) {
	root, err := os.ReadFile(a.Cfg.TrustedRoot)
	if err != nil {
		return nil, fmt.Errorf("reading the trusted root of the channel metadata: %w", err)
	}
	cache := filepath.Join(a.Sys.Root(), MetadataDir)
	if err := storage.MkdirAll(cache, 0o700); err != nil {
		return nil, fmt.Errorf("channel metadata cache: %w", err)
	}
	removeStaleTemps(cache, time.Now())
	dropTornMetadata(cache)
	var errs []error
	var worst error   // a verification failure says more than a network one
	var refused error // a verified refusal says more than either
	var stale []string
	sources := a.metadataURLs()
	if a.metaDir != "" {
		sources = []string{a.metaDir}
	}
	for _, u := range sources {
		cc := channelmeta.ClientConfig{TrustedRoot: root, CacheDir: cache, URL: u,
			HTTPClient: a.MetaHTTP, Now: a.now, UserAgent: "mxos-updater"}
		if a.metaDir != "" { // a bundle (bundle.go): its metadata directory only
			cc.URL, cc.Dir = "", a.metaDir
		}
		c, err := channelmeta.NewClient(cc)
		if err != nil {
			return nil, fmt.Errorf("channel metadata: %w", err)
		}
		st, err := c.Load(ctx)
		if err == nil {
			// go-tuf renames its files into place without fsync: make the
			// new trusted versions durable, or a power loss could bring
			// back older ones (and with them a rollback window).
			if err := syncFiles(cache); err != nil {
				return nil, fmt.Errorf("channel metadata cache: %w", err)
			}
			if accept == nil {
				return st, nil
			}
			if err = accept(st); err == nil {
				if len(stale) > 0 {
					a.say("The channel metadata of %v is out of date; used %s.", stale, u)
				}
				return st, nil
			}
			stale = append(stale, u)
			if refused == nil {
				refused = &staleError{url: u, err: err}
			}
			continue
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
		if worst == nil && !errors.Is(err, channelmeta.ErrFetch) {
			worst = errs[len(errs)-1]
		}
		if ctx.Err() != nil {
			break
		}
	}
	if refused != nil {
		return nil, refused
	}
	if worst == nil {
		worst = errors.Join(errs...)
	}
	hint := ""
	if errors.Is(worst, channelmeta.ErrExpired) {
		hint = " (if this machine's date and time are wrong, correct them and try again)"
	}
	return nil, fmt.Errorf("%w: the signed channel metadata could not be verified%s: %w", ErrRefused, hint, worst)
}

// staleError: the metadata verified but did not allow what was asked, on
// every source (the first source's reason is kept).
type staleError struct {
	url string
	err error
}

func (e *staleError) Error() string { return e.err.Error() }
func (e *staleError) Unwrap() error { return e.err }

// checkOfferMetadata is step 2 of verify.go: the offer must be a release
// the signed channel metadata of some source lists. Nothing is checked
// without trusted_root.
func (a *Agent) checkOfferMetadata(ctx context.Context, t api.Target) (*channelmeta.State, error) {
	if a.Cfg.InsecureNoMetadata {
		return nil, nil
	}
	if a.Cfg.TrustedRoot == "" {
		return nil, fmt.Errorf("%w: trusted_root is required (or insecure_no_metadata)", ErrInvalid)
	}
	offer := channelmeta.Offer{Channel: t.Channel, Arch: t.Arch, Version: t.Version,
		Commit: t.Commit, Ref: t.Ref, OCIDigest: t.OCIDigest}
	st, err := a.metadataState(ctx, func(st *channelmeta.State) error { return channelmeta.CheckOffer(st, offer) })
	var se *staleError
	if errors.As(err, &se) {
		return nil, fmt.Errorf("%w: the server offered version %s, which the signed channel metadata does not allow: %w",
			ErrRefused, t.Version, se.err)
	}
	return st, err
}
