package unpack

import (
	"flag"
	"os"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// TestMain bounds the minimization of FuzzApply's inputs (tarballs that touch
// the file system) unless -fuzzminimizetime is given: see
// testtool.FuzzMinimizeLimit for why.
func TestMain(m *testing.M) {
	flag.Parse()
	testtool.CapFuzzMinimize([]string{"FuzzApply"}, testtool.FuzzMinimizeLimit)
	os.Exit(m.Run())
}
