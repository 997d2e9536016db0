package updater

// The OCI transport: instead of pulling the commit's objects from the
// OSTree repository, the device pulls the release's bootable image from
// the registry (docker://<host>/mxos/<major>/<arch>:<channel>-<version>)
// through containers/image with a policy that requires a sigstore
// signature by the release key, unpacks its layers safely into a staging
// directory, and commits that tree into its local repository.
//
// Trust. The image signature (checked by containers/image before any
// layer is used) vouches for the manifest, hence the config and its
// ostree.commit label, which must name the commit the server offered.
// When repository URLs are given (the normal case: mxos-server serves
// both), the commit object and its detached signatures are fetched from
// the repository too (a few kilobytes), verified with the pinned ostree
// keys like a pull (signature, ref binding, not older than the booted
// commit), and the tree unpacked from the image must hash to the commit's
// root tree. The result is then the very commit the server offered,
// byte for byte, deployed exactly like one from an OSTree pull. Without
// repository URLs (an OCI-only mirror) the commit cannot be reproduced
// (its timestamp, parent and signatures are not in the image), so a local
// commit is written instead, carrying the version, the ref binding and
// mxos.oci.manifest-digest; its checksum differs from the offered one, and
// the trust rests on the image signature and the label check alone.
//
// Crash safety. Everything lives under <sysroot>/oci/: layout/ is an OCI
// layout that containers/image fills blob by blob (each blob written to a
// temporary file and renamed once verified) and whose index.json is
// written only once the image is complete, so an interrupted pull leaves
// no tag, and the retry reuses every blob already there. staging-<hex>/
// is removed and rebuilt on every attempt. The repository write is a
// transaction (objects first, commit last, ref after). After a success
// the layout keeps only the fetched image's blobs, so the next release
// downloads only the layers that changed.

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/mxos-linux/mxos-update/internal/commitsig"
	"github.com/mxos-linux/mxos-update/internal/oci/imageio"
	"github.com/mxos-linux/mxos-update/internal/oci/imagename"
	"github.com/mxos-linux/mxos-update/internal/oci/ocisig"
	"github.com/mxos-linux/mxos-update/internal/oci/unpack"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/storage"
)

// Errors of the OCI transport callers decide on.
var (
	// ErrImageMismatch: the signed image does not describe the offered
	// release (ostree.commit or version label, architecture, or its tree
	// differs from the commit's).
	ErrImageMismatch = errors.New("image does not match the offered release")
	// ErrCommitPolicy: the commit fetched for reproduction is not bound
	// to the ref or is older than the booted one.
	ErrCommitPolicy = errors.New("commit refused")
)

// MetaManifestDigest is the metadata key of a locally made commit naming
// the image it was unpacked from.
const MetaManifestDigest = "mxos.oci.manifest-digest"

// OCIOptions describe one OCI fetch.
type OCIOptions struct {
	// Server is mxos-server's URL; the registry is at /v2/ on its host.
	// http:// allows plain HTTP to the registry.
	Server string
	// Ref, Version and Commit are the offered release (api.Target): the
	// image is <host>/mxos/<major>/<arch>:<channel>-<version>.
	Ref     string
	Version string
	Commit  ostree.Checksum
	// SignedHost is the registry host the image signatures name, when it
	// differs from Server's (mxosctl publish --image-host, or a LAN
	// mirror of the registry); Server's host when empty.
	SignedHost string
	// ImageKeys are PEM public keys (ocisig.PublicKeyPEM of the release
	// key) the image signature must verify with.
	ImageKeys [][]byte
	// Sysroot is the deployment root; the OCI work directory is
	// Sysroot/oci.
	Sysroot string
	// Repo is the local repository the commit is written to.
	Repo *ostree.Repo
	// RepoURLs are OSTree repository URLs (ending in /repo) to fetch the
	// commit object and its signatures from, checked with Verifiers (the
	// pinned release keys). Empty: make a local commit (see above).
	RepoURLs  []string
	Verifiers []sign.Verifier
	// MinTimestamp and Current: as pull.Options (rollback protection).
	MinTimestamp uint64
	Current      ostree.Checksum
	// HTTP fetches the commit objects (http.DefaultClient when nil).
	HTTP *http.Client
	// CAFile is trusted for the registry next to the system's roots.
	CAFile string
	// MaxBytes bounds the unpacked image (unpack.DefaultMaxBytes when 0).
	MaxBytes int64
	// Progress receives containers/image's progress (nothing when nil).
	Progress io.Writer
}

// FetchOCI fetches, verifies and commits the release image described by
// o and returns the commit checksum to deploy (o.Commit when it could be
// reproduced).
func FetchOCI(ctx context.Context, o OCIOptions) (ostree.Checksum, error) {
	var zero ostree.Checksum
	c, err := fetchOCI(ctx, o)
	if err != nil {
		return zero, fmt.Errorf("OCI fetch of %s %s: %w", o.Ref, o.Version, err)
	}
	return c, nil
}

func fetchOCI(ctx context.Context, o OCIOptions) (ostree.Checksum, error) {
	var zero ostree.Checksum
	if o.Repo == nil || o.Sysroot == "" || o.Commit.IsZero() || o.Version == "" {
		return zero, errors.New("incomplete OCI options: repository, sysroot, commit and version are required")
	}
	repoName, arch, channel, err := imagename.RepositoryForRef(o.Ref)
	if err != nil {
		return zero, err
	}
	ociArch, err := imagename.OCIArch(arch)
	if err != nil {
		return zero, err
	}
	reg, err := imageio.RegistryFromServer(o.Server)
	if err != nil {
		return zero, err
	}
	tag := imagename.Tags(channel, o.Version)[1]
	src, err := reg.Reference(repoName, tag)
	if err != nil {
		return zero, err
	}
	ns := strings.SplitN(repoName, "/", 2)[0]
	pol := imageio.PolicyOptions{Scope: reg.Scope(ns), Keys: o.ImageKeys}
	if o.SignedHost != "" {
		pol.SignedScope = imageio.Registry{Host: o.SignedHost}.Scope(ns)
	}
	policy, err := imageio.Policy(pol)
	if err != nil {
		return zero, err
	}

	// The commit, fetched and verified before the image is downloaded.
	var rc *reproduced
	if len(o.RepoURLs) > 0 {
		if rc, err = fetchCommit(ctx, o); err != nil {
			return zero, err
		}
	}

	work := filepath.Join(o.Sysroot, "oci")
	if err := storage.MkdirAll(work, 0o700); err != nil {
		return zero, err
	}
	unlock, err := lockDir(work)
	if err != nil {
		return zero, err
	}
	defer unlock()
	// Staging directories of interrupted fetches, of any image.
	if old, err := filepath.Glob(filepath.Join(work, "staging-*")); err == nil {
		for _, p := range old {
			if err := os.RemoveAll(p); err != nil {
				return zero, err
			}
		}
	}
	layout := filepath.Join(work, "layout")
	if err := repairLayout(layout); err != nil {
		return zero, err
	}
	sys, err := imageio.SystemContext(imageio.ContextOptions{Registry: reg, Dir: filepath.Join(work, "ctx"), Arch: ociArch, CAFile: o.CAFile})
	if err != nil {
		return zero, err
	}
	local, err := imageio.SystemContext(imageio.ContextOptions{Dir: filepath.Join(work, "ctx")})
	if err != nil {
		return zero, err
	}
	dst, err := imageio.ParseReference("oci:" + layout + ":" + tag)
	if err != nil {
		return zero, err
	}
	// PreserveDigests: the layout's manifest is the one whose signature
	// was checked, byte for byte.
	mdigest, err := imageio.Copy(ctx, policy, src, dst, imageio.CopyOptions{SourceCtx: sys, DestCtx: local,
		Report: o.Progress, RemoveSignatures: true, PreserveDigests: true})
	if err != nil {
		return zero, err
	}

	l, err := unpack.OpenLayout(layout)
	if err != nil {
		return zero, err
	}
	defer l.Close()
	img, err := l.Image(tag)
	if err != nil {
		return zero, err
	}
	if img.ManifestDigest != mdigest {
		return zero, fmt.Errorf("%w: layout holds %s, the signed image is %s", ErrImageMismatch, img.ManifestDigest, mdigest)
	}
	labels := img.Config.Config.Labels
	label, hasLabel := labels[imagename.LabelCommit]
	if hasLabel && label != o.Commit.String() {
		return zero, fmt.Errorf("%w: its ostree.commit label is %s, the server offered %s", ErrImageMismatch, label, o.Commit)
	}
	if v, ok := labels[imagename.LabelVersion]; ok && v != o.Version {
		return zero, fmt.Errorf("%w: its version label is %s, the server offered %s", ErrImageMismatch, v, o.Version)
	}
	if img.Config.Architecture != ociArch {
		return zero, fmt.Errorf("%w: it is for %s, this machine is %s", ErrImageMismatch, img.Config.Architecture, ociArch)
	}
	if len(o.RepoURLs) == 0 && !hasLabel {
		return zero, fmt.Errorf("%w: it has no ostree.commit label", ErrImageMismatch)
	}

	staging := filepath.Join(work, "staging-"+img.ManifestDigest.Encoded())
	defer os.RemoveAll(staging)
	if err := os.Mkdir(staging, 0o700); err != nil {
		return zero, err
	}
	// The signature was checked: set-id bits of root-owned files stay
	// (an OS needs su and passwd).
	if _, err := l.Unpack(ctx, img, staging, unpack.Options{MaxBytes: o.MaxBytes, KeepSetID: true}); err != nil {
		return zero, fmt.Errorf("unpacking: %w", err)
	}
	commit, err := commitTree(ctx, o, staging, img, rc)
	if err != nil {
		return zero, err
	}
	if err := pruneLayout(layout, img); err != nil {
		return commit, fmt.Errorf("cleaning the image cache: %w", err)
	}
	return commit, nil
}

// reproduced is the offered commit as fetched from the repository.
type reproduced struct {
	raw      []byte
	commit   *ostree.Commit
	meta     ostree.Metadata
	rootMeta []byte
}

func fetchCommit(ctx context.Context, o OCIOptions) (*reproduced, error) {
	raw, err := getObject(ctx, o, o.Commit, ostree.ObjCommit)
	if err != nil {
		return nil, err
	}
	if got := ostree.Checksum(sha256.Sum256(raw)); got != o.Commit {
		return nil, fmt.Errorf("commit %s: %w: its bytes hash to %s", o.Commit, ostree.ErrCorrupt, got)
	}
	c, err := ostree.ParseCommit(raw)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", o.Commit, err)
	}
	mb, err := getObject(ctx, o, o.Commit, ostree.ObjCommitMeta)
	if err != nil {
		return nil, fmt.Errorf("commit signatures: %w", err)
	}
	md, err := ostree.ParseMetadata(mb)
	if err != nil {
		return nil, fmt.Errorf("commit signatures: %w", err)
	}
	if len(o.Verifiers) == 0 {
		return nil, fmt.Errorf("commit %s: %w", o.Commit, sign.ErrNoKeys)
	}
	if err := commitsig.Verifier(o.Verifiers)(o.Commit, raw, md); err != nil {
		return nil, fmt.Errorf("commit %s: %w", o.Commit, err)
	}
	bound := false
	for _, b := range c.RefBindings() {
		bound = bound || b == o.Ref
	}
	if !bound {
		return nil, fmt.Errorf("%w: commit %s is bound to %v, not %s", ErrCommitPolicy, o.Commit, c.RefBindings(), o.Ref)
	}
	if c.Timestamp < o.MinTimestamp || (c.Timestamp == o.MinTimestamp && o.Commit != o.Current) {
		return nil, fmt.Errorf("%w: commit %s is older than the booted one", ErrCommitPolicy, o.Commit)
	}
	if c.Version() != o.Version {
		return nil, fmt.Errorf("%w: commit %s is version %s, the server offered %s", ErrCommitPolicy, o.Commit, c.Version(), o.Version)
	}
	dm, err := getObject(ctx, o, c.RootMeta, ostree.ObjDirMeta)
	if err != nil {
		return nil, err
	}
	if ostree.Checksum(sha256.Sum256(dm)) != c.RootMeta {
		return nil, fmt.Errorf("root dirmeta %s: %w", c.RootMeta, ostree.ErrCorrupt)
	}
	if _, err := ostree.ParseDirMeta(dm); err != nil {
		return nil, fmt.Errorf("root dirmeta %s: %w", c.RootMeta, err)
	}
	return &reproduced{raw: raw, commit: c, meta: md, rootMeta: dm}, nil
}

// getObject fetches one small object from the repository mirrors, with
// the puller's limits and mirror failover (pull.Puller.GetObject).
func getObject(ctx context.Context, o OCIOptions, c ostree.Checksum, t ostree.ObjectType) ([]byte, error) {
	return (&pull.Puller{URLs: o.RepoURLs, HTTP: o.HTTP}).GetObject(ctx, c, t)
}

// commitTree stores the staging tree and the commit: the reproduced one
// when its root tree matches, a local one otherwise.
func commitTree(ctx context.Context, o OCIOptions, staging string, img *unpack.Image, rc *reproduced) (ostree.Checksum, error) {
	var zero ostree.Checksum
	txn, err := o.Repo.Begin()
	if err != nil {
		return zero, err
	}
	defer txn.Close()
	tree, meta, err := txn.WriteTreeFromDir(ctx, staging, ostree.CommitOptions{})
	if err != nil {
		return zero, fmt.Errorf("storing the image tree: %w", err)
	}
	var sum ostree.Checksum
	if rc != nil {
		if tree != rc.commit.RootTree {
			return zero, fmt.Errorf("%w: the image's tree is %s, commit %s has %s", ErrImageMismatch, tree, o.Commit, rc.commit.RootTree)
		}
		// The root directory is not in the layers; its metadata is the
		// commit's, fetched and hash-checked.
		if _, err := txn.WriteMetadata(ostree.ObjDirMeta, rc.rootMeta, rc.commit.RootMeta); err != nil {
			return zero, err
		}
		if sum, err = txn.WriteMetadata(ostree.ObjCommit, rc.raw, o.Commit); err != nil {
			return zero, err
		}
	} else {
		created := time.Now()
		if img.Config.Created != nil {
			created = *img.Config.Created
		}
		c := &ostree.Commit{
			Metadata: ostree.Metadata{
				{Key: ostree.MetaVersion, Value: ostree.StringVar(o.Version)},
				{Key: ostree.MetaRefBinding, Value: ostree.StringsVar([]string{o.Ref})},
				{Key: MetaManifestDigest, Value: ostree.StringVar(img.ManifestDigest.String())},
			},
			Subject:   "MxOS " + o.Version + " (from image " + img.ManifestDigest.String() + ")",
			Timestamp: uint64(max(created.Unix(), 0)),
			RootTree:  tree,
			RootMeta:  meta,
		}
		b, err := c.Marshal()
		if err != nil {
			return zero, err
		}
		if sum, err = txn.WriteMetadata(ostree.ObjCommit, b, ostree.Checksum{}); err != nil {
			return zero, err
		}
	}
	if err := txn.Commit(); err != nil {
		return zero, err
	}
	if err := o.Repo.CheckComplete(sum); err != nil {
		return zero, err
	}
	if rc != nil {
		if err := txn.WriteCommitMeta(sum, rc.meta); err != nil {
			return zero, err
		}
	}
	if err := txn.SetRef(o.Ref, sum); err != nil {
		return zero, err
	}
	return sum, txn.Close()
}

// lockDir takes an exclusive flock on dir/.lock.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

// repairLayout removes what an interrupted copy can leave: temporary
// blob files, and an index.json that does not parse (containers/image
// writes it in place, so a crash during that write could truncate it;
// the blobs stay and are reused).
func repairLayout(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "oci-put-blob") {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	idx := filepath.Join(dir, "index.json")
	b, err := os.ReadFile(idx)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var v v1.Index
	if err != nil || json.Unmarshal(b, &v) != nil {
		return os.Remove(idx)
	}
	return nil
}

// pruneLayout keeps only img in the layout: index.json names it alone
// (written atomically) and other blobs are removed.
func pruneLayout(dir string, img *unpack.Image) error {
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return err
	}
	var idx v1.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return err
	}
	var kept []v1.Descriptor
	for _, m := range idx.Manifests {
		if m.Digest == img.ManifestDigest {
			kept = append(kept, m)
		}
	}
	idx.Manifests = kept
	nb, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := storage.WriteFile(filepath.Join(dir, "index.json"), nb, 0o644, storage.TempPath(filepath.Join(dir, "index.json.tmp"))); err != nil {
		return err
	}
	keep := map[digest.Digest]bool{img.ManifestDigest: true, img.Manifest.Config.Digest: true}
	for _, d := range img.Manifest.Layers {
		keep[d.Digest] = true
	}
	blobs := filepath.Join(dir, "blobs", "sha256")
	ents, err := os.ReadDir(blobs)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !keep[digest.NewDigestFromEncoded(digest.SHA256, e.Name())] {
			if err := os.Remove(filepath.Join(blobs, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// ImageKeys reads the public release keys of a trusted-keys directory
// (ed25519.pub: the key that signs commits also signs images) as the PEM
// blocks OCIOptions.ImageKeys takes.
func ImageKeys(dir string) ([][]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, sign.Ed25519PublicFile))
	if err != nil {
		return nil, fmt.Errorf("image keys: %w", err)
	}
	pubs, err := sign.ParseEd25519PublicKeys(b)
	if err != nil {
		return nil, fmt.Errorf("image keys: %s: %w", sign.Ed25519PublicFile, err)
	}
	var out [][]byte
	for _, p := range pubs {
		pem, err := ocisig.PublicKeyPEM(p)
		if err != nil {
			return nil, fmt.Errorf("image keys: %w", err)
		}
		out = append(out, pem)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("image keys: %w in %s", sign.ErrNoKeys, dir)
	}
	return out, nil
}
