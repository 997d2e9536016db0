package bootimage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/mxos-linux/mxos-update/internal/oci/content"
	"github.com/mxos-linux/mxos-update/internal/oci/imagename"
	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// ContentStore is where images are written: the registry's storage
// (registry.Store, via internal/oci/content) or a remote registry (internal/oci/regclient).
type ContentStore = content.ContentStore

// BlobFunc opens a blob of repo. Derive reads the source config with it;
// what it returns is checked against the digest.
type BlobFunc func(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, error)

// LayerMediaType is the media type of every layer.
const LayerMediaType = v1.MediaTypeImageLayerGzip

// Errors callers decide on.
var (
	// ErrWhiteoutName: a tree path whose name starts with ".wh.", which
	// every OCI unpacker treats as a deletion marker.
	ErrWhiteoutName = errors.New("file name starts with \".wh.\"")
)

// maxConfigSize bounds a config blob read back from a store.
const maxConfigSize = 4 << 20

// LayerGroup is one layer: the entries under any of its path prefixes (no
// leading slash) that no earlier group took. A group with no prefixes
// takes everything left.
type LayerGroup struct {
	Name     string
	Prefixes []string
}

// DefaultLayers is the split Build uses when BuildRequest.Layers is nil.
// It is by path, not size, so layer boundaries stay put between releases.
var DefaultLayers = []LayerGroup{
	{Name: "kernel", Prefixes: []string{"usr/lib/modules", "usr/lib/firmware", "boot"}},
	{Name: "usr-lib", Prefixes: []string{"usr/lib", "usr/lib64"}},
	{Name: "usr-share", Prefixes: []string{"usr/share"}},
	{Name: "usr-bin", Prefixes: []string{"usr/bin", "usr/sbin", "usr/libexec"}},
	{Name: "usr", Prefixes: []string{"usr"}},
	{Name: "rest"},
}

// BuildRequest describes one image.
type BuildRequest struct {
	// Repository is the image repository, e.g. mxos/10/x86_64
	// (RepositoryForRef).
	Repository string
	// Arch is the OSTree arch (x86_64, aarch64, ...); it becomes the OCI
	// architecture.
	Arch    string
	Version string
	Commit  ostree.Checksum
	// Annotations are added to the manifest.
	Annotations map[string]string
	// Layers overrides DefaultLayers.
	Layers []LayerGroup
	// TempDir holds compressed layers until they are stored; os.TempDir()
	// when empty.
	TempDir string
	// Progress, when set, is told each time a layer is stored (from any
	// goroutine: layers are built in parallel).
	Progress func(done, total int)
}

// Image is a stored image.
type Image struct {
	Repository string
	Digest     digest.Digest // of the manifest
	Manifest   []byte
	Config     []byte
	Layers     []v1.Descriptor
}

// MediaType is the manifest's media type.
func (im *Image) MediaType() string { return v1.MediaTypeImageManifest }

// Build writes the image of req.Commit into store under req.Repository,
// by digest only (Tag names it afterwards). Layers already in the store
// are not uploaded again.
func Build(ctx context.Context, repo *ostree.Repo, store ContentStore, req BuildRequest) (*Image, error) {
	if !validRepository(req.Repository) {
		return nil, fmt.Errorf("build image: %q is not a valid repository name", req.Repository)
	}
	arch, err := imagename.OCIArch(req.Arch)
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	if strings.TrimSpace(req.Version) == "" {
		return nil, fmt.Errorf("build image: a version is required")
	}
	cm, err := repo.ReadCommit(req.Commit)
	if err != nil {
		return nil, fmt.Errorf("build image of %s: %w", req.Commit, err)
	}
	entries, err := walkTree(ctx, repo, cm.RootTree, cm.RootMeta)
	if err != nil {
		return nil, fmt.Errorf("build image of %s: %w", req.Commit, err)
	}
	groups := req.Layers
	if groups == nil {
		groups = DefaultLayers
	}
	plans := planLayers(entries, groups)
	tmp := req.TempDir
	if tmp == "" {
		tmp = os.TempDir()
	}

	layers := make([]builtLayer, len(plans))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, runtime.GOMAXPROCS(0)))
	var done atomic.Int32
	for i, p := range plans {
		g.Go(func() error {
			l, err := buildLayer(gctx, repo, store, req.Repository, p, tmp)
			if err != nil {
				return fmt.Errorf("layer %s: %w", p.name, err)
			}
			layers[i] = l
			n := done.Add(1)
			if req.Progress != nil {
				req.Progress(int(n), len(plans))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("build image of %s: %w", req.Commit, err)
	}

	created := cm.Time()
	labels := map[string]string{
		imagename.LabelCommit:   req.Commit.String(),
		imagename.LabelBootable: "true",
		imagename.LabelBootc:    "1",
		imagename.LabelVersion:  req.Version,
	}
	cfg := v1.Image{
		Created:  &created,
		Platform: v1.Platform{Architecture: arch, OS: "linux"},
		Config:   v1.ImageConfig{Labels: labels},
		RootFS:   v1.RootFS{Type: "layers"},
	}
	descs := make([]v1.Descriptor, len(layers))
	for i, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.diffID)
		cfg.History = append(cfg.History, v1.History{Created: &created, CreatedBy: "mxos-update bootimage", Comment: l.name})
		descs[i] = v1.Descriptor{MediaType: LayerMediaType, Digest: l.digest, Size: l.size}
	}
	ann := map[string]string{}
	for k, v := range req.Annotations {
		ann[k] = v
	}
	for k, v := range labels {
		ann[k] = v
	}
	return writeImage(ctx, store, req.Repository, cfg, descs, ann)
}

// writeImage stores the config and then the manifest.
func writeImage(ctx context.Context, store ContentStore, repo string, cfg v1.Image, layers []v1.Descriptor, ann map[string]string) (*Image, error) {
	cb, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	cd := digest.FromBytes(cb)
	if err := store.PutBlob(ctx, repo, cd, int64(len(cb)), bytes.NewReader(cb)); err != nil {
		return nil, fmt.Errorf("storing image config: %w", err)
	}
	m := v1.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   v1.MediaTypeImageManifest,
		Config:      v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: cd, Size: int64(len(cb))},
		Layers:      layers,
		Annotations: ann,
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("image manifest: %w", err)
	}
	md, err := store.PutManifest(ctx, repo, "", v1.MediaTypeImageManifest, mb)
	if err != nil {
		return nil, fmt.Errorf("storing image manifest: %w", err)
	}
	if want := digest.FromBytes(mb); md != want {
		return nil, fmt.Errorf("storing image manifest: the store named it %s, its digest is %s", md, want)
	}
	return &Image{Repository: repo, Digest: md, Manifest: mb, Config: cb, Layers: layers}, nil
}

// Tag points each tag of repo at the image. Tag after everything the
// image needs (signature, release record) is in place: clients follow tags.
func Tag(ctx context.Context, store ContentStore, im *Image, tags ...string) error {
	for _, t := range tags {
		if !imagename.ValidTag(t) {
			return fmt.Errorf("tag %q is not a valid OCI tag", t)
		}
		d, err := store.PutManifest(ctx, im.Repository, t, im.MediaType(), im.Manifest)
		if err != nil {
			return fmt.Errorf("tagging %s:%s: %w", im.Repository, t, err)
		}
		if d != im.Digest {
			return fmt.Errorf("tagging %s:%s: the store named it %s, not %s", im.Repository, t, d, im.Digest)
		}
	}
	return nil
}

func validRepository(repo string) bool {
	if repo == "" || len(repo) > 255 {
		return false
	}
	for _, c := range strings.Split(repo, "/") {
		if !imagename.ValidComponent(c) {
			return false
		}
	}
	return true
}

// DeriveRequest describes a promotion: the image at Repository:From (a tag
// or a digest) with its ostree.commit label set to Commit.
type DeriveRequest struct {
	Repository string
	From       string
	Commit     ostree.Checksum
}

// Load reads the image at repo:reference and its config, checking both
// against their digests and that it is one of ours (it has an ostree.commit
// label).
func Load(ctx context.Context, store ContentStore, blobs BlobFunc, repo, reference string) (*Image, *v1.Manifest, *v1.Image, error) {
	mt, mb, md, err := store.GetManifest(ctx, repo, reference)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("image %s:%s: %w", repo, reference, err)
	}
	if digest.FromBytes(mb) != md {
		return nil, nil, nil, fmt.Errorf("image %s:%s: manifest does not match its digest %s", repo, reference, md)
	}
	if d, err := digest.Parse(reference); err == nil && d != md {
		return nil, nil, nil, fmt.Errorf("image %s@%s: the store returned %s", repo, reference, md)
	}
	if mt != v1.MediaTypeImageManifest {
		return nil, nil, nil, fmt.Errorf("image %s:%s: %w: manifest type %q", repo, reference, imagename.ErrNotBootable, mt)
	}
	var m v1.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return nil, nil, nil, fmt.Errorf("image %s:%s: manifest: %w", repo, reference, err)
	}
	if m.Config.MediaType != v1.MediaTypeImageConfig || m.Config.Size > maxConfigSize || m.Config.Size < 0 {
		return nil, nil, nil, fmt.Errorf("image %s:%s: %w: config %s of %d bytes", repo, reference, imagename.ErrNotBootable, m.Config.MediaType, m.Config.Size)
	}
	rc, err := blobs(ctx, repo, m.Config.Digest)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("image %s:%s: config: %w", repo, reference, err)
	}
	cb, err := io.ReadAll(io.LimitReader(rc, m.Config.Size+1))
	rc.Close()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("image %s:%s: config: %w", repo, reference, err)
	}
	if int64(len(cb)) != m.Config.Size || digest.FromBytes(cb) != m.Config.Digest {
		return nil, nil, nil, fmt.Errorf("image %s:%s: config does not match its digest %s", repo, reference, m.Config.Digest)
	}
	var cfg v1.Image
	if err := json.Unmarshal(cb, &cfg); err != nil {
		return nil, nil, nil, fmt.Errorf("image %s:%s: config: %w", repo, reference, err)
	}
	if _, err := ostree.ParseChecksum(cfg.Config.Labels[imagename.LabelCommit]); err != nil {
		return nil, nil, nil, fmt.Errorf("image %s:%s: %w: no valid %s label", repo, reference, imagename.ErrNotBootable, imagename.LabelCommit)
	}
	im := &Image{Repository: repo, Digest: md, Manifest: mb, Config: cb, Layers: m.Layers}
	return im, &m, &cfg, nil
}

// Derive stores the promoted image: the source's layers (nothing is
// uploaded but the new config and manifest) and a config that differs
// from the source's only in the ostree.commit label (also changed in the
// manifest annotations). Whoever calls it must have checked the source's
// signature when the store is not trusted.
func Derive(ctx context.Context, store ContentStore, blobs BlobFunc, req DeriveRequest) (*Image, error) {
	_, m, cfg, err := Load(ctx, store, blobs, req.Repository, req.From)
	if err != nil {
		return nil, fmt.Errorf("derive: %w", err)
	}
	if req.Commit.IsZero() {
		return nil, fmt.Errorf("derive: no commit")
	}
	labels := map[string]string{}
	for k, v := range cfg.Config.Labels {
		labels[k] = v
	}
	labels[imagename.LabelCommit] = req.Commit.String()
	cfg.Config.Labels = labels
	ann := map[string]string{}
	for k, v := range m.Annotations {
		ann[k] = v
	}
	ann[imagename.LabelCommit] = req.Commit.String()
	return writeImage(ctx, store, req.Repository, *cfg, m.Layers, ann)
}

// epoch is every entry's mtime: ostree stores none, and a fixed time keeps
// layers identical between releases.
var epoch = time.Unix(0, 0).UTC()
