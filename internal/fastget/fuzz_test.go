package fastget

import (
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzConn feeds arbitrary client bytes to one connection of the loop:
// it must not panic or hang, must hand the handler only requests of its
// kind, and must hand everything else to net/http.
func FuzzConn(f *testing.F) {
	for _, seed := range []string{
		"GET /repo/a HTTP/1.1\r\nHost: h\r\n\r\n",
		"HEAD /repo/a HTTP/1.0\r\n\r\nGET /repo/b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
		"GET /repo/a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
		"GET /repo/a HTTP/1.1\r\nHost: h\r\n\r\nPOST /api HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /repo/%zz HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /repo/a HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET /repo/a?x=%00 HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead ||
				!strings.HasPrefix(r.RequestURI, "/repo/") || r.Body != http.NoBody ||
				r.ProtoMajor != 1 || r.Header.Get("Host") != "" {
				t.Errorf("handler got %s %q %s", r.Method, r.RequestURI, r.Proto)
			}
			w.Header().Set("Content-Length", "2")
			io.WriteString(w, "ok")
		})
		s := New(Config{Handler: h, Prefix: "/repo/", ReadHeaderTimeout: time.Second,
			IdleTimeout: time.Second, MaxHeaderBytes: 4096, ErrorLog: log.New(io.Discard, "", 0)})
		srv, cli := net.Pipe()
		hand := &handoff{ln: nil, conns: make(chan net.Conn, 1), done: s.done, closed: make(chan struct{})}
		cn := s.newConn(srv, hand)
		done := make(chan struct{})
		go func() { cn.serve(); close(done) }()
		go io.Copy(io.Discard, cli)
		go func() { cli.Write(data); cli.Close() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the loop did not finish")
		}
		select {
		case c := <-hand.conns: // handed over: the rest must be readable
			c.SetReadDeadline(time.Now().Add(time.Second))
			io.Copy(io.Discard, c)
			c.Close()
		default:
		}
	})
}
