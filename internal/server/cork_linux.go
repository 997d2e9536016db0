package server

import (
	"context"
	"crypto/tls"
	"net"
	"syscall"
)

// connContext stores a TCP connection's RawConn in its requests' context,
// for setCork; it is http.Server.ConnContext. Taking the RawConn once per
// connection saves an allocation per corked response.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if _, isTLS := c.(*tls.Conn); !isTLS {
		if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
			c = nc.NetConn() // a connection fastget handed over
		}
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return ctx
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return ctx
	}
	return context.WithValue(ctx, connKey{}, rc)
}

// setCork sets or clears TCP_CORK. While set, the kernel queues what is
// written instead of sending it, so a response written in several write(2)
// calls leaves as one burst once it is cleared (nginx's tcp_nopush). It
// reports false if the connection is closed. RawConn.Control holds a
// reference on the descriptor, so a concurrent close cannot make us touch
// a reused one. The callbacks capture nothing, so this does not allocate;
// a failing setsockopt only loses the batching, so its error is ignored.
func setCork(rc syscall.RawConn, on bool) bool {
	f := corkOff
	if on {
		f = corkOn
	}
	return rc.Control(f) == nil
}

func corkOn(fd uintptr) {
	_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, 1)
}

func corkOff(fd uintptr) {
	_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, 0)
}
