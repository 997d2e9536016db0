// Package mirror owns the school mirror (`mxos-server mirror`): a
// verified, read-only copy of chosen channels of an upstream MxOS update
// server, kept in a data directory that mxos-server serves at the paths a
// device already uses on the upstream (/repo/ and /metadata/). A device
// lists the mirror first in `mirrors` and changes nothing else.
//
// # Trust
//
// Nobody trusts the mirror: devices check everything it serves against
// the root.json and release keys they ship, exactly as they check the
// upstream, and pass over a mirror that is down, stale or tampered with
// (internal/updater, mirrors.go). The mirror holds no key and signs
// nothing; it serves its upstream's signed bytes unchanged. It still
// checks what it copies the way a device does, so that a bad link or a
// bad upstream never turns into a mirror that every machine of the school
// must skip:
//
//  1. Signed channel metadata (TUF, internal/channelmeta): fetched whole
//     with a fresh cache from the shipped root (Config.TrustedRoot), so
//     every file a device can ask for (the root rotation chain,
//     timestamp, the snapshot, targets and rollouts it pins) is fetched
//     and verified; then the same bytes are verified again against the
//     mirror's own trusted baseline (DATA/mirror/metadata-cache), so an
//     upstream that goes back to older metadata, or serves expired
//     metadata, is refused (ErrMetadata) and the mirror keeps serving
//     what it had.
//  2. The OSTree summary: summary.sig must verify with the online keys
//     the verified root names (the same keys a device uses).
//  3. For each ref of the chosen channels the summary lists, the commit
//     is pulled with the device's puller (internal/ostree/pull): commit
//     signatures by the release keys (Config.ReleaseKeys), ref binding,
//     every object hashed to its name, written content-addressed; a
//     commit older than the one the mirror already serves for the ref is
//     refused (ErrOlder).
//  4. Static deltas the signed summary lists for those commits: the
//     superblock must hash to the summary's digest and name that pair
//     and that commit, every part must have the size and SHA-256 the
//     superblock gives. Each delta is staged under repo/tmp/delta-* and
//     renamed into deltas/ whole. (The objects inside parts are checked
//     by every device that applies them; the mirror does not unpack
//     them.) A delta that is missing or fails a check is left out, with
//     a warning (Result.DeltaErrors), as a device leaves it out: the
//     mirror has every object of the commit, verified, and machines
//     fetch those instead. delta-indexes/ is regenerated from what was
//     stored: the indexes are not signed.
//
// Only then does anything a device reads move, in this order: the refs
// (by the pull, after each commit is complete), the summary and
// summary.sig (one journaled swap, ostree.Txn.PutSummary), then the
// metadata files (versioned files first, timestamp.json last). Every
// file is written durably (temp file, fsync, rename, fsync of the
// directory). A failed sync moves nothing and the mirror keeps serving
// its last complete copy; objects already verified stay, so the next
// sync resumes. After the swap, deltas the new summary does not list and
// the refs of channels no longer kept are removed; the objects of the
// commits the previous summary named stay until the next sync (a machine
// that read that summary just before the swap can finish downloading),
// then are pruned.
//
// # Decisions
//
//   - --upstream is the server's base URL (as a device's `server:`);
//     a trailing /repo is accepted and dropped.
//   - --channel is repeatable; a channel is every ref
//     mxos/<major>/<arch>/<channel> the summary lists (every arch). With
//     none, every mxos/ ref is mirrored. A named channel the upstream
//     does not list is an error (a typo must not pass silently).
//   - The metadata is copied whole (it is small and covers every
//     channel); the summary is the upstream's, so it may name refs the
//     mirror does not keep: a device of such a channel finds no objects
//     on the mirror and moves on to the next mirror.
//   - The mirror's root.json must be the oldest one the school's
//     machines ship (keys/root.json): the mirror serves the rotation
//     chain from that version on.
//   - Syncs are serialised by an flock on DATA/mirror/lock, so a
//     `--once` run from cron and a serving mirror can share a directory.
//   - DNS-SD discovery (_mxos-update._tcp) is not implemented: a device
//     needs the mirror's address in `mirrors` (a name the school's DNS or
//     DHCP resolves, such as mirror.escuela.local, keeps images generic).
package mirror
