// Package server owns mxos-server's HTTP surface: the listener, timeouts,
// graceful shutdown, request logging, health probes and the static OSTree
// repository under /repo/.
//
// The repository is served read-only, straight from DataDir/repo, and is
// written by another package through temp files and atomic renames. Serving
// therefore follows these rules:
//
//   - Every path is resolved through an os.Root, so no request can reach a
//     file outside the repository ("..", symlinks, NUL bytes, backslashes).
//     Objects are opened relative to their objects/XX directory (itself
//     opened through the os.Root) with O_NOFOLLOW, which is the same walk.
//   - A file that can change (summary, refs, …) is opened once per request
//     and that descriptor is served, so a concurrent rename never yields a
//     mix of two versions, and its ETag is computed from that descriptor.
//   - Temporary and private parts of the repository (dot files, tmp/, state/)
//     and anything but regular files are never served.
//   - Small content-addressed objects may be served from a cache of open
//     descriptors or, up to 16 KiB each and Config.ObjectMemory in all, of
//     their bytes (objCache): their bytes are fixed by their names. An
//     object enters the cache on its second request; the first (every
//     request of a pull) is openat, fstat, pread, close. A deleted object
//     is served for at most about two minutes more.
//   - Small bodies that do not fit net/http's 4 KiB connection buffer with
//     their headers are sent with TCP_CORK set (writeBody), so the response
//     leaves in one burst rather than two; sendfile responses are never
//     corked (that doubled their CPU cost).
//   - The repository directory itself must stay in place while serving;
//     everything inside it may change.
//   - GET and HEAD under /repo/ on plain TCP are served by internal/fastget,
//     with Config.RepoLoops event loops that run this package's handler
//     chain inline (mxos-server --repo-loops; half the CPUs by default).
//     That is safe only because, with the repository on local disk, the
//     chain does nothing for these requests but read files and update
//     counters; with the repository in a bucket (repostore.go) there are
//     no loops. Every other request, and TLS, is net/http's.
//
// Caching follows the repository layout:
//
//	objects/XX/<62 hex>.{commit,dirtree,dirmeta,filez}   immutable, ETag = name
//	deltas/<…>/<part number>                             immutable, ETag = name
//	summary, summary.sig, config, refs/…,                revalidated (no-cache),
//	objects/XX/<62 hex>.commitmeta, delta-indexes/…,     ETag = SHA-256 of content
//	deltas/<…>/superblock
//
// Later handlers (update API, admin API, the /v2/ registry, /metrics) live in
// their own files and register themselves in (*Server).routes. auth.go
// owns who may call them: bearer tokens (expired ones refused), the role
// matrix of internal/auth, device credentials bound to one device id
// (forDevice), enrollment and rotation, and the rate-limited audit of
// every denied (401, 403) request.
//
// A device's check and report are authorized from the credential index
// (internal/credindex: every live bound device credential in memory,
// loaded at start, following the token change feed every second and at
// once after this server's own revocations and rotations), so a fleet's
// checks read no token row; a credential the index does not hold is read
// from the database and then indexed. Other routes read their token
// (cached for a second). A revocation through this server applies to the
// next request, through any other process within a second.
//
// Enrollment limits (issue 9): an enroll token is baked into images, so
// anyone holding one can enroll invented ids, get a credential for each
// and report release failures. Two defences, both small. First, one
// enroll token enrolls at most EnrollPerWindow (250) devices per
// EnrollWindow (an hour: a school imaged in a day) and its cap in all
// (tokens.max_devices from --max-devices, else EnrollCap, 500), counted
// from the credentials it issued (tokens.created_by); refusals are 429
// (Retry-After) and 403, audited as auth.denied within the denial rate
// limit. Ids an admin authorized are exempt. Second, db.RolloutStats
// leaves out devices enrolled after the rollout started, so ids enrolled
// during a rollout cannot halt (or pass) it; the limits bound the ids an
// attacker can plant before one. The cap counts by the token's name,
// which is unique among live tokens.
//
// Replicas (Config.RepoStore and a PostgreSQL Config.Store): nothing a
// device reads lives only on one replica's disk. The OSTree repository is
// mirrored into the bucket under the cluster lock, each writer first
// syncing the refs and static deltas other replicas put there, verified
// as a client verifies them (repostore.go, repodeltas.go). The signed
// channel metadata is one copy in the bucket: every change is made under
// the same lock on top of the bucket's newest copy and written back with
// conditional writes, and every replica pulls it, verified from its own
// root.json, when the cache change feed names a metadata change
// (metastore.go), then serves /metadata/ and decides checks from it. A
// single server (no bucket) keeps its metadata directory as before.
//
// Keep any
// ResponseWriter wrapper implementing io.ReaderFrom, or large files lose
// sendfile(2).
package server
