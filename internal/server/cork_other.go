//go:build !linux

package server

import (
	"context"
	"net"
	"syscall"
)

// connContext adds nothing: there is no TCP_CORK here.
func connContext(ctx context.Context, _ net.Conn) context.Context { return ctx }

// setCork is not supported here.
func setCork(syscall.RawConn, bool) bool { return false }
