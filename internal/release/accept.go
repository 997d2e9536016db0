package release

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// Acceptor is the server side of remote publishing: it moves a ref to a
// commit a release machine built, signed and uploaded, after checking
// everything a device will check. It holds no release key: commits arrive
// signed, and the server's online key signs only the summary.
type Acceptor struct {
	Repo *ostree.Repo
	// Trusted are the release public keys; a commit must carry a valid
	// signature for every engine (ed25519, OpenPGP) they include.
	Trusted []sign.Verifier
	// Online signs the summary, and nothing else.
	Online []sign.Signer
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Deltas, when set, makes each accepted release get static deltas
	// (deltas.go); nil generates none.
	Deltas *DeltaPolicy
}

// AcceptRequest names a stored commit and the ref it should become.
type AcceptRequest struct {
	Ref     string
	Version string
	Commit  ostree.Checksum
	// Commitmeta is the commit's detached metadata (GVariant a{sv}) with
	// its signatures; it replaces whatever is stored.
	Commitmeta []byte
	// PromotedFromRef, for a promotion, is the source channel's ref; the
	// commit's root tree must equal that of the source's commit for
	// Version. SourceCommit names that commit when the caller knows it;
	// otherwise the source ref's history is searched for Version.
	PromotedFromRef string
	SourceCommit    ostree.Checksum
}

// Errors of Accept; each is wrapped with detail.
var (
	// ErrIncomplete: the commit or an object it reaches is not stored.
	ErrIncomplete = errors.New("commit is not completely uploaded")
	// ErrBadCommit: the commit or its detached metadata is malformed.
	ErrBadCommit = errors.New("malformed commit")
	// ErrUnsigned: a trusted signature engine has no signature on the commit.
	ErrUnsigned = errors.New("commit is not signed by a trusted release key")
	// ErrBinding: the commit's version or ref binding is not what was asked.
	ErrBinding = errors.New("commit metadata does not match the request")
	// ErrOlder: the commit is not newer than the ref's current commit.
	ErrOlder = errors.New("commit is not newer than the ref's current commit")
	// ErrRootMismatch: a promoted commit's tree differs from its source's.
	ErrRootMismatch = errors.New("promoted commit has a different root tree than its source")
	// ErrSourceNotFound: the promotion source has no commit for the version.
	ErrSourceNotFound = errors.New("version not found on the promotion source")
)

// maxHistory bounds the walk of a source ref's parents.
const maxHistory = 10000

// Accept verifies the request and, if every check passes, writes the
// commitmeta, moves the ref and rewrites the summary signed by the online
// key, all under one repository write transaction. Any refusal leaves the
// repository as it was. Signature failures wrap sign.ErrBadSignature or
// ErrUnsigned.
func (a *Acceptor) Accept(ctx context.Context, req AcceptRequest) (*Result, error) {
	if err := ostree.ValidateRef(req.Ref); err != nil {
		return nil, fmt.Errorf("accept: %w", err)
	}
	if req.Version == "" {
		return nil, fmt.Errorf("accept: %w: a version is required", ErrBinding)
	}
	if len(a.Trusted) == 0 {
		return nil, fmt.Errorf("accept: %w: no trusted release keys", sign.ErrNoKeys)
	}
	if len(a.Online) == 0 {
		return nil, fmt.Errorf("accept: %w: no online key to sign the summary", ErrNoSigners)
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	// Checks run under the write lock so the ref cannot move between the
	// check and the update.
	txn, err := a.Repo.Begin()
	if err != nil {
		return nil, fmt.Errorf("accept: %w", err)
	}
	defer txn.Close()
	res, md, err := a.check(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("accept %s %s: %w", req.Ref, req.Version, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("accept: %w", err)
	}
	// Order matters to clients: signatures, then the ref, then the summary.
	if err := txn.WriteCommitMeta(req.Commit, md); err != nil {
		return nil, fmt.Errorf("accept: %w", err)
	}
	res.Deltas, res.DeltaErr = a.Deltas.generate(ctx, a.Repo, req.Commit, now())
	if err := txn.SetRef(req.Ref, req.Commit); err != nil {
		return nil, fmt.Errorf("accept: %w", err)
	}
	if err := txn.WriteSummary(now(), func(b []byte) (ostree.Metadata, error) { return SignData(a.Online, b, nil) }); err != nil {
		return nil, fmt.Errorf("accept: %w", err)
	}
	return res, nil
}

// check runs every check of Accept and returns the parsed commitmeta.
func (a *Acceptor) check(ctx context.Context, req AcceptRequest) (*Result, ostree.Metadata, error) {
	r := a.Repo
	if !r.HasObject(req.Commit, ostree.ObjCommit) {
		return nil, nil, fmt.Errorf("%w: commit %s is not stored", ErrIncomplete, req.Commit)
	}
	cb, err := r.ReadMetadata(req.Commit, ostree.ObjCommit)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadCommit, err)
	}
	cm, err := ostree.ParseCommit(cb)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadCommit, err)
	}
	if err := r.CheckComplete(req.Commit); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrIncomplete, err)
	}
	if limit := ostree.DeviceLimit(ostree.ObjCommitMeta); int64(len(req.Commitmeta)) > limit {
		return nil, nil, fmt.Errorf("%w: commitmeta is larger than devices accept (%d bytes)", ErrBadCommit, limit)
	}
	md, err := ostree.ParseMetadata(req.Commitmeta)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: commitmeta: %w", ErrBadCommit, err)
	}
	sigs := SignatureMap(md)
	// Every engine the server trusts must be present: stock ostree clients
	// check OpenPGP, MxOS devices ed25519, and neither may find a commit
	// unsigned for it. VerifyAll then checks each present engine.
	for _, v := range a.Trusted {
		if _, ok := sigs[v.MetaKey()]; !ok {
			return nil, nil, fmt.Errorf("%w: no %s signatures", ErrUnsigned, v.MetaKey())
		}
	}
	if err := sign.VerifyAll(a.Trusted, cb, sigs); err != nil {
		return nil, nil, fmt.Errorf("commit %s: %w", req.Commit, err)
	}
	if v := cm.Version(); v != req.Version {
		return nil, nil, fmt.Errorf("%w: commit version is %q, not %q", ErrBinding, v, req.Version)
	}
	if b := cm.RefBindings(); !slices.Contains(b, req.Ref) {
		return nil, nil, fmt.Errorf("%w: commit is bound to %v, not %s", ErrBinding, b, req.Ref)
	}
	res := &Result{Commit: req.Commit, Timestamp: cm.Time()}
	if cur, err := r.ResolveRef(req.Ref); err == nil {
		cc, err := r.ReadCommit(cur)
		if err != nil {
			return nil, nil, fmt.Errorf("current commit of %s: %w", req.Ref, err)
		}
		if cc.Version() == req.Version {
			return nil, nil, fmt.Errorf("%w: %s", ErrSameVersion, req.Version)
		}
		if cm.Timestamp <= cc.Timestamp {
			return nil, nil, fmt.Errorf("%w: %s is not after %s", ErrOlder, cm.Time().Format(time.RFC3339), cc.Time().Format(time.RFC3339))
		}
		res.Parent = cur
	} else if !errors.Is(err, ostree.ErrNotFound) {
		return nil, nil, err
	}
	if req.PromotedFromRef != "" {
		src, err := a.sourceCommit(ctx, req)
		if err != nil {
			return nil, nil, err
		}
		if src.RootTree != cm.RootTree || src.RootMeta != cm.RootMeta {
			return nil, nil, fmt.Errorf("%w: root %s, source root %s", ErrRootMismatch, cm.RootTree, src.RootTree)
		}
	}
	return res, md, nil
}

// sourceCommit finds the promotion source's commit for req.Version.
func (a *Acceptor) sourceCommit(ctx context.Context, req AcceptRequest) (*ostree.Commit, error) {
	if err := ostree.ValidateRef(req.PromotedFromRef); err != nil {
		return nil, err
	}
	check := func(c ostree.Checksum) (*ostree.Commit, error) {
		cm, err := a.Repo.ReadCommit(c)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrSourceNotFound, err)
		}
		if cm.Version() != req.Version || !slices.Contains(cm.RefBindings(), req.PromotedFromRef) {
			return nil, fmt.Errorf("%w: commit %s is not %s on %s", ErrSourceNotFound, c, req.Version, req.PromotedFromRef)
		}
		return cm, nil
	}
	if !req.SourceCommit.IsZero() {
		return check(req.SourceCommit)
	}
	c, err := a.Repo.ResolveRef(req.PromotedFromRef)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSourceNotFound, err)
	}
	// History may be shallow: a missing parent ends the walk.
	for i := 0; i < maxHistory && !c.IsZero(); i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		cm, err := a.Repo.ReadCommit(c)
		if err != nil {
			break
		}
		if cm.Version() == req.Version {
			return check(c)
		}
		c = cm.Parent
	}
	return nil, fmt.Errorf("%w: %s has no commit for %s", ErrSourceNotFound, req.PromotedFromRef, req.Version)
}
