package server

import (
	"context"
	"crypto/tls"
	"net"
	"syscall"
	"testing"
)

// TestSetCork checks that connContext hands writeBody the connection and
// that setCork really sets and clears TCP_CORK on it.
func TestSetCork(t *testing.T) {
	conn := acceptedConn(t)

	rc, ok := connContext(context.Background(), conn).Value(connKey{}).(syscall.RawConn)
	if !ok {
		t.Fatal("connContext stored no RawConn for a TCP connection")
	}
	corked := func() int {
		var v int
		var gerr error
		if err := rc.Control(func(fd uintptr) {
			v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK)
		}); err != nil || gerr != nil {
			t.Fatalf("reading TCP_CORK: %v %v", err, gerr)
		}
		return v
	}
	if !setCork(rc, true) || corked() != 1 {
		t.Fatal("TCP_CORK not set")
	}
	if !setCork(rc, false) || corked() != 0 {
		t.Fatal("TCP_CORK not cleared")
	}
	_ = conn.Close()
	if setCork(rc, true) {
		t.Error("setCork on a closed connection reported success")
	}
	if ctx := connContext(context.Background(), &net.UnixConn{}); ctx.Value(connKey{}) != nil {
		t.Error("connContext stored a RawConn for a non-TCP connection")
	}
}

// wrappedConn stands for a connection fastget handed to net/http: it
// exposes the TCP connection underneath through NetConn.
type wrappedConn struct{ net.Conn }

func (w wrappedConn) NetConn() net.Conn { return w.Conn }

// TestConnContextUnwraps: a connection fastget handed over is corked like
// the TCP connection it wraps; a TLS connection never is (its records must
// not be held back under the TLS layer's feet, and it has its own writes).
func TestConnContextUnwraps(t *testing.T) {
	conn := acceptedConn(t)
	for _, tc := range []struct {
		name string
		c    net.Conn
		want bool
	}{
		{"tcp", conn, true},
		{"handed over", wrappedConn{conn}, true},
		{"tls", tls.Server(conn, &tls.Config{}), false},
		{"unix", &net.UnixConn{}, false},
	} {
		_, got := connContext(context.Background(), tc.c).Value(connKey{}).(syscall.RawConn)
		if got != tc.want {
			t.Errorf("%s: RawConn stored = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// acceptedConn is the server side of a loopback TCP connection, closed
// with the test.
func acceptedConn(t *testing.T) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
