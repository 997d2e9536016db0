// Package release owns the publish pipeline of the OSTree side: read a
// source tree (directory, tarball or another OSTree repository) into the
// repository, make a commit carrying the version, the ref binding and a
// timestamp later than the ref's current one, sign it, move the ref, and
// rewrite and sign the summary. It also checks signatures of stored commits.
//
// Order matters for clients: objects become visible first, then the
// signatures (commitmeta), then the ref, then the summary; a client that
// sees the new ref always finds a complete, signed commit.
//
// Remote publishing (Acceptor) splits the roles: the release key stays on
// the release team's machine and signs commits there; the server receives
// the signed commit through an upload session (ostree.Upload), verifies
// it against the release public keys it trusts (every trusted engine must
// have signed, the version and ref binding must match, the timestamp must
// grow; a promotion must keep its source's root tree) and only then moves
// the ref. The summary is re-signed by the server's online key, which can
// therefore delay or gate updates among release-signed commits but never
// sign a commit itself.
//
// A release can also be a bootable OCI image of the same tree (ImageStep,
// image.go): built from the signed commit (or, on promotion, derived from
// the source channel's image with only its ostree.commit label changed),
// signed with the release key as a sigstore attachment, its manifest
// digest listed next to the commit in the release-signed targets, and
// tagged only once the server has accepted the release.
//
// Release gates (gate.go, service.go) decide, for the server, who may
// publish or promote into which channel: channels with promotes_from take
// promotions only, and each channel's publishers list is enforced. The
// publish policy gate (modepolicy.go) refuses trees with unsafe modes
// (world-readable shadow files, world-writable setuid or setgid files)
// before they are signed, locally and for remote publishing alike.
//
// Stock ostree clients cannot express that split: they import both public
// OpenPGP keys (`ostree remote gpg-import` of the release and the online
// openpgp.pub.asc) and then accept either key for commits and summaries
// alike. The MxOS device updater pins each key to its role; it is what
// enforces that a commit signed only by the online key is refused.
package release

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mxos-linux/mxos-update/internal/commitsig"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"go.uber.org/zap"
)

// Publisher publishes releases into one repository.
type Publisher struct {
	Repo    *ostree.Repo
	Signers []sign.Signer
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	Log *zap.Logger
	// Deltas, when set, makes each publish generate static deltas
	// (deltas.go); nil generates none.
	Deltas *DeltaPolicy
}

// Request describes one publish.
type Request struct {
	Ref     string
	Version string
	Subject string
	Body    string
	// Source is a directory, a tarball (.tar, .tar.gz, .tar.zst) or
	// "ostree:REPO_PATH:REF" naming a commit in another OSTree repository.
	Source  string
	Options ostree.CommitOptions
	// ModeExceptions are the paths the publish policy gate (modepolicy.go)
	// lets through; it checks every tree.
	ModeExceptions ModeExceptions
}

// Result is what a publish made.
type Result struct {
	Commit    ostree.Checksum
	Parent    ostree.Checksum
	Timestamp time.Time
	// Deltas are the static deltas made for the release; DeltaErr says
	// which could not be made (the release is published regardless:
	// clients then pull loose objects).
	Deltas   []ostree.DeltaID
	DeltaErr error
}

// Errors callers decide on.
var (
	ErrSameVersion = errors.New("version already published on this ref")
	ErrNoSigners   = errors.New("no signing keys")
)

// Publish runs the whole pipeline under the repository's write lock.
func (p *Publisher) Publish(ctx context.Context, req Request) (*Result, error) {
	if err := ostree.ValidateRef(req.Ref); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if strings.TrimSpace(req.Version) == "" {
		return nil, fmt.Errorf("publish: a version is required")
	}
	if len(p.Signers) == 0 {
		return nil, fmt.Errorf("publish: %w", ErrNoSigners)
	}
	log := p.Log
	if log == nil {
		log = zap.NewNop()
	}
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	txn, err := p.Repo.Begin()
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	defer txn.Close()

	res := &Result{}
	var parentTS uint64
	if cur, err := p.Repo.ResolveRef(req.Ref); err == nil {
		pc, err := p.Repo.ReadCommit(cur)
		if err != nil {
			return nil, fmt.Errorf("publish: current commit of %s: %w", req.Ref, err)
		}
		if pc.Version() == req.Version {
			return nil, fmt.Errorf("publish %s: %w: %s", req.Ref, ErrSameVersion, req.Version)
		}
		res.Parent, parentTS = cur, pc.Timestamp
	} else if !errors.Is(err, ostree.ErrNotFound) {
		return nil, fmt.Errorf("publish: %w", err)
	}

	log.Info("reading source", zap.String("source", req.Source), zap.String("ref", req.Ref))
	tree, meta, err := writeSource(ctx, txn, req.Source, req.Options)
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if err := checkSourceModes(ctx, txn, tree, req.ModeExceptions); err != nil {
		return nil, err
	}
	ts := uint64(now().Unix())
	if ts <= parentTS {
		ts = parentTS + 1 // timestamps must grow: clients refuse older commits
	}
	subject := req.Subject
	if subject == "" {
		subject = "MxOS " + req.Version
	}
	c := &ostree.Commit{
		Metadata: ostree.Metadata{
			{Key: ostree.MetaVersion, Value: ostree.StringVar(req.Version)},
			{Key: ostree.MetaRefBinding, Value: ostree.StringsVar([]string{req.Ref})},
		},
		Parent:    res.Parent,
		Subject:   subject,
		Body:      req.Body,
		Timestamp: ts,
		RootTree:  tree,
		RootMeta:  meta,
	}
	cb, err := c.Marshal()
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	commit, err := txn.WriteMetadata(ostree.ObjCommit, cb, ostree.Checksum{})
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if err := txn.Commit(); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	sigs, err := SignData(p.Signers, cb, nil)
	if err != nil {
		return nil, fmt.Errorf("publish: sign commit: %w", err)
	}
	if err := txn.WriteCommitMeta(commit, sigs); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	res.Deltas, res.DeltaErr = p.Deltas.generate(ctx, p.Repo, commit, now())
	if res.DeltaErr != nil {
		log.Warn("static deltas", zap.Error(res.DeltaErr))
	}
	if err := txn.SetRef(req.Ref, commit); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if err := txn.WriteSummary(now(), func(b []byte) (ostree.Metadata, error) { return SignData(p.Signers, b, nil) }); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	res.Commit = commit
	res.Timestamp = time.Unix(int64(ts), 0).UTC()
	log.Info("published", zap.String("ref", req.Ref), zap.String("version", req.Version), zap.String("commit", commit.String()))
	return res, nil
}

// writeSource stores the source tree and returns its root checksums.
func writeSource(ctx context.Context, txn *ostree.Txn, source string, opts ostree.CommitOptions) (tree, meta ostree.Checksum, err error) {
	if rest, ok := strings.CutPrefix(source, "ostree:"); ok {
		i := strings.LastIndex(rest, ":")
		if i <= 0 || i == len(rest)-1 {
			return tree, meta, fmt.Errorf("source %q: want ostree:REPO_PATH:REF", source)
		}
		dir, ref := rest[:i], rest[i+1:]
		c, err := txn.ImportCommit(ctx, dir, ref)
		if err != nil {
			return tree, meta, err
		}
		if err := txn.Commit(); err != nil {
			return tree, meta, err
		}
		cm, err := txn.Repo().ReadCommit(c)
		if err != nil {
			return tree, meta, err
		}
		return cm.RootTree, cm.RootMeta, nil
	}
	st, err := os.Stat(source)
	if err != nil {
		return tree, meta, fmt.Errorf("source: %w", err)
	}
	if st.IsDir() {
		return txn.WriteTreeFromDir(ctx, source, opts)
	}
	f, err := os.Open(source)
	if err != nil {
		return tree, meta, fmt.Errorf("source: %w", err)
	}
	defer f.Close()
	return txn.WriteTreeFromTar(ctx, f, opts)
}

// SignData signs data with every signer into ostree metadata
// (commitsig.Sign); kept here for the publishing side's callers.
func SignData(signers []sign.Signer, data []byte, existing ostree.Metadata) (ostree.Metadata, error) {
	return commitsig.Sign(signers, data, existing)
}

// SignatureMap is commitsig.SignatureMap.
func SignatureMap(md ostree.Metadata) map[string][][]byte { return commitsig.SignatureMap(md) }

// CommitVerifier is commitsig.Verifier.
func CommitVerifier(verifiers []sign.Verifier) func(ostree.Checksum, []byte, ostree.Metadata) error {
	return commitsig.Verifier(verifiers)
}
