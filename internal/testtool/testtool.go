// Package testtool finds the external programs interop tests drive (ostree,
// gpg, nginx, PostgreSQL). It is imported only from _test.go files.
//
// It owns every skip in the tree: tests call Skip (or Require, Missing,
// RequireRoot, SkipIfShort), never t.Skip, t.Skipf or t.SkipNow directly,
// and TestNoDirectSkips fails on any direct call. Skip skips the test on a
// developer machine but fails it when the CI environment variable is set:
// a silently skipped interop test proves nothing, so under CI the
// README's test command reports zero skipped tests. The one exception is
// SkipIfShort: -short is asked for by whoever runs the tests (CI does not
// pass it), so it skips even under CI.
//
// It also holds what tests need to drive the go tool the way the project
// does: the build tags, and a cap on fuzz minimization for targets whose
// inputs are costly tarballs.
package testtool

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// Require returns the path of name, or skips/fails the test as above.
func Require(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	Missing(t, name+" not found in PATH: "+err.Error())
	return ""
}

// Missing reports a missing peer: fatal under CI, a skip otherwise.
func Missing(t testing.TB, what string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s, but CI is set: install it (interop tests must run in CI)", what)
	}
	t.Skipf("%s; skipping interop test (set CI=1 to make this a failure)", what)
}

// InCI reports whether the CI environment variable is set (to anything
// but empty), as .ci/run and most CI services do.
func InCI() bool { return os.Getenv("CI") != "" }

// Skip stops the test because something it needs is not there (a tool
// that cannot work here, a kernel feature, an input): under CI it fails
// the test with reason, elsewhere it skips with reason. It is the only
// way tests in this module skip (see TestNoDirectSkips).
func Skip(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s, but CI is set: a skipped test proves nothing there, so this is a failure", reason)
	}
	t.Skipf("%s (set CI=1 to make this a failure)", reason)
}

// Unsupported is for a check inside a test that cannot run here while
// the rest of the test can (say, extended attributes on the temporary
// file system): under CI it marks the test failed and goes on, elsewhere
// it logs what was left out. It never hides the dropped check.
func Unsupported(t testing.TB, what string) {
	t.Helper()
	if InCI() {
		t.Errorf("%s, but CI is set: the check that needs it did not run", what)
		return
	}
	t.Logf("%s: that check is left out (set CI=1 to make this a failure)", what)
}

// SkipIfShort skips a long test under -short, even under CI: -short is
// chosen by whoever runs the tests, and the README's test command (what CI
// runs) does not pass it.
func SkipIfShort(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("-short: %s", why)
	}
}

// RequireRoot is for tests that need root (file owners, ostree admin):
// fatal under CI, which runs as root, and a skip elsewhere, like Missing.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root is needed: "+why)
	}
}

// BuildTags are the build tags the project is built with (README): they
// make containers/image build without cgo. Tests that run the go tool
// themselves (building the binaries under test, listing dependencies)
// pass them, since `go test -tags` does not hand them on.
const BuildTags = "containers_image_openpgp,containers_image_storage_stub,containers_image_docker_daemon_stub"

// FuzzMinimizeLimit is the minimization budget CapFuzzMinimize gives fuzz
// targets whose inputs are tarballs that touch the file system.
//
// Why: the fuzz engine minimizes every input that adds coverage before it
// reports any progress, for up to -fuzzminimizetime (default 60s) per
// input. Its byte-removal pass is quadratic in the input size, tarballs
// come in 512-byte blocks (seeds of 3-4 KB, corpus entries over 10 KB)
// and each run touches the file system (about half a millisecond), so a
// minimization never finishes and always takes the full 60 s; most such
// inputs only looked new because coverage varies from run to run, and the
// coordinator drops them after the minute is spent. With both workers
// minimizing, the status line showed a handful of execs for minutes.
// Capping minimization changes only how small the saved corpus entries
// are, not what each run checks. To minimize a crasher fully, pass
// -fuzzminimizetime=60s explicitly.
const FuzzMinimizeLimit = "500x"

// CapFuzzMinimize sets -test.fuzzminimizetime to limit when -test.fuzz
// selects one of targets and the flag was not given explicitly. (The
// coordinator reads the flag when fuzzing starts and sends the limit with
// each minimization request, so the workers need nothing.)
func CapFuzzMinimize(targets []string, limit string) {
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

// ModuleRoot walks up from the test's package directory to go.mod: where
// tests find the repository's scripts and files (.ci/run, deploy/).
func ModuleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the package directory")
		}
		dir = parent
	}
}
