package fastget

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testHandler answers like the repository handler does, with a few extra
// routes for the framing cases.
func testHandler(t *testing.T) http.Handler {
	dir := t.TempDir()
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320 KB
	if err := os.WriteFile(filepath.Join(dir, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Path", r.URL.Path)
		w.Header().Set("X-Query", r.URL.RawQuery)
		w.Header().Set("X-Host", r.Host)
		switch r.URL.Path {
		case "/repo/small": // declared length, as the repository does
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", "5")
			w.Header().Set("Etag", `"small"`)
			if r.Header.Get("If-None-Match") == `"small"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, "hello")
		case "/repo/undeclared": // no length: net/http adds it
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, "no length given\n")
		case "/repo/stream": // more than fits a buffer, no length: chunked
			w.Header().Set("Content-Type", "application/octet-stream")
			for i := 0; i < 20; i++ {
				w.Write(bytes.Repeat([]byte{byte('a' + i)}, 8192))
			}
		case "/repo/flushed":
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "part one;")
			w.(http.Flusher).Flush()
			io.WriteString(w, "part two")
		case "/repo/big": // sendfile through ReadFrom
			f, err := os.Open(filepath.Join(dir, "big"))
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			w.WriteHeader(http.StatusOK)
			io.CopyN(w, f, int64(len(big)))
		case "/repo/missing":
			http.Error(w, "not found", http.StatusNotFound)
		case "/repo/nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "/repo/short": // declares more than it sends
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "abc")
		case "/repo/panic":
			panic("handler failed")
		default:
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, r.ContentLength)
		}
	})
}

// modes runs f without event loops (a goroutine per connection) and with
// them.
func modes(t *testing.T, f func(t *testing.T, loops int)) {
	for _, loops := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("loops=%d", loops), func(t *testing.T) { f(t, loops) })
	}
}

// pair starts the handler behind net/http alone and behind the loop.
func pair(t *testing.T, h http.Handler, loops int) (plain, loop string, fg *Server) {
	t.Helper()
	quiet := log.New(io.Discard, "", 0)
	ln1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs1 := &http.Server{Handler: h, ErrorLog: quiet, MaxHeaderBytes: 8192}
	go hs1.Serve(ln1)
	t.Cleanup(func() { hs1.Close() })

	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fg = New(Config{Handler: h, Prefix: "/repo/", ErrorLog: quiet, MaxHeaderBytes: 8192,
		ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second, Loops: loops})
	hs2 := &http.Server{Handler: h, ErrorLog: quiet, MaxHeaderBytes: 8192}
	go hs2.Serve(fg.Listen(ln2))
	t.Cleanup(func() { hs2.Close(); fg.Close() })
	return ln1.Addr().String(), ln2.Addr().String(), fg
}

// exchange writes raw to addr and reads the responses to the methods
// given, in order, until the connection closes or all are read.
func exchange(t *testing.T, addr, raw string, methods ...string) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out []*http.Response
	for _, m := range methods {
		resp, err := http.ReadResponse(br, &http.Request{Method: m})
		if err != nil {
			break
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			body = append(body, "[cut short]"...) // e.g. the short-body case
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		out = append(out, resp)
	}
	return out
}

// summary is what must agree between the two servers.
func summary(r *http.Response) string {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	var b strings.Builder
	fmt.Fprintf(&b, "%d close=%v len=%d", r.StatusCode, r.Close, r.ContentLength)
	for _, k := range []string{"Content-Type", "Etag", "X-Path", "X-Query", "X-Host"} {
		fmt.Fprintf(&b, " %s=%q", k, r.Header.Get(k))
	}
	if len(body) > 64 {
		fmt.Fprintf(&b, " body=%d bytes %x", len(body), body[:16])
	} else {
		fmt.Fprintf(&b, " body=%q", body)
	}
	return b.String()
}

func TestSameAnswersAsNetHTTP(t *testing.T) { modes(t, testSameAnswers) }

func testSameAnswers(t *testing.T, loops int) {
	plain, loop, fg := pair(t, testHandler(t), loops)
	get := func(path string, extra ...string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: example.org\r\n" + strings.Join(extra, "") + "\r\n"
	}
	tests := []struct {
		name    string
		raw     string
		methods []string
		loop    int // requests the loop itself must have served
	}{
		{"declared length", get("/repo/small"), []string{"GET"}, 1},
		{"query and host", get("/repo/small?x=1&y=%20"), []string{"GET"}, 1},
		{"not modified", get("/repo/small", "If-None-Match: \"small\"\r\n"), []string{"GET"}, 1},
		{"undeclared length", get("/repo/undeclared"), []string{"GET"}, 1},
		{"chunked stream", get("/repo/stream"), []string{"GET"}, 1},
		{"flushed", get("/repo/flushed"), []string{"GET"}, 1},
		{"sendfile", get("/repo/big"), []string{"GET"}, 1},
		{"404", get("/repo/missing"), []string{"GET"}, 1},
		{"204", get("/repo/nocontent"), []string{"GET"}, 1},
		{"head", "HEAD /repo/small HTTP/1.1\r\nHost: h\r\n\r\n", []string{"HEAD"}, 1},
		{"head of big", "HEAD /repo/big HTTP/1.1\r\nHost: h\r\n\r\n", []string{"HEAD"}, 1},
		{"http/1.0", "GET /repo/small HTTP/1.0\r\n\r\n", []string{"GET"}, 1},
		{"http/1.0 keep-alive", "GET /repo/small HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + get("/repo/small"), []string{"GET", "GET"}, 2},
		{"http/1.0 undeclared", "GET /repo/stream HTTP/1.0\r\n\r\n", []string{"GET"}, 1},
		{"connection close", get("/repo/small", "Connection: close\r\n") + get("/repo/small"), []string{"GET", "GET"}, 1},
		{"pipelined", get("/repo/small") + get("/repo/big") + get("/repo/undeclared"), []string{"GET", "GET", "GET"}, 3},
		{"short body closes", get("/repo/short") + get("/repo/small"), []string{"GET", "GET"}, 1},
		{"zero content-length", get("/repo/small", "Content-Length: 0\r\n"), []string{"GET"}, 1},
		{"missing host", "GET /repo/small HTTP/1.1\r\n\r\n", []string{"GET"}, 0},
		{"two hosts", "GET /repo/small HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", []string{"GET"}, 0},
		{"bad host", "GET /repo/small HTTP/1.1\r\nHost: a b\r\n\r\n", []string{"GET"}, 0},
		{"malformed header", "GET /repo/small HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n", []string{"GET"}, 0},
		{"bad header name", "GET /repo/small HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", []string{"GET"}, 0},
		{"headers too large", get("/repo/small", "X-Big: "+strings.Repeat("x", 16<<10)+"\r\n"), []string{"GET"}, 0},
		// Handed to net/http: other methods, other paths, other versions.
		{"post elsewhere", "POST /api/x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", []string{"POST"}, 0},
		{"get elsewhere", get("/healthz"), []string{"GET"}, 0},
		{"post under prefix", "POST /repo/x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nab", []string{"POST"}, 0},
		{"options star", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", []string{"OPTIONS"}, 0},
		{"absolute form", "GET http://h/repo/small HTTP/1.1\r\nHost: h\r\n\r\n", []string{"GET"}, 0},
		{"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", []string{"GET"}, 0},
		{"bad version", "GET /repo/small HTTP/1.7\r\nHost: h\r\n\r\n", []string{"GET"}, 0},
		{"long request line", get("/repo/" + strings.Repeat("a", 5000)), []string{"GET"}, 0},
		{"garbage", "\x00\x01\x02 hello\r\n\r\n", []string{"GET"}, 0},
		{"bad escape", get("/repo/%zz"), []string{"GET"}, 0},
		// Ours first, then net/http's on the same connection.
		{"fast then handed", get("/repo/small") + "POST /api/x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc" + get("/repo/big"), []string{"GET", "POST", "GET"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fg.Served()
			want := exchange(t, plain, tt.raw, tt.methods...)
			got := exchange(t, loop, tt.raw, tt.methods...)
			if served := fg.Served() - before; served != uint64(tt.loop) {
				t.Errorf("the loop served %d requests, want %d", served, tt.loop)
			}
			if len(got) != len(want) {
				t.Fatalf("%d responses, net/http gave %d", len(got), len(want))
			}
			for i := range want {
				if g, w := summary(got[i]), summary(want[i]); g != w {
					t.Errorf("response %d:\n got %s\nwant %s", i, g, w)
				}
			}
		})
	}
}

// TestRefusesBodies: a GET with a body under the prefix is refused (the
// package doc's one difference from net/http), and nothing is served.
func TestRefusesBodies(t *testing.T) { modes(t, testRefusesBodies) }

func testRefusesBodies(t *testing.T, loops int) {
	_, loop, fg := pair(t, testHandler(t), loops)
	for _, raw := range []string{
		"GET /repo/small HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
		"GET /repo/small HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	} {
		before := fg.Served()
		got := exchange(t, loop, raw, "GET", "GET")
		if len(got) != 1 || got[0].StatusCode != http.StatusBadRequest || !got[0].Close {
			t.Fatalf("%q: want one 400 and a close, got %d responses", raw, len(got))
		}
		if fg.Served() != before {
			t.Errorf("%q reached the handler", raw)
		}
	}
}

// TestPanicClosesConnection: a handler panic is logged, the connection
// closes, and the loop keeps serving others.
func TestPanicClosesConnection(t *testing.T) { modes(t, testPanicCloses) }

// lockedBuffer is a log's output read by the test while the server writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func testPanicCloses(t *testing.T, loops int) {
	var logged lockedBuffer
	h := testHandler(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fg := New(Config{Handler: h, Prefix: "/repo/", ErrorLog: log.New(&logged, "", 0), Loops: loops})
	hs := &http.Server{Handler: h}
	go hs.Serve(fg.Listen(ln))
	defer func() { hs.Close(); fg.Close() }()
	got := exchange(t, ln.Addr().String(), "GET /repo/panic HTTP/1.1\r\nHost: h\r\n\r\n", "GET")
	if len(got) != 0 {
		t.Errorf("a response to a panicking handler: %d", got[0].StatusCode)
	}
	if again := exchange(t, ln.Addr().String(), "GET /repo/small HTTP/1.1\r\nHost: h\r\n\r\n", "GET"); len(again) != 1 || again[0].StatusCode != 200 {
		t.Error("the next connection was not served")
	}
	if !strings.Contains(logged.String(), "handler failed") {
		t.Errorf("panic not logged: %q", logged.String())
	}
}

// TestShutdown: an idle connection is closed at once, a busy one after
// its response, and Shutdown returns when none is left.
// (On loops, whose handlers must not block: TestShutdownLoops.)
func TestShutdown(t *testing.T) {
	release := make(chan struct{})
	var started atomic.Bool
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/repo/slow" {
			started.Store(true)
			<-release
		}
		io.WriteString(w, "done")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fg := New(Config{Handler: h, Prefix: "/repo/"})
	hs := &http.Server{Handler: h}
	go hs.Serve(fg.Listen(ln))
	defer hs.Close()

	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if got := exchangeOn(t, idle, "GET /repo/a HTTP/1.1\r\nHost: h\r\n\r\n"); got != "done" {
		t.Fatalf("first answer %q", got)
	}
	busy, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	io.WriteString(busy, "GET /repo/slow HTTP/1.1\r\nHost: h\r\n\r\n")
	for !started.Load() {
		time.Sleep(time.Millisecond)
	}
	done := make(chan error, 1)
	go func() { done <- fg.Shutdown(context.Background()) }()

	expectClosed(t, idle)
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned during a request: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	busy.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "done" || !resp.Close {
		t.Errorf("busy request: %q, close %v", body, resp.Close)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// expectClosed fails unless the server closes c within 5 s.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
		t.Errorf("idle connection still open: %d, %v", n, err)
	}
}

func exchangeOn(t *testing.T, c net.Conn, raw string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, raw)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestIdleTimeout: a connection that sends nothing more is closed.
func TestIdleTimeout(t *testing.T) { modes(t, testIdleTimeout) }

func testIdleTimeout(t *testing.T, loops int) {
	h := testHandler(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fg := New(Config{Handler: h, Prefix: "/repo/", IdleTimeout: 100 * time.Millisecond, ReadHeaderTimeout: 100 * time.Millisecond, Loops: loops})
	hs := &http.Server{Handler: h}
	go hs.Serve(fg.Listen(ln))
	defer func() { hs.Close(); fg.Close() }()
	for _, raw := range []string{"GET /repo/small HTTP/1.1\r\nHost: h\r\n\r\n", "GET /repo/sm"} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, raw)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.ReadAll(c) // ends when the server closes
		c.Close()
		if err != nil {
			t.Errorf("%q: connection not closed by the server: %v", raw, err)
		}
	}
}
