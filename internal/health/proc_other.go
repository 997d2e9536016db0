//go:build !unix

package health

import "os/exec"

// setProcessGroup is a no-op where process groups are not available; the
// default cancellation kills only the check itself.
func setProcessGroup(*exec.Cmd) {}
