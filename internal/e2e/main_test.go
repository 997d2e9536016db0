package e2e

import (
	"os"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/testtool/e2ekit"
)

// TestMain builds mxosctl and mxos-server once (e2ekit.Main).
func TestMain(m *testing.M) {
	os.Exit(e2ekit.Main(m))
}

// mxosctl is the path of the built mxosctl binary.
func mxosctl() string { return e2ekit.Mxosctl() }

// mxosServer is the path of the built mxos-server binary.
func mxosServer() string { return e2ekit.MxosServer() }
