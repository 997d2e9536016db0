package updater

import "github.com/mxos-linux/mxos-update/internal/sysroot/backendtest"

// The suite's Backend is this Backend: each is assignable to the other, so
// their method sets are equal and backendtest checks what the agent uses.
var (
	_ backendtest.Backend = Backend(nil)
	_ Backend             = backendtest.Backend(nil)
)
