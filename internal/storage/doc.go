// Package storage owns where the server's bytes live on disk: a
// content-addressed blob store on a directory, and the small atomic-file
// helpers (WriteFileAtomic, SyncDir, Syncfs) the OSTree repository and the
// OCI registry share.
//
// The blob store's one rule is that nothing unverified is ever visible
// under a digest. Put writes to a temporary file in DIR/.tmp (the same file
// system), hashing and counting while it writes; only when the digest and
// size match does it fsync the file and rename it to
// DIR/<algorithm>/<first two hex digits>/<hex>, then fsync the directory.
// A crash leaves at most a stray temporary file, which Open removes. Only
// sha256 and sha512 digests are accepted: they are what the OCI
// distribution spec names, and refusing the rest keeps paths predictable.
//
// Blob files are read-only (0444) and served straight from the file, so
// net/http can use sendfile. Stat, Open and Delete take a validated
// digest, so no caller-supplied string ever becomes a path by itself.
//
// S3-compatible object storage (DESIGN.md, "embedded by default,
// distributed when outgrown") will be a second implementation of the same
// operations; it is not written yet.
package storage
