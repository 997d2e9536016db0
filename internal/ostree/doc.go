// Package ostree owns the archive-mode OSTree repository: the on-disk layout,
// the object formats (commit, dirtree, dirmeta, content "filez", detached
// commitmeta), refs, the summary file, fsck, checkout, committing a directory
// or tarball and importing commits from other OSTree repositories.
//
// The repository is byte-compatible with libostree, so the stock `ostree`
// client can pull, verify and fsck it:
//
//	repo/
//	  config                       [core] repo_version=1, mode=archive-z2
//	  objects/XX/<62 hex>.commit   metadata objects: name = SHA-256 of the GVariant bytes
//	  objects/XX/<62 hex>.dirtree
//	  objects/XX/<62 hex>.dirmeta
//	  objects/XX/<62 hex>.filez    content: BE32 len, 4 zero bytes, (tuuuusa(ayay)) header, raw deflate
//	  objects/XX/<62 hex>.commitmeta  detached metadata (signatures); not content-addressed
//	  refs/heads/<ref>             "<64 hex>\n"
//	  summary, summary.sig
//	  tmp/                         staging area of running transactions
//	  tmp/uploads/<id>/            upload sessions: verified objects a remote
//	                               client sent, moved into objects/ by Upload.Commit
//
// Writes are atomic: every object is written to a staging directory under
// tmp/, its checksum computed while writing and compared to the expected one,
// the file system synced, and only then renamed under its checksum. A ref is
// moved only after every object reachable from its commit is in place, so a
// crash at any point leaves either the old or the new ref, both complete.
// Leftover staging directories of dead writers are removed on the next write.
//
// Remote publishing stages objects in upload sessions (upload.go), which
// outlive transactions so an interrupted upload resumes: each object is
// verified (hash, format, size cap) and synced before it is named in the
// session, and Upload.Commit moves a session's objects into objects/ under
// the write lock with the same sync-rename-sync as Txn.Commit.
//
// There is no maintained pure-Go libostree; the formats here are written from
// the notes in shared/notes/ostree-formats.md and checked against the real
// `ostree` tool in the tests.
package ostree
