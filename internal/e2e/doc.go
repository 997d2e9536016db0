// Package e2e holds end-to-end tests that run our server and CLI against the stock ostree client. It has no non-test code.
//
// The tests publish with internal/release (or the mxosctl binary, built once
// in TestMain), serve with internal/server (or the mxos-server binary) on a
// random loopback port, and use the real `ostree` and `gpg` programs as the
// peer: pull with GPG and dummy-engine verification, mirror, fsck, checkout,
// `ostree commit` for checksum comparisons. Tests that need those programs
// are skipped when they are missing, unless the CI environment variable is
// set, in which case they fail. The helpers internal/e2e/cluster shares
// with it (binaries, server processes, work directory, ostree clients, test
// CA, nginx, the conformance suite, replicas) are in internal/testtool/e2ekit.
//
// Crash tests stop real processes at named points: strace kills them at a
// rename or fsync on a final path (a point never reached fails the test),
// and TestPowerCutDuringUpgrade cuts the power under the updater on ext4
// over a loop device whose backing file is a FUSE-served disk model that
// loses unflushed writes (powerloss_test.go; device-mapper's dm-flakey is
// not in this machine's kernel, so the model plays its drop_writes role).
package e2e
