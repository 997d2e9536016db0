package server

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestGracefulShutdown(t *testing.T) {
	s := newTestServer(t, newDataDir(t))
	started := make(chan struct{})
	release := make(chan struct{})
	s.mux.HandleFunc("GET /test/slow", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		_, _ = io.WriteString(w, "finished")
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()

	type result struct {
		status int
		body   string
		err    error
	}
	inflight := make(chan result, 1)
	go func() {
		resp, err := http.Get(base + "/test/slow")
		if err != nil {
			inflight <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		inflight <- result{resp.StatusCode, string(b), err}
	}()
	<-started
	cancel()

	// Serve must wait for the in-flight request…
	select {
	case err := <-served:
		t.Fatalf("Serve returned while a request was in flight: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	// …and new connections must be refused meanwhile.
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("listener still accepting after shutdown began")
	}

	close(release)
	r := <-inflight
	if r.err != nil || r.status != http.StatusOK || r.body != "finished" {
		t.Fatalf("in-flight request: status %d body %q err %v", r.status, r.body, r.err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the last request finished")
	}
}

func TestShutdownTimeout(t *testing.T) {
	s, err := New(Config{DataDir: newDataDir(t), ShutdownTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	started := make(chan struct{})
	s.mux.HandleFunc("GET /test/stuck", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done() // only a forced close ends this request
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	go func() {
		if resp, err := http.Get("http://" + ln.Addr().String() + "/test/stuck"); err == nil {
			resp.Body.Close()
		}
	}()
	<-started
	cancel()
	select {
	case err := <-served:
		if err == nil {
			t.Fatal("Serve returned nil although a request outlived the shutdown timeout")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not give up after ShutdownTimeout")
	}
}

func TestListenAndServe(t *testing.T) {
	s, err := New(Config{DataDir: newDataDir(t), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if err := s.ListenAndServe(ctx); err != nil {
		t.Fatalf("ListenAndServe: %v", err)
	}
	s.cfg.Listen = "256.0.0.1:1"
	if err := s.ListenAndServe(context.Background()); err == nil {
		t.Fatal("ListenAndServe on an invalid address succeeded")
	}
}

func TestRequestLogging(t *testing.T) {
	data := newDataDir(t)
	writeFile(t, filepath.Join(data, "repo", "config"), []byte("[core]\n"))
	core, logs := observer.New(zapcore.DebugLevel)
	s := newTestServerWithLogger(t, data, zap.New(core))
	base := startServer(t, s)

	resp, _ := do(t, http.MethodGet, base+"/repo/config?token=s3cret", "Authorization: Bearer s3cret")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	entries := logs.FilterMessage("request").All()
	if len(entries) != 1 {
		t.Fatalf("%d request log lines, want 1", len(entries))
	}
	e := entries[0]
	if e.Level != zapcore.DebugLevel {
		t.Errorf("request logged at %v, want debug", e.Level)
	}
	f := e.ContextMap()
	if f["method"] != "GET" || f["path"] != "/repo/config" || f["status"] != int64(200) || f["bytes"] != int64(len("[core]\n")) {
		t.Errorf("request log fields: %v", f)
	}
	if _, ok := f["duration"]; !ok {
		t.Errorf("request log has no duration: %v", f)
	}
	for _, entry := range logs.All() {
		for k, v := range entry.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, "s3cret") {
				t.Errorf("log field %s leaks a secret: %q", k, s)
			}
		}
	}
}

// TestRepoLoopBesideNetHTTP: on one keep-alive connection, repository
// GETs are served by the fastget loop, and the first other request moves
// the connection to net/http, which serves the rest, repository GETs
// included. Routes and metrics are the same either way.
func TestRepoLoopBesideNetHTTP(t *testing.T) {
	dir := newDataDir(t)
	writeFile(t, filepath.Join(dir, "repo", "config"), []byte("[core]\nrepo_version=1\nmode=archive-z2\n"))
	s := newTestServer(t, dir)
	base := startServer(t, s)
	fg := s.fast.Load()
	for deadline := time.Now().Add(5 * time.Second); fg == nil && time.Now().Before(deadline); fg = s.fast.Load() {
		time.Sleep(time.Millisecond) // Serve runs in its own goroutine
	}
	if fg == nil {
		t.Fatal("Serve did not start the repository loop")
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	steps := []struct {
		req      string
		status   int
		body     string
		loopAdds uint64
	}{
		{"GET /repo/config HTTP/1.1\r\nHost: t\r\n\r\n", 200, "[core]", 1},
		{"HEAD /repo/config HTTP/1.1\r\nHost: t\r\n\r\n", 200, "", 1},
		{"GET /repo/../secret HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad request", 1},
		{"GET /repo/objects/00/nothing.filez HTTP/1.1\r\nHost: t\r\n\r\n", 404, "not found", 1},
		{"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n", 200, "", 0},
		{"GET /repo/config HTTP/1.1\r\nHost: t\r\n\r\n", 200, "[core]", 0},
	}
	for _, st := range steps {
		before := fg.Served()
		if _, err := io.WriteString(c, st.req); err != nil {
			t.Fatal(err)
		}
		method, _, _ := strings.Cut(st.req, " ")
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%q: %v", st.req, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != st.status || !strings.HasPrefix(string(body), st.body) || resp.Close {
			t.Errorf("%q: %d %q close=%v, want %d %q", st.req, resp.StatusCode, body, resp.Close, st.status, st.body)
		}
		if got := fg.Served() - before; got != st.loopAdds {
			t.Errorf("%q: the loop served %d requests, want %d", st.req, got, st.loopAdds)
		}
	}
	_, metrics := do(t, "GET", base+"/metrics")
	if !strings.Contains(string(metrics), `route="GET /repo/"`) {
		t.Error("repository requests missing from the route metrics")
	}
}
