// Package registry is mxos-server's OCI registry: an http.Handler for the
// distribution spec at /v2/ (pull, push, content discovery with the
// referrers API, content management) over content on disk, a Go API
// (ContentStore) to write images without HTTP, and garbage collection.
//
// It is hand-written rather than built on distribution/distribution or zot:
// those bring their own configuration, auth, storage drivers and hundreds
// of packages, lack pieces we need (distribution has no referrers API and
// no sha512), and would not share the OSTree repository's storage layer
// and token auth. The whole spec surface is small; the conformance suite
// (internal/e2e TestRegistryConformance) holds us to it.
//
// # On-disk layout
//
// Under the server's DATA/oci:
//
//	blobs/<alg>/<hh>/<hex>          content, via internal/storage (verified before visible)
//	blobs/.tmp/                     blob writes in progress
//	repos/<name>/_layers/<alg>/<hex>     empty file: blob pushed to or mounted in <name>
//	repos/<name>/_manifests/<alg>/<hex>  JSON {mediaType, size, subject}; the bytes are a blob
//	repos/<name>/_tags/<tag>             the digest the tag points at
//	repos/<name>/_referrers/<alg>-<hex>/<alg>-<hex>  descriptor of a manifest whose subject is the first digest
//	uploads/<id>/{info,data}        upload sessions: repository and start time; bytes so far
//	tmp/                            temporary files of atomic metadata writes
//
// Repository names are checked against the spec's pattern, so each
// component starts with [a-z0-9] and cannot be "..", nor collide with the
// underscore directories. Digests are sha256 or sha512 in canonical hex,
// tags the spec's tag pattern, upload ids 32 hex digits: no request string
// becomes a path before it is validated. Metadata files are written
// atomically (temporary file, fsync, rename, directory fsync), in an order
// that never lets a tag point at a manifest, or a manifest at a blob, that
// is not stored yet. Manifests are stored byte for byte as pushed.
//
// Blobs are shared by all repositories; a repository sees only the ones
// linked into it (pushed, mounted, or written through ContentStore), as in
// distribution. A blob GET is one stat of the link, one open and fstat,
// and http.ServeContent from the *os.File, so Linux uses sendfile and Range
// requests are served the same way; nothing is hashed on the read path.
//
// # What is refused
//
// Manifests over MaxManifestSize (4 MiB, 413 SIZE_INVALID); manifests that
// are ambiguous (no mediaType and none inferable, a mediaType differing
// from the Content-Type, an index with config or layers, an image manifest
// with manifests) or not schema version 2 (MANIFEST_INVALID); image
// manifests whose config or layers are not in the repository
// (MANIFEST_BLOB_UNKNOWN; index children and non-distributable layers may
// be missing, as the spec allows, so the conformance suite's "sparse"
// image data is deliberately refused); blobs whose bytes do not match their
// digest or size (DIGEST_INVALID, SIZE_INVALID; nothing is stored);
// chunks whose Content-Range does not start at the current end or does not
// match the body (416 BLOB_UPLOAD_INVALID; the session is unchanged and the
// chunk can be resent); bad names (NAME_INVALID) and digests with other
// algorithms or path characters (DIGEST_INVALID).
//
// # Auth
//
// Reads are public. Every write (POST, PUT, PATCH, DELETE, and upload
// session status) goes through the Authorize function the server passes
// to NewHandler, which returns nil, ErrUnauthorized (401 with
// `WWW-Authenticate: Basic realm="mxos"`) or ErrDenied (403 DENIED).
// mxos-server accepts an API token of the release role, as the basic-auth
// password or a bearer token. GET /v2/ without credentials answers 401 with
// the challenge: containers/image and docker learn the auth scheme only
// from that request, and go on anonymously when they have no credentials.
//
// # Garbage collection
//
// Store.GC runs online. Live manifests per repository are the tagged ones,
// the children of live indexes, and, transitively, manifests whose subject
// is live (referrers, signatures) or whose attachment tag names a live
// manifest (sigstore's sha256-<hex>.sig/.att/.sbom and the referrers tag
// schema sha256-<hex>): attachments follow their subject, so deleting an
// image collects its signatures. Everything else is removed, then blob
// links and blobs no live manifest uses (the removed links are synced
// before the first blob goes, so a power cut never keeps a link to a
// deleted blob). Anything younger than
// Options.GCGrace (default 1 h) is kept, and pushing a blob or a link
// refreshes its time, so a push in progress (blobs first, manifest last)
// is never collected. Writes that make content reachable hold a shared
// lock that GC takes exclusively, so a manifest cannot be accepted against
// a blob being deleted. Upload sessions idle for Options.UploadTTL
// (default 24 h) are removed. The lock is per process; another process
// writing through ContentStore (mxosctl on the server's data directory)
// is protected by the grace period alone, which is enough for any push
// that finishes within it. The server runs GC every 24 h
// (server.Config.RegistryGCInterval) and on POST /api/v1/registry/gc
// (release role).
//
// # Restarts
//
// Everything is on disk: tags, manifests, referrers and upload sessions
// survive a restart. An upload's offset is the size of its data file, so a
// session started before a restart is continued after it; an id the store
// does not know is BLOB_UPLOAD_UNKNOWN. A chunk cut off by a crash leaves
// the bytes that arrived, which the session's Range reports.
package registry
