package server

import (
	"net/http"
)

// handleHealthz reports that the process is up and serving HTTP.
func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	writeText(w, http.StatusOK, "ok\n")
}

// handleReadyz reports whether there is a repository to serve: an empty data
// directory is alive but not ready, so a load balancer keeps it out of
// rotation until the first publish creates the repository's config.
func (s *Server) handleReadyz(w http.ResponseWriter, _ *http.Request) {
	if !s.repo.ready() {
		writeText(w, http.StatusServiceUnavailable, "not ready: no repository\n")
		return
	}
	writeText(w, http.StatusOK, "ok\n")
}

func writeText(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h["Content-Type"] = hdrTextPlain
	h["Cache-Control"] = hdrNoStore
	h["X-Content-Type-Options"] = hdrNosniff
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg))
}
