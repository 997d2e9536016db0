//go:build !linux

package server

import "net/http"

// objDir is unused here.
type objDir struct{}

func (*objDir) close() {}

// serveObject has no fast path here; the general path serves objects.
func (h *repoHandler) serveObject(http.ResponseWriter, *http.Request, string) bool {
	return false
}

// openFileLimit is unknown here.
func openFileLimit() uint64 { return 0 }
