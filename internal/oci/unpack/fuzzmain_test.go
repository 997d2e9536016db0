package unpack

import (
	"flag"
	"os"
	"regexp"
	"testing"
)

// fuzzMinimizeLimit caps how many runs the fuzz engine spends minimizing
// each new input of FuzzApply, unless -fuzzminimizetime is given.
//
// Why: the engine minimizes every input that adds coverage before it
// reports any progress, for up to -fuzzminimizetime (default 60s) per
// input. Its byte-removal pass is quadratic in the input size, tarballs
// come in 512-byte blocks (the seeds are 3-4 KB, corpus entries grow to
// over 10 KB) and each run of FuzzApply creates and removes a directory
// tree (about 0.6 ms), so a minimization never finishes and always takes
// the full 60 s. Most of these inputs only looked new because coverage
// varies from run to run (garbage collection, file system state); the
// coordinator drops them after the minute is spent. With both workers
// minimizing, the status line showed a handful of execs for minutes.
// Capping minimization changes only how small the saved corpus entries
// are, not what each run checks. To minimize a crasher fully, pass
// -fuzzminimizetime=60s explicitly.
const fuzzMinimizeLimit = "500x"

func TestMain(m *testing.M) {
	flag.Parse()
	capFuzzMinimize([]string{"FuzzApply"}, fuzzMinimizeLimit)
	os.Exit(m.Run())
}

// capFuzzMinimize sets -test.fuzzminimizetime to limit when -test.fuzz
// selects one of targets and the flag was not given explicitly. (The
// coordinator reads the flag when fuzzing starts and sends the limit with
// each minimization request, so the workers need nothing.)
func capFuzzMinimize(targets []string, limit string) {
	fz := flag.Lookup("test.fuzz")
	if fz == nil || fz.Value.String() == "" {
		return
	}
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.fuzzminimizetime" })
	sel, err := regexp.Compile(fz.Value.String())
	if explicit || err != nil { // a bad pattern is reported by testing itself
		return
	}
	for _, name := range targets {
		if sel.MatchString(name) {
			if err := flag.Set("test.fuzzminimizetime", limit); err != nil {
				panic(err) // a typo in limit, not input
			}
			return
		}
	}
}
