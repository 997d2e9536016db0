// Package storage owns where the server's bytes live on disk: a
// content-addressed blob store on a directory, and the one durable-write
// primitive every package uses, on the server and on the device.
//
// # Durable writes
//
// WriteFile is the only way this code base replaces a file: temporary
// file, fsync, rename, fsync of the directory. MkdirAll fsyncs the parent
// of every directory it makes, Rename fsyncs both directories of a move,
// SyncDir and Syncfs are the building blocks for the few callers that
// rename many files at once (an OSTree transaction, a deployment).
// Options choose where the temporary file lives (TempDir: a directory its
// owner clears after a crash; TempPath: a fixed name) and NoClobber
// installs by hard link so an existing file is never replaced (keys).
//
// We wrote this instead of using github.com/google/renameio/v2 because
// renameio fsyncs the file but not the directory after the rename (its
// WithSyncDirectory change, google/renameio#42, is unmerged), so the
// rename itself can be lost on a power cut; it has no durable MkdirAll,
// no no-clobber install and no fixed temporary name, all of which the
// callers here need. The whole primitive is about a hundred lines, and
// the e2e crash-point and power-loss tests exercise it on every path.
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
// distributed when outgrown") lives in the subpackages: object (the Store
// interface, a directory backend, a blob store with this one's method set
// on any Store), s3store (the S3 backend), storageconfig (the server's
// --storage file) and storagetest (the conformance suite and a real S3
// server for tests). This package stays free of them: the device agent
// links it for WriteFile.
package storage
