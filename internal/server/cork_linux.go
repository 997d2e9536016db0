package server

import (
	"net"
	"syscall"
)

// setCork sets TCP_CORK on c: while set, the kernel holds partial frames,
// so the headers written by net/http and the body sent by sendfile leave
// as full segments instead of one small packet each (nginx's tcp_nopush).
// Clearing it sends whatever is pending at once.
func setCork(c *net.TCPConn, on bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	v := 0
	if on {
		v = 1
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, v)
	})
}
