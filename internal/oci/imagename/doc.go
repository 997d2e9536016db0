// Package imagename owns the names and labels of MxOS bootable images,
// shared by the image builder (bootimage), the release pipeline, mxosctl
// and the device's image fetch: the repository mxos/<major>/<arch> a
// channel ref maps to, the tags a release gets (<channel> and
// <channel>-<version>), the OCI arch names, and the labels ostree-ext
// writes for encapsulated commits (ostree.commit, ostree.bootable,
// containers.bootc, org.opencontainers.image.version). It is pure: no
// I/O and no project imports, so the device side links it without the
// registry or the builder.
package imagename
