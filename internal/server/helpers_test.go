package server

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/db"
	"go.uber.org/zap"
)

// Object names used by the tests: 2 + 62 lowercase hex digits.
var (
	hexA = strings.Repeat("a", 62)
	hexB = strings.Repeat("b", 62)
)

// newDataDir returns a data directory containing an empty repo/.
func newDataDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "repo"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeFile creates path (and its parents) with content.
func writeFile(t testing.TB, path string, content []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes content next to path and renames it over path, the
// way the repository writer publishes.
func replaceFile(t testing.TB, path string, content []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func newTestServer(t testing.TB, dataDir string) *Server {
	t.Helper()
	return newTestServerWithLogger(t, dataDir, zap.NewNop())
}

func newTestServerWithLogger(t testing.TB, dataDir string, log *zap.Logger) *Server {
	t.Helper()
	s, err := New(Config{DataDir: dataDir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// startServer serves s on a loopback listener until the test ends and
// returns the base URL.
// openAPI opens an SQLite store in data (closed when the test ends) and
// loads the shipped channels: what Config needs for the API.
func openAPI(t testing.TB, data string) (*db.Store, *channel.Set) {
	t.Helper()
	store, err := db.Open(context.Background(), "", data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	set, err := channel.LoadDir("../../channels")
	if err != nil {
		t.Fatal(err)
	}
	return store, set
}

// serveHandler serves s's handler under httptest until the test ends.
func serveHandler(t testing.TB, s *Server) string {
	t.Helper()
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() { ts.Close(); s.Close() })
	return ts.URL
}

// roleTokens makes a token named "t-<role>" for the release, admin and
// device roles, keyed by role.
func roleTokens(t testing.TB, store *db.Store, now time.Time) map[string]string {
	t.Helper()
	tokens := map[string]string{}
	for _, role := range auth.Roles {
		tc, err := CreateToken(context.Background(), store, "t-"+string(role), role, "test", now)
		if err != nil {
			t.Fatal(err)
		}
		tokens[string(role)] = tc.Token
	}
	return tokens
}

func startServer(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// rawGet sends target verbatim in the request line, so no client-side
// path cleaning can hide what the server does with it.
func rawGet(t testing.TB, base, target string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "GET "+target+" HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %q: reading response: %v", target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("GET %q: reading body: %v", target, err)
	}
	return resp, body
}

// do sends a request with optional headers ("Name: value") and returns the
// response and its body.
func do(t testing.TB, method, url string, headers ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, body
}

func sha256ETag(b []byte) string {
	sum := sha256.Sum256(b)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}
