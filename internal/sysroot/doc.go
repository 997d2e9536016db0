// Package sysroot is the pure-Go deployment backend of the device updater:
// it turns commits of a local archive repository into bootable
// deployments, switches the default deployment atomically, keeps the
// previous one for rollback, counts boot attempts and garbage-collects.
//
// # Layout
//
// Everything lives under one root directory R:
//
//	R/repo/                            local archive repository (filled by internal/ostree/pull)
//	R/objects-cache/XX/<hex>           uncompressed regular file for content checksum XXhex,
//	                                   made once and hardlinked into deployments
//	R/deploy/<commit>.<serial>/        a deployment: the tree of <commit>
//	R/deploy/<commit>.<serial>.origin  JSON: ref, version, commit, created
//	R/current  -> deploy/<name>        the default deployment (what boots)
//	R/previous -> deploy/<name>        the rollback target
//	R/state.json                       pending boot + boot counter, booted deployment, bad commits
//	R/.lock                            flock(2) serialising processes
//
// The cache is keyed by the content checksum, which covers the file's
// mode, owner and extended attributes as well as its bytes, so one cache
// inode carries the right metadata for every deployment linking it and
// unchanged files between two deployments share one inode. Deployments
// (outside etc/) must be treated as immutable: writing to a file in one
// writes to every deployment sharing it.
//
// # /etc
//
// A commit carries its configuration defaults in usr/etc (a commit with
// both usr/etc and a top-level etc is refused with ErrBadTree). The
// deployment's etc/ is a copy (never hardlinks) of the new usr/etc, then
// merged three ways against the current deployment, comparing the current
// etc/ ("local") with the current usr/etc ("old default"):
//
//   - a path in local etc but not in the old defaults (added locally) is
//     copied into the new etc, replacing a new default of that name;
//   - a path in both that differs in type, permission bits, content or
//     symlink target (modified locally) is copied over the new default;
//   - a path equal in both keeps the new default (so upgrades of
//     untouched files apply);
//   - a path in the old defaults missing from local etc (deleted locally)
//     is removed from the new etc, even if the new default changed.
//
// A commit with a top-level etc but no usr/etc is deployed as-is, with
// etc/ copied rather than hardlinked, and no merge.
//
// # Crash safety
//
// Every state change is written to a temporary name, synced, renamed into
// place and the directory synced. Deploy builds deploy/<name>.tmp-<random>
// and renames it only when complete (its .origin is written first, so a
// complete deployment always has one); Open removes leftover *.tmp-*
// directories, temporary symlinks, cache temporaries and orphaned .origin
// files. current and previous are replaced by symlink+rename, and each
// multi-step operation is ordered so every intermediate state names
// complete deployments: Switch records the pending boot, then points
// previous at the old current, then current at the new deployment;
// Rollback records the bad commit, then points current at previous, then
// previous at the abandoned deployment. A pending boot that does not name
// the current deployment (a crash inside Switch) is ignored. GC renames a
// deployment to a *.tmp-gc name before deleting it, so a crash leaves
// nothing Open does not remove; it keeps current, previous, the booted
// deployment and those created after current (staged for a later switch).
// internal/e2e's TestKillUpgradeAtRandom and TestKillUpgradeAtEachStep
// kill `mxos-updater upgrade` at random moments and at each rename;
// TestKillBootGCAtCrashPoints kills `mxos-updater boot` at each step of
// GC and of the repository prune that follows it.
//
// Relative symlinks that resolve above the deployment root are refused
// with ErrBadTree, with the same rule as internal/ostree's checkout
// (re-implemented here because that helper is unexported).
package sysroot
