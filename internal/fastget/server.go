package fastget

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Config says which requests the loop serves and how.
type Config struct {
	// Handler serves every request the loop takes (the server's whole
	// handler chain, so routing, metrics and logging stay as they are).
	Handler http.Handler
	// Prefix is the path prefix of the requests taken, e.g. "/repo/".
	Prefix string
	// ReadHeaderTimeout bounds how long a client may take to send a
	// request's line and headers once it has started; IdleTimeout how long
	// a keep-alive connection may wait for its next request. Zero means no
	// bound, as in net/http.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	// MaxHeaderBytes bounds a request's line and headers (net/http's
	// default when ≤ 0).
	MaxHeaderBytes int
	// ErrorLog receives handler panics; log's default logger when nil.
	ErrorLog *log.Logger
	// Loops is how many event loops serve plain-TCP connections (Linux
	// only; loop_linux.go says how). Zero gives every connection a
	// goroutine of its own. A loop runs the handler inline, so with loops
	// the handler must not block on anything but local files: one that
	// waits on the network or a lock stalls every connection of its loop.
	// While busy, each loop keeps one of the runtime's Ps, so leave at
	// least one for the rest of the program.
	Loops int
}

// Server runs the loop on the connections of one listener.
type Server struct {
	cfg Config

	mu       sync.Mutex
	conns    map[*conn]struct{}
	shutdown atomic.Bool
	done     chan struct{} // closed by Shutdown or Close
	served   atomic.Uint64

	loops      []*loop
	loopConns  atomic.Int64  // connections on loops
	left       atomic.Uint64 // connections that left a loop for a goroutine
	acceptStop atomic.Bool   // the loops stop accepting (the listener closed)
}

// Left returns how many connections have moved from an event loop to a
// goroutine of their own (a response that would block, a request not the
// loop's kind).
func (s *Server) Left() uint64 { return s.left.Load() }

// Served returns how many requests the loop has run the handler for.
func (s *Server) Served() uint64 { return s.served.Load() }

// New returns a server for cfg.
func New(cfg Config) *Server {
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = http.DefaultMaxHeaderBytes
	}
	return &Server{cfg: cfg, conns: make(map[*conn]struct{}), done: make(chan struct{})}
}

// Listen starts accepting on ln and returns the listener net/http should
// serve: it yields the connections this loop hands over. Closing it
// closes ln.
func (s *Server) Listen(ln net.Listener) net.Listener {
	h := &handoff{ln: ln, conns: make(chan net.Conn), done: s.done, closed: make(chan struct{})}
	if s.cfg.Loops > 0 && s.startLoops(h, ln) {
		h.onClose = s.stopAccepting
		return h
	}
	go s.accept(ln, h)
	return h
}

// accept takes connections from ln until it fails for good. Plain TCP
// connections get the loop; anything else (TLS) goes to net/http at once.
func (s *Server) accept(ln net.Listener, h *handoff) {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// As net/http does: out of descriptors and the like.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			h.fail(err)
			return
		}
		backoff = 0
		if _, ok := c.(*net.TCPConn); !ok || s.shutdown.Load() {
			if !h.give(c) {
				c.Close()
			}
			continue
		}
		cn := s.newConn(c, h)
		if cn == nil {
			c.Close()
			continue
		}
		go cn.serve()
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.cfg.ErrorLog != nil {
		s.cfg.ErrorLog.Printf(format, args...)
		return
	}
	log.Printf(format, args...)
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// Shutdown stops taking new requests: idle connections are closed now,
// busy ones after their current response. It returns when none is left,
// or with ctx's error, after closing the rest. The listener itself is
// closed by net/http's own Shutdown (see Listen).
func (s *Server) Shutdown(ctx context.Context) error {
	s.begin()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if s.closeIdle() == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close closes every connection the loop holds.
func (s *Server) Close() error {
	s.begin()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.c.Close()
		c.cancel() // a handler waiting on its request's context ends too
	}
	return nil
}

// begin starts the shutdown; the loops close their connections when they
// next look (at once if idle, after the current request if busy).
func (s *Server) begin() {
	if s.shutdown.CompareAndSwap(false, true) {
		close(s.done)
		for _, l := range s.loops {
			l.wake()
		}
	}
}

// closeIdle closes the connections waiting for a request and returns how
// many connections are left.
func (s *Server) closeIdle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosed) {
			c.c.Close()
		}
	}
	return len(s.conns) + int(s.loopConns.Load())
}

func (s *Server) track(c *conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.shutdown.Load() {
			return false
		}
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
	return true
}

// handoff is the listener net/http serves: the connections the loop gives
// up, and ln's final error.
type handoff struct {
	ln    net.Listener
	conns chan net.Conn
	done  <-chan struct{}
	// onClose stops the loops' accepting, when they accept.
	onClose func()

	once   sync.Once
	closed chan struct{}
	errMu  sync.Mutex
	err    error
}

func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.closed:
		h.errMu.Lock()
		defer h.errMu.Unlock()
		if h.err != nil {
			return nil, h.err
		}
		return nil, net.ErrClosed
	}
}

// give passes c to net/http; false if it stopped accepting.
func (h *handoff) give(c net.Conn) bool {
	select {
	case h.conns <- c:
		return true
	case <-h.closed:
		return false
	}
}

func (h *handoff) fail(err error) {
	h.errMu.Lock()
	if h.err == nil {
		h.err = err
	}
	h.errMu.Unlock()
	h.once.Do(func() { close(h.closed) })
}

func (h *handoff) Close() error {
	err := h.ln.Close()
	if h.onClose != nil {
		h.onClose()
		err = nil // ln was closed at the start: the loops accept
	}
	h.once.Do(func() { close(h.closed) })
	return err
}

func (h *handoff) Addr() net.Addr { return h.ln.Addr() }
