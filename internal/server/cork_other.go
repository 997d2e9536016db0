//go:build !linux

package server

import "net"

// setCork is a no-op where TCP_CORK does not exist.
func setCork(*net.TCPConn, bool) {}
