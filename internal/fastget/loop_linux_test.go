//go:build linux

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
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hugeSize is more than loopback's socket buffers hold, so a client that
// does not read makes the server's writes block.
const hugeSize = 24 << 20

// hugeHandler sends hugeSize bytes three ways: sendfile (a file through
// ReadFrom), Write in blocks, and ReadFrom of a reader that is not a file.
func hugeHandler(t *testing.T) (http.Handler, []byte) {
	data := make([]byte, hugeSize)
	for i := range data {
		data[i] = byte(i*7 + i>>13)
	}
	path := filepath.Join(t.TempDir(), "huge")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(hugeSize))
		switch r.URL.Path {
		case "/repo/file":
			f, err := os.Open(path)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			io.CopyN(w, f, hugeSize)
		case "/repo/writes":
			for off := 0; off < hugeSize; off += 100 << 10 {
				w.Write(data[off:min(off+100<<10, hugeSize)])
			}
		case "/repo/reader":
			io.Copy(w, bytes.NewReader(data))
		default:
			w.Header().Set("Content-Length", "2")
			io.WriteString(w, "ok")
		}
	}), data
}

func startLoops(t *testing.T, h http.Handler, loops int) (string, *Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fg := New(Config{Handler: h, Prefix: "/repo/", Loops: loops, IdleTimeout: 30 * time.Second,
		ReadHeaderTimeout: 30 * time.Second, ErrorLog: log.New(io.Discard, "", 0)})
	hs := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
	go hs.Serve(fg.Listen(ln))
	t.Cleanup(func() { hs.Close(); fg.Close() })
	return ln.Addr().String(), fg
}

// TestLoopLeavesForSlowReader: a response the client does not read moves
// its connection off the loop, the loop goes on serving its other
// connections meanwhile, and the slow client still gets every byte, then
// a next request on the same connection.
func TestLoopLeavesForSlowReader(t *testing.T) {
	h, data := hugeHandler(t)
	addr, fg := startLoops(t, h, 1)
	for _, path := range []string{"/repo/file", "/repo/writes", "/repo/reader"} {
		t.Run(path, func(t *testing.T) {
			left := fg.Left()
			slow, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer slow.Close()
			slow.SetDeadline(time.Now().Add(60 * time.Second))
			fmt.Fprintf(slow, "GET %s HTTP/1.1\r\nHost: h\r\n\r\nGET /repo/ok HTTP/1.1\r\nHost: h\r\n\r\n", path)
			for deadline := time.Now().Add(20 * time.Second); fg.Left() == left; {
				if time.Now().After(deadline) {
					t.Fatal("the connection did not leave the loop")
				}
				time.Sleep(5 * time.Millisecond)
			}
			// The only loop serves another client while the first one's
			// response is still waiting to be read.
			got := exchange(t, addr, "GET /repo/ok HTTP/1.1\r\nHost: h\r\n\r\n", "GET")
			if len(got) != 1 || got[0].StatusCode != 200 {
				t.Fatal("the loop did not serve another client")
			}
			br := bufio.NewReader(slow)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(body, data) {
				t.Fatalf("body: %d bytes (want %d), equal %v, %v", len(body), len(data), bytes.Equal(body, data), err)
			}
			resp, err = http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := io.ReadAll(resp.Body); string(b) != "ok" {
				t.Errorf("the pipelined request after it: %q", b)
			}
		})
	}
}

// TestShutdownLoops: Shutdown closes the idle connections of the loops at
// once, lets a response in progress (off its loop, the client reading
// slowly) finish, and returns when none is left.
func TestShutdownLoops(t *testing.T) {
	h, data := hugeHandler(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fg := New(Config{Handler: h, Prefix: "/repo/", Loops: 2, ErrorLog: log.New(io.Discard, "", 0)})
	hs := &http.Server{Handler: h}
	go hs.Serve(fg.Listen(ln))
	defer hs.Close()
	addr := ln.Addr().String()

	idle := make([]net.Conn, 4) // on either loop
	for i := range idle {
		if idle[i], err = net.Dial("tcp", addr); err != nil {
			t.Fatal(err)
		}
		defer idle[i].Close()
		if got := exchangeOn(t, idle[i], "GET /repo/ok HTTP/1.1\r\nHost: h\r\n\r\n"); got != "ok" {
			t.Fatalf("answer %q", got)
		}
	}
	busy, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	io.WriteString(busy, "GET /repo/file HTTP/1.1\r\nHost: h\r\n\r\n")
	for deadline := time.Now().Add(20 * time.Second); fg.Left() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the busy connection did not leave its loop")
		}
		time.Sleep(5 * time.Millisecond)
	}
	done := make(chan error, 1)
	go func() { done <- fg.Shutdown(context.Background()) }()
	for _, c := range idle {
		expectClosed(t, c)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned during a response: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	busy.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(busy)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if !bytes.Equal(body, data) {
		t.Fatalf("busy response: %d bytes, want %d", len(body), len(data))
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if n, err := br.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
		t.Errorf("the busy connection stayed open: %d, %v", n, err)
	}
}

// TestLoopHeadInPieces: a request head that arrives a few bytes at a time
// is put together on the loop and served there.
func TestLoopHeadInPieces(t *testing.T) {
	h, _ := hugeHandler(t)
	addr, fg := startLoops(t, h, 1)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	served, left := fg.Served(), fg.Left()
	raw := "GET /repo/ok HTTP/1.1\r\nHost: h\r\nUser-Agent: pieces\r\n\r\n"
	for i := 0; i < len(raw); i += 5 {
		io.WriteString(c, raw[i:min(i+5, len(raw))])
		time.Sleep(2 * time.Millisecond)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "ok" {
		t.Errorf("body %q", b)
	}
	if fg.Served() != served+1 || fg.Left() != left {
		t.Errorf("served %d, left %d: want it served on the loop", fg.Served()-served, fg.Left()-left)
	}
}

// TestLoopLetsCollectionsRun: while clients keep the loops busy, and while
// they are idle, collections finish (a loop waiting in epoll_pwait
// without the runtime's knowledge must still reach a stop of the world).
func TestLoopLetsCollectionsRun(t *testing.T) {
	h, _ := hugeHandler(t)
	addr, fg := startLoops(t, h, max(1, runtime.GOMAXPROCS(0)-1))
	var stop atomic.Bool
	var wg sync.WaitGroup
	var answered atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for !stop.Load() {
				c.SetDeadline(time.Now().Add(20 * time.Second))
				io.WriteString(c, "GET /repo/ok HTTP/1.1\r\nHost: h\r\n\r\n")
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				answered.Add(1)
			}
		}()
	}
	collect := func(what string) {
		done := make(chan struct{})
		go func() {
			for range 20 {
				runtime.GC()
			}
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatalf("20 collections did not finish in 60 s %s", what)
		}
	}
	for answered.Load() < 100 {
		time.Sleep(time.Millisecond)
	}
	collect("while busy")
	stop.Store(true)
	wg.Wait()
	time.Sleep(200 * time.Millisecond) // the loops fall back to the blocking wait
	collect("while idle")
	if fg.Left() != 0 {
		t.Errorf("%d connections left the loops", fg.Left())
	}
}

// FuzzLoop feeds arbitrary client bytes to a connection on an event loop:
// no panic or hang, the handler gets only requests of the loop's kind, and
// the server goes on serving.
func FuzzLoop(f *testing.F) {
	for _, seed := range []string{
		"GET /repo/a HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /repo/a HTTP/1.1\nHost: h\n\nGET /repo/b HTTP/1.0\n\n",
		"HEAD /repo/a HTTP/1.0\r\n\r\nGET /repo/b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
		"GET /repo/a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
		"GET /repo/a HTTP/1.1\r\nHost: h\r\n\r\nPOST /api HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx",
		"GET /repo/" + strings.Repeat("a", 5000) + " HTTP/1.1\r\nHost: h\r\n\r\n",
		"\r\n\r\nGET /repo/a HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /repo/a HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	var bad atomic.Pointer[string]
	ok := func(w http.ResponseWriter) {
		w.Header().Set("Content-Length", "2")
		io.WriteString(w, "ok")
	}
	// The loop's handler sees only requests of its kind; net/http (its own
	// handler) takes the rest.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead ||
			!strings.HasPrefix(r.RequestURI, "/repo/") || r.Body != http.NoBody || r.ProtoMajor != 1 {
			msg := fmt.Sprintf("handler got %s %q %s", r.Method, r.RequestURI, r.Proto)
			bad.Store(&msg)
		}
		ok(w)
	})
	plain := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ok(w) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	s := New(Config{Handler: h, Prefix: "/repo/", ReadHeaderTimeout: time.Second,
		IdleTimeout: time.Second, MaxHeaderBytes: 8192, Loops: 1, ErrorLog: log.New(io.Discard, "", 0)})
	hs := &http.Server{Handler: plain, ErrorLog: log.New(io.Discard, "", 0), ReadHeaderTimeout: time.Second, IdleTimeout: time.Second}
	go hs.Serve(s.Listen(ln))
	f.Cleanup(func() { hs.Close(); s.Close() })
	addr := ln.Addr().String()
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			c.Write(data)
			c.(*net.TCPConn).CloseWrite()
		}()
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("the server did not finish the connection: %v", err)
		}
		if m := bad.Load(); m != nil {
			t.Fatal(*m)
		}
		got := exchange(t, addr, "GET /repo/after HTTP/1.1\r\nHost: h\r\n\r\n", "GET")
		if len(got) != 1 || got[0].StatusCode != 200 {
			t.Fatal("the server stopped serving")
		}
	})
}

// BenchmarkLoopGET: one keep-alive client, one loop, a small declared
// body; allocs/op are the server's (the client allocates nothing per
// request).
func BenchmarkLoopGET(b *testing.B) {
	for _, loops := range []int{0, 1} {
		b.Run(fmt.Sprintf("loops=%d", loops), func(b *testing.B) {
			body := bytes.Repeat([]byte("x"), 2048)
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/octet-stream")
				w.Header().Set("Content-Length", "2048")
				w.Write(body)
			})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			fg := New(Config{Handler: h, Prefix: "/repo/", Loops: loops, ErrorLog: log.New(io.Discard, "", 0)})
			hs := &http.Server{Handler: h}
			go hs.Serve(fg.Listen(ln))
			defer func() { hs.Close(); fg.Close() }()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			req := []byte("GET /repo/objects/ab/cdef.filez HTTP/1.1\r\nHost: h\r\nUser-Agent: bench\r\n\r\n")
			buf := make([]byte, 64<<10)
			exchange := func() int {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				n := 0
				for {
					m, err := c.Read(buf[n:])
					if err != nil {
						b.Fatal(err)
					}
					n += m
					if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 && n >= i+4+len(body) {
						return n
					}
				}
			}
			size := exchange()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if n := exchange(); n != size {
					b.Fatalf("response of %d bytes, the first was %d", n, size)
				}
			}
		})
	}
}
