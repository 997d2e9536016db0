package unpack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxJSON bounds index.json, manifests and configs read from a layout.
const maxJSON = 4 << 20

// ErrNotFound: the layout has no image under the name asked for.
var ErrNotFound = errors.New("image not found in layout")

// Image is one image of an OCI layout: its manifest and config, both
// verified against their digests.
type Image struct {
	ManifestDigest digest.Digest
	Manifest       v1.Manifest
	Config         v1.Image
}

// Layout is an OCI image layout directory (index.json, blobs/).
type Layout struct {
	root *os.Root
}

// OpenLayout opens an OCI image layout for reading.
func OpenLayout(dir string) (*Layout, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("OCI layout: %w", err)
	}
	b, err := readLimited(r, "oci-layout", 4096)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	var l v1.ImageLayout
	if err := json.Unmarshal(b, &l); err != nil || l.Version != v1.ImageLayoutVersion {
		r.Close()
		return nil, fmt.Errorf("OCI layout %s: %w: oci-layout version %q", dir, ErrUnsupported, l.Version)
	}
	return &Layout{root: r}, nil
}

// Close releases the layout.
func (l *Layout) Close() error { return l.root.Close() }

func readLimited(r *os.Root, name string, limit int64) ([]byte, error) {
	f, err := r.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrTooLarge, name, limit)
	}
	return b, nil
}

func blobPath(d digest.Digest) string { return "blobs/" + d.Algorithm().String() + "/" + d.Encoded() }

// OpenBlob opens the blob d (not verified: Apply verifies layers).
func (l *Layout) OpenBlob(d digest.Digest) (io.ReadCloser, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	return l.root.Open(blobPath(d))
}

// readJSON reads a small blob, checks its digest and size, and decodes it.
func (l *Layout) readJSON(desc v1.Descriptor, v any) error {
	if err := desc.Digest.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	if desc.Size > maxJSON {
		return fmt.Errorf("%w: %s is %d bytes", ErrTooLarge, desc.Digest, desc.Size)
	}
	b, err := readLimited(l.root, blobPath(desc.Digest), maxJSON)
	if err != nil {
		return fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if desc.Digest.Algorithm().FromBytes(b) != desc.Digest || (desc.Size > 0 && int64(len(b)) != desc.Size) {
		return fmt.Errorf("blob %s: %w", desc.Digest, ErrDigest)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	return nil
}

// Image finds the image tagged name (annotation
// org.opencontainers.image.ref.name) or, when name is a digest, the
// manifest with that digest, and reads its manifest and config. An empty
// name picks the only manifest of the index.
func (l *Layout) Image(name string) (*Image, error) {
	b, err := readLimited(l.root, "index.json", maxJSON)
	if err != nil {
		return nil, fmt.Errorf("OCI layout: %w", err)
	}
	var idx v1.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("OCI layout: index.json: %w", err)
	}
	var found []v1.Descriptor
	for _, m := range idx.Manifests {
		switch {
		case name == "":
		case m.Digest.String() == name:
		case m.Annotations[v1.AnnotationRefName] == name:
		default:
			continue
		}
		found = append(found, m)
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("OCI layout: %w: %q matches %d manifests", ErrNotFound, name, len(found))
	}
	desc := found[0]
	if desc.MediaType != v1.MediaTypeImageManifest {
		return nil, fmt.Errorf("OCI layout: %w: %s is %q, not a single image manifest", ErrUnsupported, desc.Digest, desc.MediaType)
	}
	img := &Image{ManifestDigest: desc.Digest}
	if err := l.readJSON(desc, &img.Manifest); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	m := img.Manifest
	if m.MediaType != "" && m.MediaType != v1.MediaTypeImageManifest {
		return nil, fmt.Errorf("manifest: %w: media type %q", ErrUnsupported, m.MediaType)
	}
	if m.Config.MediaType != v1.MediaTypeImageConfig {
		return nil, fmt.Errorf("manifest: %w: config media type %q", ErrUnsupported, m.Config.MediaType)
	}
	if err := l.readJSON(m.Config, &img.Config); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if img.Config.RootFS.Type != "layers" || len(img.Config.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("config: %w: %d diff_ids for %d layers", ErrUnsupported, len(img.Config.RootFS.DiffIDs), len(m.Layers))
	}
	return img, nil
}

// Unpack applies every layer of img to dest (an empty, private staging
// directory) and finishes it. On error dest holds an unverified partial
// tree and must be removed by the caller.
func (l *Layout) Unpack(ctx context.Context, img *Image, dest string, opts Options) (Stats, error) {
	u, err := New(dest, opts)
	if err != nil {
		return Stats{}, err
	}
	for i, layer := range img.Manifest.Layers {
		f, err := l.OpenBlob(layer.Digest)
		if err != nil {
			u.Close()
			return u.stats, fmt.Errorf("layer %s: %w", layer.Digest, err)
		}
		err = u.Apply(ctx, f, layer, img.Config.RootFS.DiffIDs[i])
		f.Close()
		if err != nil {
			u.Close()
			return u.stats, err
		}
	}
	return u.Finish()
}
