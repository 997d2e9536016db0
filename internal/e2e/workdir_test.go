package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// workDir runs the commands a README gives in one directory, as a user
// would, and reads and writes the files they use.
type workDir struct {
	t   *testing.T
	dir string
}

// try runs name with args in the directory, env added to the test's.
func (w workDir) try(env []string, name string, args ...string) (string, error) {
	w.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = w.dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// run is try that fails the test on an error.
func (w workDir) run(env []string, name string, args ...string) string {
	w.t.Helper()
	out, err := w.try(env, name, args...)
	if err != nil {
		w.t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return out
}

func (w workDir) write(rel, body string) {
	w.t.Helper()
	p := filepath.Join(w.dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

func (w workDir) read(rel string) string {
	w.t.Helper()
	b, err := os.ReadFile(filepath.Join(w.dir, rel))
	if err != nil {
		w.t.Fatal(err)
	}
	return string(b)
}
