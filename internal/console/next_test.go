package console

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzSafeNext: whatever a "next" parameter holds, the redirect stays on
// this console: a path under /console/, never another host (//host,
// /\host, a scheme) and never a header break.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/console/devices?q=a", "//evil.example/", "https://evil.example/console/", "/console/\r\nSet-Cookie: x=1",
		"/console\\..\\", "/\\evil.example", "", "/console/../admin", "javascript:alert(1)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := safeNext(in)
		if !strings.HasPrefix(out, Prefix) || strings.ContainsAny(out, "\\\r\n") {
			t.Fatalf("safeNext(%q) = %q", in, out)
		}
		u, err := url.Parse(out)
		if err != nil {
			return // the browser resolves it against this host anyway
		}
		if u.Scheme != "" || u.Host != "" {
			t.Fatalf("safeNext(%q) = %q leaves the host", in, out)
		}
	})
}
