// Package e2ekit holds what the black-box end-to-end test packages
// (internal/e2e, internal/e2e/cluster) share, so that a suite can live in
// a package of its own and run beside the others: the binaries under test
// built once per test binary (Main; mxosctl, mxos-server, mxos-updater),
// mxos-server processes, a work directory that runs the README's commands,
// stock ostree clients, a test CA, Debian's nginx, the OCI
// distribution-spec conformance suite, and N servers on one PostgreSQL.
//
// It is test support only: nothing outside tests imports it.
package e2ekit
