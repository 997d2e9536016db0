// Package ostreeadmin is the `ostree` deployment backend of the device
// updater: it drives stock `ostree admin` (deploy, undeploy, cleanup,
// status) and `ostree pull-local`, `ostree refs`, `ostree prune` on a
// real or test sysroot, with the method set of the pure-Go backend
// (*sysroot.Sysroot) and its Deployment, Origin and BadCommit types, so
// the agent can use either behind one interface.
//
// # Layout
//
//	SYSROOT/ostree/repo/                      the sysroot's bare repository (ostree's)
//	SYSROOT/ostree/deploy/<stateroot>/deploy/<commit>.<serial>[.origin]   ostree's deployments
//	SYSROOT/boot/loader -> loader.N/entries/  boot entries: the deployment order
//	SYSROOT/ostree/mxos-updater/              Root(): this package's directory
//	    repo/         archive staging repository the agent pulls into (RepoPath)
//	    state.json    pending boot + counter, booted, previous, bad commits
//	    .lock         flock(2) serialising processes
//
// The pure-Go puller writes archive repositories only, and the sysroot's
// repository is bare (files stored uncompressed with their owners, so
// deployments hardlink them). Rather than a second, bare writer, the
// agent pulls into the archive staging repository as with the pure-Go
// backend, and Deploy copies the commit across with `ostree pull-local
// --untrusted` (ostree re-verifies every object). The staging repository
// keeps the deployed commits (GC prunes the rest with `ostree prune`), so
// the agent reads the running commit there and the next pull fetches only
// changed objects; Open seeds it from the sysroot on a device installed
// by an image builder. The price is the disk space of one compressed copy
// of the OS.
//
// # How the agent's steps map to ostree admin (2022.7)
//
//   - Deploy: pull-local into ostree/repo, then `ostree admin deploy
//     --retain --not-as-default --origin-file=F COMMIT`: a full ostree
//     deployment (kernel copied to /boot, /etc merged with the default
//     one's) placed after the default in the boot menu. The origin file
//     pins the commit and carries the agent's ref, version and time in an
//     [mxos-updater] group.
//   - Switch: 2022.7 has no `ostree admin set-default` and cannot reorder
//     deployments, so Switch undeploys the staged copy and deploys the
//     commit again as the default (`--retain`, same origin). ostree gives
//     the next free serial, so the deployment keeps its name; a ref
//     mxos-updater/COMMIT keeps the commit from being pruned in between.
//     The cost is a second checkout (hardlinks from ostree/repo).
//   - DeploySwitch (what the agent uses when it would switch at once:
//     strategy immediate, or inside its window, and no fleet lock): the
//     pull-local, the pending boot and boot counter recorded, then one
//     `ostree admin deploy --retain` as the default. One checkout instead
//     of Deploy's plus Switch's, and no undeploy: in the VM test under TCG
//     the pair took most of an update's time.
//   - Rollback: `ostree admin undeploy` of the abandoned deployment (and of
//     any staged between it and the previous one), which leaves the
//     previous deployment the default with its name. ostree refuses to
//     undeploy the running system, so when the abandoned deployment is the
//     booted one the previous commit is re-deployed as the default instead
//     and the abandoned one is removed by a GC after the next boot.
//   - Current is the first deployment of the stateroot in ostree's order;
//     Previous the default before the last Switch while it is deployed;
//     Booted the deployment whose directory is the running root "/" (as
//     libostree decides), else the one recorded by BootAttempt: a test
//     sysroot has no booted deployment.
//   - MarkGood, BootAttempt, IsBad, BadCommits and PendingBoot keep the
//     pure-Go backend's semantics in state.json; ostree 2022.7 has no boot
//     counting of its own (boot-counting-tries arrived in 2025.3).
//   - GC: `ostree admin undeploy` of old deployments, `ostree admin
//     cleanup`, then the staging repository is pruned.
//
// Deployments are read the way libostree loads them, from the boot
// loader entries (sorted by their version field, highest first) and
// their ostree= links, not from `ostree admin status`, whose text is not
// an interface; AdminStatus parses that text for diagnostics and tests.
//
// # Differences from the pure-Go backend
//
//   - Root() is SYSROOT/ostree/mxos-updater, not the sysroot: a booted
//     system's root directory is an immutable deployment.
//   - After Rollback the abandoned deployment is gone (undeployed), so
//     Previous returns sysroot.ErrNoDeployment, except in the booted case
//     above; the pure-Go backend keeps it as previous.
//   - On an empty stateroot Deploy's deployment is the default at once
//     (ostree has nothing else to boot), so Switch to it is a no-op and
//     records no pending boot.
//   - The tree must be bootable for ostree: a kernel at
//     usr/lib/modules/<kver>/vmlinuz (initramfs.img beside it), the /etc
//     defaults in usr/etc (2022.7 refuses a top-level etc, which the
//     pure-Go backend deploys as-is) and an os-release with ID or
//     PRETTY_NAME, else Deploy fails with ostree's error and changes
//     nothing.
//   - Switch costs a second checkout plus the prune `ostree admin
//     undeploy` always runs: on a 206 MB Debian tree, Deploy 1.0 s (stock
//     `ostree admin deploy` alone 0.8 s), Switch 2.1 s, GC 1.0 s
//     (BenchmarkUpdateRootfs).
//   - Deployments are immutable (chattr +i) unless the ostree commands get
//     OSTREE_SYSROOT_DEBUG=mutable-deployments (Options.Env), as ostree's
//     own tests and ours set on file systems without the immutable bit.
package ostreeadmin
