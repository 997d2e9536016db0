package mirror_test

import (
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/mirror"
)

// FuzzBaseURL: --upstream never panics the parser, and what it accepts is
// an http(s) URL without a trailing / whose /repo maps back to it.
func FuzzBaseURL(f *testing.F) {
	for _, s := range []string{"https://updates.example.mx", "http://127.0.0.1:8080/repo/", "https://x/a/repo//", "ftp://x", "", "http://", "https://h/%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := mirror.BaseURL(s)
		if err != nil {
			if !strings.Contains(err.Error(), "upstream") {
				t.Fatalf("error %q does not name the flag's value", err)
			}
			return
		}
		if !strings.HasPrefix(got, "http://") && !strings.HasPrefix(got, "https://") {
			t.Fatalf("BaseURL(%q) = %q: not http(s)", s, got)
		}
		if strings.HasSuffix(got, "/") {
			t.Fatalf("BaseURL(%q) = %q: trailing /", s, got)
		}
		// The repository's URL maps back to the same server.
		again, err := mirror.BaseURL(got + "/repo")
		if err != nil || again != got {
			t.Fatalf("BaseURL(%q) = %q, whose /repo gives %q, %v", s, got, again, err)
		}
	})
}
