// Package channelmeta verifies, on the device, the signed channel metadata
// of MxOS Update (channelmeta/publish writes it): which releases (channel,
// arch, version → OSTree commit, ref, OCI digest) may be installed, and
// the state of each rollout. It is a TUF repository built with go-tuf v2,
// not a format of our own: devices get
// TUF's protection against rollback (older versions), freeze (expired
// files), mix-and-match (snapshot pins every role's version and hash) and
// wrong signers (each role has its own keys and threshold) from go-tuf's
// client workflow.
//
// # Files
//
// The repository is a directory, DATA/metadata/, served statically at
// /metadata/ and copyable as is to a CDN, a school's LAN mirror or a USB
// disk (principle 4). Consistent snapshots are on: devices fetch
//
//	N.root.json        every root version, kept forever (rotation chain)
//	timestamp.json     the only file polled without a version
//	N.snapshot.json    named by timestamp.json
//	N.targets.json     named by the snapshot
//	N.rollouts.json    named by the snapshot
//
// and root.json, snapshot.json, targets.json and rollouts.json are written
// beside them as the current copies. Every write is temp file + fsync +
// rename, in the order rollouts → snapshot → timestamp, so a reader never
// follows a name to a missing or partial file. Old versioned snapshot,
// targets and rollouts files are pruned (Options.KeepVersions).
//
// # Roles and keys
//
//	root  (root keys, offline; threshold configurable; 1 year)
//	 │  lists the keys and thresholds of every top-level role
//	 ├── targets    (release keys, offline; 90 days)
//	 │     releases/<channel>/<arch>/<version>   one target per release
//	 │     └── delegates rollouts/*/* (terminating) to:
//	 │         rollouts   (online keys; 7 days)
//	 │           rollouts/<channel>/<arch>        one target per rollout
//	 ├── snapshot   (online keys; 7 days)  pins targets + rollouts versions, lengths, hashes
//	 └── timestamp  (online keys; 1 day)   pins snapshot version, length, hash
//
// For now the release key doubles as the root key (threshold 1); Keys
// takes separate lists and thresholds so this can change without code.
//
// What each key can and cannot do:
//
//   - Root keys can replace any key, through a new N+1.root.json that a
//     threshold of both the old and the new root keys sign (RotateRoot,
//     Repo.AcceptRoot). Devices follow the chain from the root they ship
//     in keys/ and never accept a root signed only by new keys.
//   - Release keys decide what may be installed: the whole list of
//     releases with their commits. They cannot change keys. They sign on
//     the release team's machine (BuildTargets); the server only checks
//     and stores the signed bytes (AcceptTargets).
//   - The online key, held by the server, keeps the repository fresh
//     (timestamp, snapshot; Refresh) and signs rollout state (ramp, state,
//     halt). It cannot add, remove or change a release: it cannot sign
//     targets, and the delegation gives it only rollouts/<channel>/<arch>
//     paths (a releases/ path in its role is ignored and reported in
//     State.Ignored). A stolen online key can delay updates (stop
//     refreshing, halt a rollout, hold back a snapshot until expiry) or
//     gate them among release-signed commits, never install anything
//     else, and cannot roll back targets (snapshot versions only grow on
//     devices that saw them).
//   - The delegation's keys are, by construction, root's timestamp keys:
//     BuildTargets copies them from root, AcceptTargets refuses targets
//     that delegate anything else. Rotating the online key is therefore a
//     root rotation plus re-signed targets (Repo.RotateRoot does both).
//
// # Records
//
// A target's custom JSON is the record (Release or RolloutState), and its
// length and sha256 are over the record's canonical JSON (the OLPC form TUF
// signs with), so TUF's own target check has real bytes to check: the
// device recomputes the canonical form from the signed custom field and
// compares. Unknown fields survive (forward compatibility) and are covered
// by the hash. RolloutState carries channel and arch in addition to the
// fields of the issue, so that the record is self-describing.
//
// # Package split
//
// This package is the device side and the format: the client, the input
// checks, the records and their target paths, the file names and size
// limits. Everything that writes or signs metadata (Init, Repo, Refresh,
// BuildTargets, RotateRoot, key loading, k-of-n co-signing, role status)
// is in channelmeta/publish, which the server and mxosctl import and
// mxos-updater does not (TestDeviceSideDeps). The round-trip and
// rejection tests stay here, as an external test package: every one
// publishes with channelmeta/publish and loads with this package's Client.
//
// # Device side
//
// Client wraps go-tuf's updater with the shipped root, a cache directory
// (the trusted baseline between runs) and a fetcher over HTTP(S) or over a
// directory, both with hard size limits. Load returns the verified State;
// CheckOffer refuses an offer that is not release-signed for its channel
// and arch (ErrNotSigned) or whose commit, ref or OCI digest differs
// (ErrCommitMismatch, ErrRefMismatch, ErrDigestMismatch). Verification
// failures are *MetadataError values carrying one kind (ErrExpired,
// ErrRollback, ErrBadSignature, ErrHashMismatch, ErrMalformed, ErrTooLarge,
// ErrFetch, ErrRejected) and the underlying go-tuf error, reachable with
// errors.As. Note that go-tuf's Is methods compare error types only, so
// errors.Is against a go-tuf error value ignores its Msg.
//
// Freshness is judged by the device clock. A mirror copied to a USB disk
// is therefore usable for the timestamp's lifetime (1 day by default);
// sites updated by hand-carried disks need a longer TimestampExpiry, at
// the price of a longer window in which a frozen copy goes unnoticed. A
// mirror older than what a device has already seen is refused as a
// rollback, by design.
//
// # Input checks
//
// go-tuf trusts the shape of what it parses (an ed25519 key of the wrong
// length makes it panic), so CheckFile validates every metadata file
// before go-tuf sees it: the shipped root (NewClient), every file a
// device fetches (checkedFetcher, which also refuses file names of roles
// we do not have), the device cache (checkCache removes bad files, as
// go-tuf ignores files that fail to verify) and, on the server, every
// uploaded or stored file. The rules are those of the repositories this
// package writes and no wider; validate.go lists them.
//
// This package decides which commit is allowed; the commit's own OSTree
// signature and ref binding are still checked when it is pulled. State
// also carries the online keys of the trusted root (State.OnlineKeys):
// the device checks the OSTree summary, which the server signs with the
// same online key, with them and with nothing else.
package channelmeta
