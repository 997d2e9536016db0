package e2e

import (
	"testing"

	"github.com/mxos-linux/mxos-update/internal/testtool/e2ekit"
)

// workDir runs the commands a README gives in one directory, as a user
// would, and reads and writes the files they use (e2ekit.WorkDir).
type workDir struct {
	t   *testing.T
	dir string
}

func (w workDir) kit() e2ekit.WorkDir { return e2ekit.WorkDir{T: w.t, Dir: w.dir} }

// try runs name with args in the directory, env added to the test's.
func (w workDir) try(env []string, name string, args ...string) (string, error) {
	w.t.Helper()
	return w.kit().Try(env, name, args...)
}

// run is try that fails the test on an error.
func (w workDir) run(env []string, name string, args ...string) string {
	w.t.Helper()
	return w.kit().Run(env, name, args...)
}

func (w workDir) write(rel, body string) {
	w.t.Helper()
	w.kit().Write(rel, body)
}

func (w workDir) read(rel string) string {
	w.t.Helper()
	return w.kit().Read(rel)
}
