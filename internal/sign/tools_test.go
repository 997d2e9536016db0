package sign

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// requireTool returns the path of an external program needed by an interop
// test. When it is missing the test is skipped on a developer machine, but
// fails when the CI environment variable is set: CI images are expected to
// ship gpg and ostree, and a silently skipped interop test proves nothing.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found in PATH but CI is set: install it (interop tests must run in CI): %v", name, err)
	}
	t.Skipf("%s not found in PATH; skipping interop test (set CI=1 to make this a failure)", name)
	return ""
}

// runTool runs an external program with a timeout and returns its combined
// output; the error includes that output for the test log.
func runTool(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

// mustRunTool is runTool that fails the test on error.
func mustRunTool(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := runTool(t, name, args...)
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return out
}
