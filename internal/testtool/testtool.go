// Package testtool finds the external programs interop tests drive (ostree,
// gpg, nginx, PostgreSQL). It is imported only from _test.go files.
//
// A missing tool skips the test on a developer machine but fails it when
// the CI environment variable is set: a silently skipped interop test
// proves nothing.
package testtool

import (
	"os"
	"os/exec"
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
	if os.Getenv("CI") != "" {
		t.Fatalf("%s, but CI is set: install it (interop tests must run in CI)", what)
	}
	t.Skipf("%s; skipping interop test (set CI=1 to make this a failure)", what)
}

// BuildTags are the build tags the project is built with (README): they
// make containers/image build without cgo. Tests that run the go tool
// themselves (building the binaries under test, listing dependencies)
// pass them, since `go test -tags` does not hand them on.
const BuildTags = "containers_image_openpgp,containers_image_storage_stub,containers_image_docker_daemon_stub"
