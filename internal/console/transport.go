package console

import (
	"context"
	"net/http"
	"net/http/httptest"
)

// inProcess is an http.RoundTripper that serves API requests with the
// server's own handler, without a socket.
type inProcess struct{ h http.Handler }

type callerKey struct{}

// caller is the browser behind a console request: the language it reads
// and its address (for the API's audit entries of refused requests).
type caller struct{ lang, remote string }

// withCaller makes API requests made with ctx ask for lang's messages
// and carry the browser's address.
func withCaller(ctx context.Context, lang, remote string) context.Context {
	return context.WithValue(ctx, callerKey{}, caller{lang, remote})
}

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.RemoteAddr = "127.0.0.1:0"
	if c, ok := r.Context().Value(callerKey{}).(caller); ok {
		r.Header.Set("Accept-Language", c.lang)
		if c.remote != "" {
			r.RemoteAddr = c.remote
		}
	}
	if r.Body == nil {
		r.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}
