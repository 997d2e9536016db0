package console

import (
	"context"
	"net/http"
	"net/http/httptest"
)

// inProcess is an http.RoundTripper that serves API requests with the
// server's own handler, without a socket.
type inProcess struct{ h http.Handler }

type langKey struct{}

// withLang makes API requests made with ctx ask for lang's messages.
func withLang(ctx context.Context, accept string) context.Context {
	return context.WithValue(ctx, langKey{}, accept)
}

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	if l, ok := r.Context().Value(langKey{}).(string); ok {
		r = r.Clone(r.Context())
		r.Header.Set("Accept-Language", l)
	}
	r.RemoteAddr = "127.0.0.1:0"
	if r.Body == nil {
		r.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}
