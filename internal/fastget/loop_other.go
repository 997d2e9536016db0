//go:build !linux

package fastget

import (
	"io"
	"net"
)

// loop: Config.Loops is Linux only; elsewhere every connection gets its
// own goroutine and these are never reached.
type loop struct{}

func (s *Server) startLoops(*handoff, net.Listener) bool { return false }
func (s *Server) stopAccepting()                         {}
func (l *loop) wake()                                    {}
func (cn *conn) leave() error                            { return net.ErrClosed }
func (cn *conn) writeRaw([]byte) (int, error)            { return 0, net.ErrClosed }
func (cn *conn) writevRaw(*net.Buffers) error            { return net.ErrClosed }
func (cn *conn) sendRaw(io.Reader) (int64, bool, error) {
	return 0, false, net.ErrClosed
}
