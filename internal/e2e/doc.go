// Package e2e holds end-to-end tests that run our server and CLI against the stock ostree client. It has no non-test code.
//
// The tests publish with internal/release (or the mxosctl binary, built once
// in TestMain), serve with internal/server (or the mxos-server binary) on a
// random loopback port, and use the real `ostree` and `gpg` programs as the
// peer: pull with GPG and dummy-engine verification, mirror, fsck, checkout,
// `ostree commit` for checksum comparisons. Tests that need those programs
// are skipped when they are missing, unless the CI environment variable is
// set, in which case they fail.
package e2e
