package ostree

import (
	"flag"
	"os"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// TestMain bounds the minimization of FuzzTar's inputs (tarballs that touch
// the file system) unless -fuzzminimizetime is given: see
// testtool.FuzzMinimizeLimit for why.
func TestMain(m *testing.M) {
	flag.Parse()
	testtool.CapFuzzMinimize([]string{"FuzzTar"}, testtool.FuzzMinimizeLimit)
	os.Exit(m.Run())
}
