package release

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// Server is what remote publishing needs from mxos-server: the upload and
// release routes of internal/api (publish.go) and reads of the repository.
// internal/client implements it over HTTP.
type Server interface {
	NewUpload(ctx context.Context) (api.UploadSession, error)
	Missing(ctx context.Context, session string, objects []string) ([]string, error)
	PutObject(ctx context.Context, session, name string, body io.Reader, size int64) error
	CommitUpload(ctx context.Context, session string) error
	PublishRelease(ctx context.Context, req api.ReleaseRequest) (api.Release, error)
	Releases(ctx context.Context, channel, arch string) ([]api.Release, error)
	// RepoObject returns the bytes of a repository file, e.g. a commit
	// object, or an error wrapping ostree.ErrNotFound.
	RepoObject(ctx context.Context, path string) ([]byte, error)
	// Metadata returns a file of the server's signed channel metadata
	// (/metadata/NAME), or nil and no error when the server has none.
	Metadata(ctx context.Context, name string) ([]byte, error)
}

// Remote publishes to and promotes on a running server. The commit is
// built in a local work repository and signed here with the release key;
// only objects the server lacks are uploaded.
type Remote struct {
	Server  Server
	Work    *ostree.Repo // local cache of objects; any archive repository
	Signers []sign.Signer
	// MetaSigners are the same release key(s) as TUF signers; they sign
	// the channel metadata's targets when the server publishes signed
	// channel metadata (publish.LoadEd25519Signers on the key dir).
	MetaSigners []signature.Signer
	Now         func() time.Time
	// Progress, when set, is told how many objects have been uploaded.
	Progress func(done, total int)
	// Threshold, when above 1, goes into the signed release record: the
	// targets must then be signed by that many release keys (a channel
	// with threshold: k; mxosctl promote --sign-only and release cosign).
	Threshold int
	// Image, when set, also makes the release's bootable OCI image: built
	// (or, for a promotion, derived) and signed before the release is
	// requested, its digest in the signed targets, tagged once the server
	// accepts the release.
	Image *ImageStep
}

// RemoteRequest is one remote publish.
type RemoteRequest struct {
	Channel, Arch, Ref, Version string
	Subject, Body               string
	Source                      string // as Request.Source
	Options                     ostree.CommitOptions
	Ramp                        string         // "" for the channel default, "none" for no rollout
	ModeExceptions              ModeExceptions // as Request.ModeExceptions
}

// uploadBatch is how many names one Missing call carries.
const uploadBatch = api.MaxMissingObjects

func (r *Remote) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// current returns the newest release of a channel and its commit object,
// or a nil commit when the channel has none yet.
func (r *Remote) current(ctx context.Context, channel, arch string) (*api.Release, *ostree.Commit, error) {
	rels, err := r.Server.Releases(ctx, channel, arch)
	if err != nil {
		return nil, nil, fmt.Errorf("releases of %s/%s: %w", channel, arch, err)
	}
	if len(rels) == 0 {
		return nil, nil, nil
	}
	newest := rels[0] // the server lists newest first
	c, _, err := r.fetchCommit(ctx, newest.Commit)
	if err != nil {
		return nil, nil, err
	}
	return &newest, c, nil
}

// fetchCommit downloads a commit object and checks it hashes to its name:
// the server is not trusted to hand back what was asked for.
func (r *Remote) fetchCommit(ctx context.Context, hex string) (*ostree.Commit, []byte, error) {
	sum, err := ostree.ParseChecksum(hex)
	if err != nil {
		return nil, nil, err
	}
	b, err := r.Server.RepoObject(ctx, ostree.ObjectPath(sum, ostree.ObjCommit))
	if err != nil {
		return nil, nil, fmt.Errorf("fetching commit %s: %w", hex, err)
	}
	if sha256.Sum256(b) != sum {
		return nil, nil, fmt.Errorf("commit %s from the server: %w: bytes do not match", hex, ostree.ErrCorrupt)
	}
	c, err := ostree.ParseCommit(b)
	if err != nil {
		return nil, nil, fmt.Errorf("commit %s from the server: %w", hex, err)
	}
	return c, b, nil
}

// Publish builds SOURCE into a signed commit for the channel's ref,
// uploads what the server lacks, and asks the server to publish it.
func (r *Remote) Publish(ctx context.Context, req RemoteRequest) (api.Release, ostree.Checksum, error) {
	var none ostree.Checksum
	if len(r.Signers) == 0 {
		return api.Release{}, none, ErrNoSigners
	}
	cur, curCommit, err := r.current(ctx, req.Channel, req.Arch)
	if err != nil {
		return api.Release{}, none, err
	}
	txn, err := r.Work.Begin()
	if err != nil {
		return api.Release{}, none, err
	}
	defer txn.Close()
	tree, meta, err := writeSource(ctx, txn, req.Source, req.Options)
	if err != nil {
		return api.Release{}, none, err
	}
	// Before anything is signed or uploaded.
	if err := checkSourceModes(ctx, txn, tree, req.ModeExceptions); err != nil {
		return api.Release{}, none, err
	}
	c := &ostree.Commit{Subject: req.Subject, Body: req.Body, RootTree: tree, RootMeta: meta}
	if c.Subject == "" {
		c.Subject = "MxOS " + req.Version
	}
	var parentTS uint64
	if cur != nil {
		if c.Parent, err = ostree.ParseChecksum(cur.Commit); err != nil {
			return api.Release{}, none, err
		}
		parentTS = curCommit.Timestamp
	}
	c.Timestamp = later(uint64(r.now().Unix()), parentTS)
	c.Metadata = ostree.Metadata{
		{Key: ostree.MetaVersion, Value: ostree.StringVar(req.Version)},
		{Key: ostree.MetaRefBinding, Value: ostree.StringsVar([]string{req.Ref})},
	}
	sum, cm, err := r.writeSigned(txn, c)
	if err != nil {
		return api.Release{}, none, err
	}
	objs, err := r.Work.Reachable(sum)
	if err != nil {
		return api.Release{}, none, err
	}
	objs = append(objs, ostree.ObjectRef{Checksum: sum, Type: ostree.ObjCommit})
	if err := r.upload(ctx, objs); err != nil {
		return api.Release{}, none, err
	}
	rec := channelmeta.Release{Channel: req.Channel, Arch: req.Arch, Version: req.Version, Ref: req.Ref, Commit: sum.String()}
	if r.Image != nil {
		im, err := r.Image.Build(ctx, r.Work, req.Ref, req.Version, sum)
		if err != nil {
			return api.Release{}, none, err
		}
		rec.OCIDigest = im.Digest.String()
	}
	targets, err := r.signedTargets(ctx, rec)
	if err != nil {
		return api.Release{}, none, err
	}
	rel, err := r.Server.PublishRelease(ctx, api.ReleaseRequest{Channel: req.Channel, Arch: req.Arch,
		Version: req.Version, Commit: sum.String(), Commitmeta: cm, Ramp: req.Ramp, Targets: targets, OCIDigest: rec.OCIDigest})
	if err != nil {
		return rel, sum, err
	}
	return rel, sum, r.tagImage(ctx, req.Ref, req.Version)
}

// tagImage tags the image made for an accepted release.
func (r *Remote) tagImage(ctx context.Context, ref, version string) error {
	if r.Image == nil || r.Image.Image == nil {
		return nil
	}
	if err := r.Image.Tag(ctx, r.Image.Image, ref, version); err != nil {
		return fmt.Errorf("the release is published, but tagging its image failed (publishing again is refused; tag %s by hand): %w",
			r.Image.Image.Digest, err)
	}
	return nil
}

// Promote makes a new signed commit for channel `to` with the root tree of
// release version on channel `from`. Only the commit object is uploaded:
// the tree is already on the server.
func (r *Remote) Promote(ctx context.Context, from, to, arch, toRef, version, ramp string) (api.Release, ostree.Checksum, error) {
	var none ostree.Checksum
	if len(r.Signers) == 0 {
		return api.Release{}, none, ErrNoSigners
	}
	rels, err := r.Server.Releases(ctx, from, arch)
	if err != nil {
		return api.Release{}, none, fmt.Errorf("releases of %s/%s: %w", from, arch, err)
	}
	var src *api.Release
	for i := range rels {
		if rels[i].Version == version {
			src = &rels[i]
		}
	}
	if src == nil {
		return api.Release{}, none, api.Errorf(api.CodeNotFound, "%s %s is not published on %s", version, arch, from)
	}
	srcCommit, _, err := r.fetchCommit(ctx, src.Commit)
	if err != nil {
		return api.Release{}, none, err
	}
	cur, curCommit, err := r.current(ctx, to, arch)
	if err != nil {
		return api.Release{}, none, err
	}
	c := &ostree.Commit{Subject: srcCommit.Subject, Body: srcCommit.Body,
		RootTree: srcCommit.RootTree, RootMeta: srcCommit.RootMeta}
	var parentTS uint64
	if cur != nil {
		if c.Parent, err = ostree.ParseChecksum(cur.Commit); err != nil {
			return api.Release{}, none, err
		}
		parentTS = curCommit.Timestamp
	}
	c.Timestamp = later(uint64(r.now().Unix()), parentTS)
	c.Metadata = ostree.Metadata{
		{Key: ostree.MetaVersion, Value: ostree.StringVar(version)},
		{Key: ostree.MetaRefBinding, Value: ostree.StringsVar([]string{toRef})},
	}
	txn, err := r.Work.Begin()
	if err != nil {
		return api.Release{}, none, err
	}
	defer txn.Close()
	cb, err := c.Marshal()
	if err != nil {
		return api.Release{}, none, err
	}
	sum := ostree.Checksum(sha256.Sum256(cb))
	cm, err := r.signBytes(cb)
	if err != nil {
		return api.Release{}, none, err
	}
	up, err := r.Server.NewUpload(ctx)
	if err != nil {
		return api.Release{}, none, err
	}
	name := sum.String() + ".commit"
	if err := r.Server.PutObject(ctx, up.ID, name, bytes.NewReader(cb), int64(len(cb))); err != nil {
		return api.Release{}, none, fmt.Errorf("uploading %s: %w", name, err)
	}
	if err := r.Server.CommitUpload(ctx, up.ID); err != nil {
		return api.Release{}, none, err
	}
	rec := channelmeta.Release{Channel: to, Arch: arch, Version: version, Ref: toRef, Commit: sum.String()}
	if r.Image != nil {
		srcSum, err := ostree.ParseChecksum(src.Commit)
		if err != nil {
			return api.Release{}, none, err
		}
		im, err := r.Image.Derive(ctx, toRef, from, version, srcSum, sum)
		if err != nil {
			return api.Release{}, none, err
		}
		rec.OCIDigest = im.Digest.String()
	}
	targets, err := r.signedTargets(ctx, rec)
	if err != nil {
		return api.Release{}, none, err
	}
	rel, err := r.Server.PublishRelease(ctx, api.ReleaseRequest{Channel: to, Arch: arch, Version: version,
		Commit: sum.String(), Commitmeta: cm, PromotedFrom: from, Ramp: ramp, Targets: targets, OCIDigest: rec.OCIDigest})
	if err != nil {
		return rel, sum, err
	}
	return rel, sum, r.tagImage(ctx, toRef, version)
}

// signedTargets builds the next targets metadata for the server: the
// releases it lists now plus rec, signed with the release key. It returns
// nil when the server publishes no signed channel metadata. A record for
// the same channel, arch and version (left by an earlier attempt that the
// server refused after installing targets) is replaced, not duplicated.
//
// The current root and targets come from the server unverified: the
// release key's signature is what the server and devices check, and
// BuildTargets refuses a root whose release keys ours do not satisfy.
func (r *Remote) signedTargets(ctx context.Context, rec channelmeta.Release) ([]byte, error) {
	current, err := r.Server.Metadata(ctx, "targets.json")
	if err != nil {
		return nil, fmt.Errorf("reading the server's signed targets: %w", err)
	}
	if current == nil {
		return nil, nil
	}
	root, err := r.Server.Metadata(ctx, "root.json")
	if err != nil {
		return nil, fmt.Errorf("reading the server's signed root: %w", err)
	}
	if root == nil {
		return nil, fmt.Errorf("the server serves targets.json but no root.json: its channel metadata is incomplete")
	}
	if len(r.MetaSigners) == 0 {
		return nil, fmt.Errorf("the server publishes signed channel metadata, but no release key was given to sign its targets: %w", ErrNoSigners)
	}
	rels, err := publish.ListedReleases(current)
	if err != nil {
		return nil, fmt.Errorf("the server's signed targets: %w", err)
	}
	now := r.now()
	rec.PublishedAt = now
	rec.Threshold = r.Threshold
	out := make([]channelmeta.Release, 0, len(rels)+1)
	for _, old := range rels {
		if old.Path() != rec.Path() {
			out = append(out, old)
		}
	}
	out = append(out, rec)
	data, err := publish.BuildTargets(root, current, out, r.MetaSigners, publish.Options{}, now)
	if err != nil {
		return nil, fmt.Errorf("signing targets for %s: %w", rec.Path(), err)
	}
	return data, nil
}

// later is a commit timestamp newer than the parent's: clients refuse
// older commits, and a release machine's clock can be behind.
func later(now, parent uint64) uint64 {
	if now <= parent {
		return parent + 1
	}
	return now
}

func (r *Remote) signBytes(commit []byte) ([]byte, error) {
	md, err := SignData(r.Signers, commit, nil)
	if err != nil {
		return nil, fmt.Errorf("signing commit: %w", err)
	}
	return ostree.MarshalMetadata(md)
}

// writeSigned stores the commit in the work repository and returns its
// checksum and signed detached metadata.
func (r *Remote) writeSigned(txn *ostree.Txn, c *ostree.Commit) (ostree.Checksum, []byte, error) {
	cb, err := c.Marshal()
	if err != nil {
		return ostree.Checksum{}, nil, err
	}
	sum, err := txn.WriteMetadata(ostree.ObjCommit, cb, ostree.Checksum{})
	if err != nil {
		return sum, nil, err
	}
	if err := txn.Commit(); err != nil {
		return sum, nil, err
	}
	cm, err := r.signBytes(cb)
	return sum, cm, err
}

// upload sends the objects the server has neither stored nor staged, in
// one session. A failed run can simply be repeated: the next one asks
// again and sends only what is still missing.
func (r *Remote) upload(ctx context.Context, objs []ostree.ObjectRef) error {
	up, err := r.Server.NewUpload(ctx)
	if err != nil {
		return err
	}
	names := make([]string, len(objs))
	byName := make(map[string]ostree.ObjectRef, len(objs))
	for i, o := range objs {
		names[i] = o.Checksum.String() + "." + o.Type.Ext()
		byName[names[i]] = o
	}
	sort.Strings(names)
	var missing []string
	for i := 0; i < len(names); i += uploadBatch {
		end := min(i+uploadBatch, len(names))
		m, err := r.Server.Missing(ctx, up.ID, names[i:end])
		if err != nil {
			return fmt.Errorf("asking which objects are missing: %w", err)
		}
		missing = append(missing, m...)
	}
	for i, name := range missing {
		o, ok := byName[name]
		if !ok {
			return fmt.Errorf("server asked for %q, which was not offered", name)
		}
		if err := r.putObject(ctx, up.ID, name, o); err != nil {
			return err
		}
		if r.Progress != nil {
			r.Progress(i+1, len(missing))
		}
	}
	return r.Server.CommitUpload(ctx, up.ID)
}

func (r *Remote) putObject(ctx context.Context, session, name string, o ostree.ObjectRef) error {
	f, err := os.Open(r.Work.ObjectFile(o.Checksum, o.Type))
	if err != nil {
		return fmt.Errorf("uploading %s: %w", name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := r.Server.PutObject(ctx, session, name, f, st.Size()); err != nil {
		return fmt.Errorf("uploading %s: %w", name, err)
	}
	return nil
}
