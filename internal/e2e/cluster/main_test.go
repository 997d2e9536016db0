// Package cluster runs the e2e suites against the multi-server setup of
// deploy/compose (a writer and two replicas on one PostgreSQL and one S3
// bucket, behind nginx), and backs such a setup up and restores it
// (deploy/backup). A package of its own, beside internal/e2e, so that go
// test runs the two at once; the helpers both use are in
// internal/testtool/e2ekit.
package cluster

import (
	"os"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/testtool/e2ekit"
)

// TestMain builds mxosctl and mxos-server once (e2ekit.Main).
func TestMain(m *testing.M) {
	os.Exit(e2ekit.Main(m))
}
