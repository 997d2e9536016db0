//go:build linux

package fastget

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The event loops of Config.Loops.
//
// Each loop owns an epoll instance and the connections placed on it. The
// goroutine running a loop waits for readable connections, reads their
// requests and runs the handler for each inline, writing the response
// straight to the socket; no goroutine is started or woken per request.
//
// While there is work, it waits with a raw epoll_pwait bounded to
// busyWait, without telling the runtime it is in a system call: the
// goroutine keeps its P, so a request arriving does not cost the thread
// hand-off the runtime makes around a blocking system call (measured:
// README, "Where the floor is"). The price is that the runtime cannot stop
// that P while it waits, so the wait is short; a stop of the world (a
// collection) asks the goroutine to yield, and it does at its next
// function call, within busyWait. It does not yield otherwise: a yield
// wakes an idle thread to look for work, each time.
// After idleWaits empty waits in a row it waits as an ordinary (blocking)
// system call until the next event.
//
// A connection leaves its loop for a goroutine of its own (conn.run, the
// goroutine mode) when a response would block (a slow reader, a large
// body), or when a request is not the loop's kind or not whole within
// readBufSize: the goroutine mode replays the bytes already read and does
// everything else as without loops. When it leaves in the middle of a
// handler, the goroutine that ran the handler stays with the connection
// and a new goroutine takes over the loop (leave).
const (
	busyWait   = 2   // ms: the bounded wait while busy
	idleWaits  = 25  // empty bounded waits before the blocking wait
	sweepEvery = 250 // ms: how often timeouts are checked
	maxEvents  = 128
)

// loop is one event loop.
type loop struct {
	s      *Server
	h      *handoff
	epfd   int
	wakefd int // an eventfd: Shutdown and Close wake the loop with it

	mu     sync.Mutex // guards conns and closed against wake and Shutdown
	conns  map[int32]*conn
	closed bool

	// lfd is the loop's own descriptor of the listening socket when the
	// loops accept (see listen), else -1.
	lfd         int
	acceptAgain int64 // unix nanoseconds: accepting paused until then

	// Used only by the goroutine running the loop. When it leaves with a
	// connection, it stops touching them before its successor starts.
	events  [maxEvents]unix.EpollEvent
	pending []unix.EpollEvent // events of the last wait not yet handled
	idle    int               // empty waits in a row
	swept   int64             // unix nanoseconds of the last sweep
	rd      bytes.Reader
	br      *bufio.Reader
}

var inPool = sync.Pool{New: func() any { return new([readBufSize]byte) }}

// startLoops starts cfg.Loops loops; without them (an error, logged) every
// connection gets its own goroutine. The loops accept ln's connections
// themselves (then ln is closed: the loops hold their own descriptors of
// the socket, outside the runtime's poller, which would otherwise wake a
// thread for every connection); it reports whether they run.
func (s *Server) startLoops(h *handoff, ln net.Listener) bool {
	for range s.cfg.Loops {
		l, err := newLoop(s, h)
		if err != nil {
			s.logf("fastget: no event loops, a goroutine per connection: %v", err)
			for _, l := range s.loops {
				l.closeAll()
			}
			s.loops = nil
			return false
		}
		s.loops = append(s.loops, l)
	}
	if !s.listen(ln) {
		// Not a plain TCP listener (or no descriptor of it): no loops,
		// rather than a second way for connections to reach them.
		for _, l := range s.loops {
			l.closeAll()
		}
		s.loops = nil
		return false
	}
	for _, l := range s.loops {
		go l.run()
	}
	return true
}

// listen gives every loop its own descriptor of ln's socket to accept
// from, if ln is a plain TCP listener; false if it cannot.
func (s *Server) listen(ln net.Listener) bool {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return false
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return false
	}
	fds := make([]int, 0, len(s.loops))
	var derr error
	err = rc.Control(func(fd uintptr) {
		for range s.loops {
			nfd, err := unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
			if err != nil {
				derr = err
				return
			}
			fds = append(fds, nfd)
		}
	})
	events := uint32(unix.EPOLLIN)
	if len(s.loops) > 1 {
		events |= unix.EPOLLEXCLUSIVE // one loop woken per connection
	}
	for i, l := range s.loops {
		if err != nil || derr != nil {
			break
		}
		ev := unix.EpollEvent{Events: events, Fd: int32(fds[i])}
		derr = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fds[i], &ev)
	}
	if err != nil || derr != nil {
		for _, fd := range fds {
			unix.Close(fd) // also leaves any epoll set
		}
		s.logf("fastget: no event loops, a goroutine per connection: %v", errors.Join(err, derr))
		return false
	}
	for i, l := range s.loops {
		l.lfd = fds[i]
	}
	tl.Close() // the loops' descriptors keep the socket listening
	return true
}

// stopAccepting makes the loops close their listening descriptors (the
// handoff listener was closed).
func (s *Server) stopAccepting() {
	s.acceptStop.Store(true)
	for _, l := range s.loops {
		l.wake()
	}
}

func newLoop(s *Server, h *handoff) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	return &loop{s: s, h: h, epfd: epfd, wakefd: wakefd, lfd: -1, conns: make(map[int32]*conn),
		br: bufio.NewReaderSize(nil, readBufSize)}, nil
}

// register places the connection on fd on the loop; false (fd closed) if
// the loop is closed or epoll refuses it.
func (l *loop) register(fd int, remote string) bool {
	cn := &conn{s: l.s, h: l.h, remote: remote, fd: fd, l: l}
	cn.w.c = cn
	cn.expires = deadline(l.s.cfg.ReadHeaderTimeout)
	l.mu.Lock()
	defer l.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}
	if l.closed || unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev) != nil {
		unix.Close(fd)
		return false
	}
	l.conns[int32(fd)] = cn
	l.s.loopConns.Add(1)
	return true
}

// accept takes the connections waiting on the listening socket, up to a
// batch, so that serving is not starved by a flood of connections.
func (l *loop) accept() {
	for range 64 {
		fd, sa, err := unix.Accept4(l.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch err {
		case nil:
		case unix.EINTR, unix.ECONNABORTED:
			continue
		case unix.EAGAIN:
			return
		default:
			// Out of descriptors or memory, as net/http's accept loop
			// sees them: pause accepting rather than spin on the
			// still-readable socket.
			l.s.logf("fastget: accept: %v; retrying in %v", err, acceptPause)
			unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, l.lfd, nil)
			l.acceptAgain = time.Now().Add(acceptPause).UnixNano()
			return
		}
		// As net does for accepted TCP connections: small responses are
		// not held back waiting for acknowledgements.
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		l.register(fd, sockaddrString(sa))
	}
}

// acceptPause is how long a loop stops accepting after accept(2) failed
// for want of resources.
const acceptPause = 100 * time.Millisecond

// sockaddrString formats a peer address as net.TCPAddr.String does.
func sockaddrString(sa unix.Sockaddr) string {
	var ap netip.AddrPort
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		ap = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		a := netip.AddrFrom16(sa.Addr).Unmap()
		if sa.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.ZoneId)); err == nil {
				a = a.WithZone(ifi.Name)
			} else {
				a = a.WithZone(strconv.Itoa(int(sa.ZoneId)))
			}
		}
		ap = netip.AddrPortFrom(a, uint16(sa.Port))
	default:
		return ""
	}
	return ap.String()
}

// wake makes the loop look at the server's state (Shutdown, Close).
func (l *loop) wake() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		var one = [8]byte{1}
		unix.Write(l.wakefd, one[:])
	}
}

// run is the loop. It returns when the server shuts down, or when this
// goroutine left with a connection and a successor took over.
func (l *loop) run() {
	for {
		if len(l.pending) == 0 && !l.wait() {
			return
		}
		for len(l.pending) > 0 {
			ev := l.pending[0]
			l.pending = l.pending[1:]
			if !l.event(ev) {
				return
			}
		}
	}
}

// wait waits for events into pending; false when the loop is done.
func (l *loop) wait() bool {
	for {
		if l.s.shutdown.Load() {
			l.closeAll()
			return false
		}
		if l.lfd >= 0 && l.s.acceptStop.Load() {
			unix.Close(l.lfd)
			l.lfd = -1
		}
		if now := time.Now().UnixNano(); now-l.swept >= sweepEvery*int64(time.Millisecond) {
			l.sweep(now)
			l.swept = now
			if l.acceptAgain != 0 && now >= l.acceptAgain && l.lfd >= 0 {
				l.acceptAgain = 0
				ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(l.lfd)}
				unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, l.lfd, &ev)
			}
		}
		var n int
		var errno syscall.Errno
		if l.idle < idleWaits {
			n, errno = epollWaitRaw(l.epfd, l.events[:], busyWait)
		} else {
			var err error
			n, err = unix.EpollWait(l.epfd, l.events[:], sweepEvery)
			errors.As(err, &errno)
		}
		switch {
		case errno == unix.EINTR:
			continue
		case errno != 0:
			l.s.logf("fastget: event loop stopped: epoll_pwait: %v", errno)
			l.closeAll()
			return false
		case n <= 0:
			l.idle++
			continue
		}
		l.idle = 0
		l.pending = l.events[:n]
		return true
	}
}

// epollWaitRaw is epoll_pwait without entering the runtime's system call
// state (see the file's comment).
func epollWaitRaw(epfd int, events []unix.EpollEvent, msec int) (int, syscall.Errno) {
	r, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd),
		uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(msec), 0, 0)
	return int(r), e
}

// event handles one event; false when this goroutine is no longer the
// loop's.
func (l *loop) event(ev unix.EpollEvent) bool {
	switch ev.Fd {
	case int32(l.wakefd):
		var b [8]byte
		unix.Read(l.wakefd, b[:])
		return true
	case int32(l.lfd):
		l.accept()
		return true
	}
	l.mu.Lock()
	cn := l.conns[ev.Fd]
	l.mu.Unlock()
	if cn == nil {
		return true
	}
	if cn.in == nil {
		cn.in = inPool.Get().(*[readBufSize]byte)
	}
	for {
		n, err := unix.Read(cn.fd, cn.in[cn.inN:])
		switch {
		case n > 0:
			if cn.inN == 0 {
				cn.expires = deadline(l.s.cfg.ReadHeaderTimeout)
			}
			cn.inN += n
			return l.process(cn)
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			l.dropIn(cn)
			return true
		default: // closed by the client, or reset
			l.closeConn(cn)
			return true
		}
	}
}

// process serves the whole requests read on cn; false when this goroutine
// left with cn.
func (l *loop) process(cn *conn) bool {
	for {
		end := headEnd(cn.in[:cn.inN])
		if end < 0 {
			if cn.inN == len(cn.in) {
				l.toGoroutine(cn) // a long head: the goroutine mode reads it
			}
			return true
		}
		req := l.parse(cn, cn.in[:end])
		if req == nil {
			l.toGoroutine(cn) // not ours, or bad: the goroutine mode answers
			return true
		}
		cn.consumed = end
		keep := l.serveInline(cn, req)
		if cn.left {
			cn.afterLeaving(keep)
			return false
		}
		if !keep || l.s.shutdown.Load() || cn.fd < 0 {
			l.closeConn(cn)
			return true
		}
		cn.inN = copy(cn.in[:], cn.in[end:cn.inN])
		cn.consumed = 0
		if cn.inN == 0 {
			l.dropIn(cn)
			cn.expires = deadline(l.s.cfg.IdleTimeout)
			return true
		}
		cn.expires = deadline(l.s.cfg.ReadHeaderTimeout) // pipelined
	}
}

// headEnd returns the length of the request head at the start of b (up to
// and including the empty line), or -1 if it is not all there.
func headEnd(b []byte) int {
	i := bytes.Index(b, []byte("\n\r\n"))
	if j := bytes.Index(b, []byte("\n\n")); j >= 0 && (i < 0 || j < i) {
		return j + 2
	}
	if i < 0 {
		return -1
	}
	return i + 3
}

// parse returns the request in head if the loop serves it, else nil.
func (l *loop) parse(cn *conn, head []byte) *http.Request {
	l.rd.Reset(head)
	l.br.Reset(&l.rd)
	req, _, status, _ := cn.parseRequest(l.br)
	if req == nil || status != 0 || l.br.Buffered() > 0 {
		return nil
	}
	// No context of its own (it costs a copy of the request): nothing a
	// loop's handler does waits for one (Config.Loops).
	return req
}

// serveInline runs the handler for req on this goroutine.
func (l *loop) serveInline(cn *conn, req *http.Request) (keep bool) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				l.s.logPanic(cn.remote, v)
			}
			keep = false
		}
	}()
	l.s.served.Add(1)
	return cn.w.serve(req)
}

// toGoroutine moves cn, with the bytes read and not served, to a goroutine
// of its own.
func (l *loop) toGoroutine(cn *conn) {
	if err := l.release(cn); err != nil {
		l.s.logf("fastget: %v", err)
		return
	}
	cn.state.Store(stateIdle)
	go cn.serve()
}

// leave takes cn off its loop in the middle of a response that would
// block: this goroutine stays with cn, and a successor runs the loop.
func (cn *conn) leave() error {
	l := cn.l
	if l == nil {
		return net.ErrClosed
	}
	if err := l.release(cn); err != nil {
		return err
	}
	cn.left = true
	cn.state.Store(stateActive)
	go l.run()
	return nil
}

// afterLeaving goes on with cn on this goroutine once the handler that
// was running when it left its loop has returned.
func (cn *conn) afterLeaving(keep bool) {
	if keep && !cn.s.shutdown.Load() && cn.state.CompareAndSwap(stateActive, stateIdle) {
		cn.run(false)
		return
	}
	cn.finish(false)
}

// release takes cn off the loop and gives it a net.Conn (in the runtime's
// poller) that first yields the bytes read and not yet served.
func (l *loop) release(cn *conn) error {
	var rest []byte
	if cn.in != nil {
		rest = bytes.Clone(cn.in[cn.consumed:cn.inN])
	}
	l.dropIn(cn)
	fd := cn.fd
	l.forget(cn)
	cn.fd, cn.l = -1, nil
	f := os.NewFile(uintptr(fd), "")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("moving a connection off its event loop: %w", err)
	}
	cn.c = nc
	var r io.Reader = nc
	if len(rest) > 0 {
		r = io.MultiReader(bytes.NewReader(rest), nc)
	}
	cn.setReader(r)
	cn.s.track(cn, true) // during Shutdown not tracked: it ends after this response
	cn.s.left.Add(1)
	return nil
}

// forget takes cn off the loop's table and epoll set, leaving its
// descriptor open.
func (l *loop) forget(cn *conn) {
	l.mu.Lock()
	delete(l.conns, int32(cn.fd))
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, cn.fd, nil)
	l.mu.Unlock()
	l.s.loopConns.Add(-1)
}

func (l *loop) closeConn(cn *conn) {
	if cn.fd < 0 {
		return
	}
	l.dropIn(cn)
	l.mu.Lock()
	delete(l.conns, int32(cn.fd))
	l.mu.Unlock()
	unix.Close(cn.fd) // also leaves the epoll set: no other descriptor shares it
	cn.fd = -1
	l.s.loopConns.Add(-1)
}

// dropIn returns cn's read buffer to the pool when it holds nothing.
func (l *loop) dropIn(cn *conn) {
	if cn.in != nil && cn.inN == cn.consumed {
		inPool.Put(cn.in)
		cn.in, cn.inN, cn.consumed = nil, 0, 0
	}
}

// sweep closes the connections whose wait ran past its bound.
func (l *loop) sweep(now int64) {
	var late []*conn
	l.mu.Lock()
	for _, cn := range l.conns {
		if cn.expires != 0 && now > cn.expires {
			late = append(late, cn)
		}
	}
	l.mu.Unlock()
	for _, cn := range late {
		l.closeConn(cn)
	}
}

// closeAll closes every connection on the loop and the loop itself.
func (l *loop) closeAll() {
	l.mu.Lock()
	conns := make([]*conn, 0, len(l.conns))
	for _, cn := range l.conns {
		conns = append(conns, cn)
	}
	l.closed = true
	l.mu.Unlock()
	for _, cn := range conns {
		l.closeConn(cn)
	}
	l.mu.Lock()
	unix.Close(l.epfd)
	unix.Close(l.wakefd)
	if l.lfd >= 0 {
		unix.Close(l.lfd)
		l.lfd = -1
	}
	l.mu.Unlock()
}

// deadline is now plus d in unix nanoseconds, or 0 (no bound) for d ≤ 0.
func deadline(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return time.Now().Add(d).UnixNano()
}

// writeRaw writes p to the socket as far as it takes it without blocking.
func (cn *conn) writeRaw(p []byte) (int, error) {
	done := 0
	for done < len(p) && cn.fd >= 0 {
		n, err := unix.Write(cn.fd, p[done:])
		switch {
		case n > 0:
			done += n
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			return done, nil
		default:
			return done, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", err)}
		}
	}
	if cn.fd < 0 {
		return done, net.ErrClosed
	}
	return done, nil
}

// writevRaw writes bufs with writev(2) as far as the socket takes them
// without blocking, consuming what it wrote.
func (cn *conn) writevRaw(bufs *net.Buffers) error {
	for len(*bufs) > 0 {
		if cn.fd < 0 {
			return net.ErrClosed
		}
		n, err := unix.Writev(cn.fd, *bufs)
		switch {
		case n > 0:
			consume(bufs, n)
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			return nil
		default:
			return &net.OpError{Op: "writev", Net: "tcp", Err: os.NewSyscallError("writev", err)}
		}
	}
	return nil
}

func consume(bufs *net.Buffers, n int) {
	for n > 0 && len(*bufs) > 0 {
		b := (*bufs)[0]
		if n < len(b) {
			(*bufs)[0] = b[n:]
			return
		}
		n -= len(b)
		*bufs = (*bufs)[1:]
	}
}

// sendRaw sends src with sendfile(2) when it is a length-limited file, as
// far as the socket takes it without blocking; more says src has bytes
// left. Any other reader is copied through writeRaw.
func (cn *conn) sendRaw(src io.Reader) (n int64, more bool, err error) {
	lr, ok := src.(*io.LimitedReader)
	var f *os.File
	if ok {
		f, ok = lr.R.(*os.File)
	}
	if !ok {
		var buf [8 << 10]byte
		for {
			m, rerr := src.Read(buf[:])
			if m > 0 {
				w, werr := cn.writeRaw(buf[:m])
				n += int64(w)
				if werr != nil {
					return n, false, werr
				}
				if w < m {
					// The socket is full: the rest goes from the goroutine.
					return n, false, cn.sendRest(buf[w:m], src, &n)
				}
			}
			if rerr == io.EOF {
				return n, false, nil
			}
			if rerr != nil {
				return n, false, rerr
			}
		}
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, true, nil // the goroutine mode's io.Copy takes it
	}
	var serr error
	blocked := false
	cerr := rc.Control(func(ffd uintptr) {
		for lr.N > 0 && cn.fd >= 0 {
			m, err := unix.Sendfile(cn.fd, int(ffd), nil, int(min(lr.N, 1<<30)))
			switch {
			case m > 0:
				lr.N -= int64(m)
				n += int64(m)
			case err == unix.EINTR:
			case err == unix.EAGAIN:
				blocked = true
				return
			case err == nil: // the file is shorter than said
				lr.N = 0
				return
			default:
				serr = &net.OpError{Op: "sendfile", Net: "tcp", Err: os.NewSyscallError("sendfile", err)}
				return
			}
		}
	})
	switch {
	case cerr != nil:
		return n, false, cerr
	case serr != nil:
		return n, false, serr
	case cn.fd < 0:
		return n, false, net.ErrClosed
	}
	return n, blocked && lr.N > 0, nil
}

// sendRest leaves the loop with part of a copy still to write: pending,
// then the rest of src, both from this goroutine once off the loop.
func (cn *conn) sendRest(pending []byte, src io.Reader, n *int64) error {
	if err := cn.leave(); err != nil {
		return err
	}
	w, err := cn.c.Write(pending)
	*n += int64(w)
	if err != nil {
		return err
	}
	m, err := io.Copy(cn.c, src)
	*n += m
	return err
}
