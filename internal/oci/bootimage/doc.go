// Package bootimage owns the bootable OCI image of a release: it turns an
// OSTree commit of the archive repository into an image-spec v1 manifest
// and config whose layers, unpacked in order, give exactly the committed
// tree, and it derives a promoted image from an existing one.
//
// Layers are reproducible: entries in path order, mtime 0, owner, mode
// and extended attributes (PAX SCHILY.xattr records) from the dirmeta and
// file headers, no user or group names, hardlinks only for identical
// content objects inside one layer, gzip with no name or time. The same
// commit therefore gives the same manifest digest on every run with the
// same compressor version. The tree is split by fixed path groups
// (DefaultLayers: kernel and firmware, /usr/lib, /usr/share, binaries,
// the rest of /usr, everything else), so a release that changes only a
// few packages re-uploads only the layers they live in, and a promotion
// (a new commit with the same root tree) re-uploads nothing: Derive keeps
// the layers and writes a new config whose only change is the
// ostree.commit label.
//
// Each layer carries its own copies of the directories above its entries,
// with the same metadata, so the layers unpack in any order to the same
// tree; the root directory itself is not in the layers (a container root
// is made by the unpacker).
//
// The image is labelled the way ostree-ext labels encapsulated commits
// (ostree.commit, ostree.bootable=true, containers.bootc=1,
// org.opencontainers.image.version), and the same keys are copied into
// the manifest annotations. It lives in the repository mxos/<major>/<arch>
// derived from the channel ref, tagged <channel> and <channel>-<version>.
// Those names and labels are package imagename's, which the device shares
// without linking this builder.
//
// Layers are plain trees, not ostree-ext's "tar format v1" (which also
// carries the ostree objects): bootc imports such an image as layers, and
// its ostree.commit label names the signed commit the same tree has in the
// OSTree repository.
package bootimage
