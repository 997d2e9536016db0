// Package object owns the key/value view of where the server's files
// live: the Store interface, with a local directory backend (Dir) here and
// an S3-compatible one in internal/storage/s3store, and what is built on
// any Store: a content-addressed blob store (Blobs, the registry's blobs
// in a bucket), Mirror (an OSTree repository directory copied to a store
// in a reader-safe order) and Serve (GET and HEAD of an object, streamed
// or redirected to a presigned URL).
//
// # The contract (storagetest.Run checks it on every backend)
//
//   - Keys are checked by CheckKey before any backend sees them: "../x",
//     "/x", "a//b", "a/./b", control characters, backslashes and the
//     names the directory backend keeps for itself (".mxos-…") are
//     ErrBadKey, the same on disk and in a bucket.
//   - PutVerified is the content-addressed write: nothing is visible under
//     the key until the bytes hashed to the digest (sha256 or sha512) and
//     counted the size; a mismatch stores nothing; an existing object is
//     never replaced (If-None-Match: *), since a digest names one content.
//   - Put with a Condition is the mutable write: IfNoneMatch creates only,
//     IfMatch replaces only the version whose ETag the writer read. Two
//     writers doing read-modify-write cannot interleave; the loser gets
//     ErrPrecondition and reads again.
//   - A Reader reads one version: after a replace it reads the old bytes
//     whole or fails, never a mix.
//   - Missing keys are ErrNotFound everywhere, Delete included (S3 itself
//     answers 204 for those).
//
// # The directory backend
//
// Dir writes as the rest of the server does (temporary file in .mxos-tmp,
// fsync, rename, fsync of the directory) and opens every key through an
// os.Root, so no key and no planted symbolic link leads outside. Its
// conditional writes check and rename under a mutex plus an flock(2) on
// .mxos-lock, so two processes sharing the directory are serialized too.
// ETags are "inode-size-mtime": a replacement is always a new file.
//
// The server's default path does not go through Dir: the registry keeps
// using storage.Blobs and /repo/ its own file handler (sendfile, open
// file cache), unchanged. Dir is the reference the S3 backend is tested
// against and the store for tools that want the interface on a disk.
//
// # Serving from a bucket: stream or redirect
//
// Serve streams by default: one GET to the bucket, ETag and Range passed
// through http.ServeContent. With Redirect, an immutable object is a 307
// to a presigned URL (DefaultRedirectTTL, 10 minutes), which takes the
// bytes off the server but needs the bucket's endpoint reachable by
// devices and costs them a second connection. BenchmarkServe in s3store
// measures both on loopback (README, "Storage"): redirects are cheaper
// for the server at every size, and about equal for the client from a
// few MiB on, where the transfer dominates.
package object
