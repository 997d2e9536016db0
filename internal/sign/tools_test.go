package sign

import (
	"bytes"
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// requireTool returns the path of an external program; see testtool.Require.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	return testtool.Require(t, name)
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
