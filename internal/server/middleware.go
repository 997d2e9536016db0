package server

import (
	"io"
	"net/http"
	"path"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Header values shared by all responses. Assigning these slices directly to
// a header map saves an allocation per header on the hot path; len == cap,
// so a later Header.Add copies instead of writing into them.
var (
	hdrOctetStream = []string{"application/octet-stream"}
	hdrTextPlain   = []string{"text/plain; charset=utf-8"}
	hdrImmutable   = []string{"public, max-age=31536000, immutable"}
	hdrNoCache     = []string{"no-cache"}
	hdrNoStore     = []string{"no-store"}
	hdrNosniff     = []string{"nosniff"}
	hdrBytes       = []string{"bytes"}
)

// rejectUncleanPaths answers 400 to paths with empty, "." or ".." segments
// instead of letting http.ServeMux redirect them: no honest client sends
// them, and a redirect would turn /repo/../x into a request for /x.
func rejectUncleanPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isCleanPath(r.URL.Path) {
			writeText(w, http.StatusBadRequest, "bad request: invalid path\n")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// repoFirst sends GET and HEAD requests under /repo/ straight to the
// repository handler, as the mux's "GET /repo/" pattern would, without the
// mux's pattern matching: they are nearly every request a pull makes.
func (s *Server) repoFirst(mux http.Handler) http.Handler {
	var repo http.Handler = s.repo
	if s.repoStore != nil {
		repo = s.repoStore
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.HasPrefix(r.URL.Path, repoPrefix) {
			repo.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// isCleanPath reports whether p is absolute and already in path.Clean form,
// allowing one trailing slash.
func isCleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	if p == "/" {
		return true
	}
	if p[len(p)-1] == '/' {
		p = p[:len(p)-1]
		if p == "/" { // "//"
			return false
		}
	}
	return path.Clean(p) == p // Clean does not allocate when p is clean
}

// logRequests writes one Debug line per request. When Debug is off it adds
// nothing to the request path, so the benchmark sees the bare handler.
func (s *Server) logRequests(next http.Handler) http.Handler {
	log := s.log.Named("http")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !log.Core().Enabled(zapcore.DebugLevel) {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		// Only the path: query strings and headers may carry tokens.
		log.Debug("request",
			zap.String("method", r.Method),
			zap.String("path", r.URL.Path),
			zap.Int("status", rec.statusCode()),
			zap.Int64("bytes", rec.bytes),
			zap.Duration("duration", time.Since(start)),
		)
	})
}

// statusRecorder remembers the status and body size of a response.
//
// It implements io.ReaderFrom by delegating to the wrapped writer: without
// that, io.Copy from an *os.File would fall back to read/write and lose the
// sendfile fast path of net/http.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

func (r *statusRecorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(writerOnly{r.ResponseWriter}, src)
	}
	r.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) statusCode() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

// writerOnly hides any ReadFrom method so io.Copy does not recurse.
type writerOnly struct{ io.Writer }
