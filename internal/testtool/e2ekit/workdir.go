package e2ekit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// WorkDir runs the commands a README gives in one directory, as a user
// would, and reads and writes the files they use.
type WorkDir struct {
	T   *testing.T
	Dir string
}

// Try runs name with args in the directory, env added to the test's.
func (w WorkDir) Try(env []string, name string, args ...string) (string, error) {
	w.T.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = w.Dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Run is Try that fails the test on an error.
func (w WorkDir) Run(env []string, name string, args ...string) string {
	w.T.Helper()
	out, err := w.Try(env, name, args...)
	if err != nil {
		w.T.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return out
}

// Write writes body to rel, making its directories.
func (w WorkDir) Write(rel, body string) {
	w.T.Helper()
	p := filepath.Join(w.Dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		w.T.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		w.T.Fatal(err)
	}
}

// Read returns the contents of rel.
func (w WorkDir) Read(rel string) string {
	w.T.Helper()
	b, err := os.ReadFile(filepath.Join(w.Dir, rel))
	if err != nil {
		w.T.Fatal(err)
	}
	return string(b)
}

// FirstLine is the first line of out without surrounding space: the
// token `mxos-server token create` prints.
func FirstLine(out string) string {
	return strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
}
