package release

import (
	"context"
	"fmt"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/mxos-linux/mxos-update/internal/oci/bootimage"
	"github.com/mxos-linux/mxos-update/internal/oci/imagename"
	"github.com/mxos-linux/mxos-update/internal/oci/ocisig"
	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// ImageStep makes the bootable OCI image of a release (internal/oci/
// bootimage) once its commit is signed, signs it with the release key
// (internal/oci/ocisig) and, when the release is accepted, tags it with
// the channel and <channel>-<version>. The image goes to the repository
// mxos/<major>/<arch> named by the channel ref.
//
// Tags move last: a refused release leaves an untagged, signed image that
// the registry's garbage collection removes, and clients following a tag
// never see an image whose release was not accepted.
type ImageStep struct {
	Store bootimage.ContentStore
	// Blobs reads blobs of Store (promotion reads the source config and
	// signature payloads).
	Blobs bootimage.BlobFunc
	// Signer is the release key as a sigstore signer.
	Signer signature.Signer
	// Host is host[:port] clients pull from; signatures name
	// Host/repository:tag.
	Host    string
	TempDir string
	// Progress, when set, is told as layers are stored.
	Progress func(done, total int)

	// Image is the last image built or derived.
	Image *bootimage.Image
}

// Build makes and signs the image of commit on ref. It is not tagged yet.
func (s *ImageStep) Build(ctx context.Context, repo *ostree.Repo, ref, version string, commit ostree.Checksum) (*bootimage.Image, error) {
	name, arch, channel, err := imagename.RepositoryForRef(ref)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	im, err := bootimage.Build(ctx, repo, s.Store, bootimage.BuildRequest{Repository: name, Arch: arch, Version: version,
		Commit: commit, TempDir: s.TempDir, Progress: s.Progress})
	if err != nil {
		return nil, err
	}
	if err := s.sign(ctx, im, channel, version); err != nil {
		return nil, err
	}
	s.Image = im
	return im, nil
}

// Derive makes and signs the promoted image: the image tagged
// <from>-<version> with its ostree.commit label set to commit. The source
// must carry a valid signature of the release key and name fromCommit:
// the registry is not trusted to hand back what was published.
func (s *ImageStep) Derive(ctx context.Context, toRef, from, version string, fromCommit, commit ostree.Checksum) (*bootimage.Image, error) {
	name, _, channel, err := imagename.RepositoryForRef(toRef)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	src := imagename.Tags(from, version)[1]
	im, _, _, err := bootimage.Load(ctx, s.Store, s.Blobs, name, src)
	if err != nil {
		return nil, fmt.Errorf("image of %s %s: %w", from, version, err)
	}
	pub, err := s.Signer.PublicKey()
	if err != nil {
		return nil, err
	}
	if _, err := ocisig.Verify(ctx, s.Store, ocisig.BlobFunc(s.Blobs), name, im.Digest, pub); err != nil {
		return nil, fmt.Errorf("image of %s %s: %w", from, version, err)
	}
	if got, err := imagename.CommitLabel(im.Config); err != nil || got != fromCommit.String() {
		return nil, fmt.Errorf("image of %s %s names commit %q, the release is %s", from, version, got, fromCommit)
	}
	out, err := bootimage.Derive(ctx, s.Store, s.Blobs, bootimage.DeriveRequest{Repository: name, From: im.Digest.String(), Commit: commit})
	if err != nil {
		return nil, err
	}
	if err := s.sign(ctx, out, channel, version); err != nil {
		return nil, err
	}
	s.Image = out
	return out, nil
}

// sign signs im once per tag it will get, so clients whose policy wants
// the exact reference (matchRepoDigestOrExact) accept either tag.
func (s *ImageStep) sign(ctx context.Context, im *bootimage.Image, channel, version string) error {
	for _, tag := range imagename.Tags(channel, version) {
		ref := s.Host + "/" + im.Repository + ":" + tag
		if err := ocisig.Sign(ctx, s.Store, im.Repository, im.Digest, ref, s.Signer); err != nil {
			return fmt.Errorf("signing image %s: %w", im.Digest, err)
		}
	}
	return nil
}

// Tag points the channel's tags at im.
func (s *ImageStep) Tag(ctx context.Context, im *bootimage.Image, ref, version string) error {
	_, _, channel, err := imagename.RepositoryForRef(ref)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	return bootimage.Tag(ctx, s.Store, im, imagename.Tags(channel, version)...)
}
