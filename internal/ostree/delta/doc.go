// Package delta owns OSTree static deltas in libostree's format: the
// superblock and part codecs, generating deltas on the server, and reading
// parts back as verified objects on the device.
//
// Layout and naming (deltas/, delta-indexes/, the summary's
// ostree.static-deltas) belong to package ostree (deltapath.go), which
// lists whatever deltas are stored when it writes the summary.
//
// # What is generated
//
// A delta from F to T carries every object T reaches that F does not (all
// of them for a delta from scratch), except T's commit, which the
// superblock holds whole, with T's detached metadata (signatures) under
// "deltas/<path>/commitmeta" as libostree expects. Each object is one
// 'S' (open-splice-and-close) operation over its whole bytes: metadata
// objects as stored, content objects as their uncompressed bytes (or
// symlink target) with a (uid, gid, mode) and xattrs index. Unchanged
// files are never sent (they are in F); a changed file, and a new one with
// a file of the same name elsewhere in F, may instead be sent as ranges of
// that file plus new bytes (diff.go). No bsdiff.
//
// Bounds: a part carries at most MaxPartPayload (16 MiB) of object bytes
// plus one object, and a content object larger than MaxInlineObject
// (8 MiB) is a fallback the client fetches loose, so a part never holds
// more than 24 MiB of object bytes and generation holds at most one part
// (and its compressed copy) in memory; the system's xz, when it compresses
// (compress.go), needs about 100 MB more for a full part. Parts are
// xz-compressed (compression byte 'x'; CRC64, a dictionary the size of
// the payload, 64 KiB to 8 MiB): the one compression
// both ostree 2022.7 and 2025.2 read for any part size (uncompressed parts
// over 16 KiB hit libostree's mmap-offset bug). Generation of one
// release's deltas stops after DefaultTimeout; it runs in the publishing
// transaction, which takes the write lock only, so the server keeps
// serving meanwhile.
//
// Parts are deterministic: regenerating a delta (after re-signing) gives
// the same part bytes under the same names, which the server caches as
// immutable; only the superblock changes.
//
// # Applying (apply.go)
//
// The device reads a superblock only when the signed summary lists its
// SHA-256, and each part only up to the size the superblock gives, checked
// against the superblock's SHA-256 before it is decompressed; the payload
// may inflate to at most PartLimit of its declared size; then each object
// is rebuilt, hashed and checked against its name by the same
// ostree.Txn writes as loose objects. Only 'S' operations are applied:
// a delta made by libostree's rollsum or bsdiff is ErrUnsupported and the
// caller pulls loose objects instead.
package delta
