package fastget

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Connection states, for Shutdown: only an idle connection may be closed
// under the client.
const (
	stateIdle int32 = iota
	stateActive
	stateClosed
)

// readBufSize is the request buffer: a request line longer than this is
// handed to net/http, which has its own limits.
const readBufSize = 4096

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}

// conn is one client connection. It is served either by its own
// goroutine (c set) or, on Linux with Config.Loops, by an event loop (c
// nil, fd set) until a write would block or a request is not the loop's
// kind; then it leaves the loop for a goroutine of its own (loop_linux.go).
type conn struct {
	s      *Server
	c      net.Conn
	h      *handoff
	lr     io.LimitedReader // bounds the header bytes read per request
	br     *bufio.Reader
	remote string
	ctx    context.Context
	cancel context.CancelFunc
	state  atomic.Int32
	w      response
	// deadline: a read deadline is set on c.
	deadline bool

	// On a loop (see loop_linux.go).
	fd       int
	l        *loop
	in       *[readBufSize]byte // bytes read and not yet served; nil when none
	inN      int
	consumed int   // bytes of in taken by the request being served
	expires  int64 // unix nanoseconds the connection may wait to; 0: no bound
	left     bool  // left its loop while a handler ran on it
}

func (s *Server) newConn(c net.Conn, h *handoff) *conn {
	cn := &conn{s: s, c: c, h: h, remote: c.RemoteAddr().String(), fd: -1}
	if !s.track(cn, true) {
		return nil
	}
	cn.setReader(c)
	cn.w.c = cn
	return cn
}

// setReader makes r the source of the connection's requests, read by its
// own goroutine from now on.
func (cn *conn) setReader(r io.Reader) {
	cn.lr.R = r
	cn.br = readerPool.Get().(*bufio.Reader)
	cn.br.Reset(&cn.lr)
	cn.ctx, cn.cancel = context.WithCancel(context.Background())
}

// serve runs requests until the connection ends or is handed off.
func (cn *conn) serve() { cn.run(true) }

// run is serve from the first request (first) or a later one.
func (cn *conn) run(first bool) {
	handed := false
	defer func() {
		if v := recover(); v != nil && v != http.ErrAbortHandler {
			cn.s.logPanic(cn.remote, v)
		}
		cn.finish(handed)
	}()
	for ; ; first = false {
		req, prefix, ok := cn.readRequest(first)
		if !ok {
			return
		}
		if req == nil { // not ours: net/http takes the connection
			handed = cn.handOff(prefix)
			return
		}
		cn.s.served.Add(1)
		if !cn.w.serve(req) {
			return
		}
		if cn.s.shutdown.Load() || !cn.state.CompareAndSwap(stateActive, stateIdle) {
			return
		}
	}
}

// finish ends the goroutine mode of a connection; handed says net/http
// has it now.
func (cn *conn) finish(handed bool) {
	cn.cancel()
	cn.s.track(cn, false)
	if !handed {
		cn.c.Close()
		cn.br.Reset(nil)
		readerPool.Put(cn.br)
	}
}

func (s *Server) logPanic(remote string, v any) {
	buf := make([]byte, 64<<10)
	buf = buf[:runtime.Stack(buf, false)]
	s.logf("fastget: panic serving %s: %v\n%s", remote, v, buf)
}

// handOff gives the connection, with prefix and whatever is buffered
// still to be read, to net/http.
func (cn *conn) handOff(prefix []byte) bool {
	cn.c.SetReadDeadline(time.Time{})
	cn.lr.N = math.MaxInt64
	var r io.Reader = cn.br
	if len(prefix) > 0 {
		r = io.MultiReader(bytes.NewReader(bytes.Clone(prefix)), cn.br)
	}
	hc := &handedConn{Conn: cn.c, r: r}
	if !cn.h.give(hc) {
		return false
	}
	cn.state.Store(stateClosed)
	return true
}

// handedConn is a connection given to net/http with bytes already read.
type handedConn struct {
	net.Conn
	r io.Reader
}

func (h *handedConn) Read(p []byte) (int, error) { return h.r.Read(p) }

// NetConn returns the TCP connection underneath, as tls.Conn's does.
func (h *handedConn) NetConn() net.Conn { return h.Conn }

// readRequest reads the next request. It returns ok false when the
// connection is done (closed, timed out, or answered with an error), and
// a nil request with the bytes it consumed when net/http should take
// the connection from here.
func (cn *conn) readRequest(first bool) (req *http.Request, prefix []byte, ok bool) {
	cfg := &cn.s.cfg
	// One deadline per request where possible: the wait for it (idle
	// time, or header time on a new connection), and the header time only
	// if its head is not already all here.
	wait := cfg.IdleTimeout
	if first {
		wait = cfg.ReadHeaderTimeout
	}
	cn.setDeadline(wait)
	cn.lr.N = int64(cfg.MaxHeaderBytes) + readBufSize // net/http's slack too
	if _, err := cn.br.Peek(1); err != nil {
		return nil, nil, false
	}
	if !cn.state.CompareAndSwap(stateIdle, stateActive) {
		return nil, nil, false // Shutdown closed it
	}
	if !first && cfg.ReadHeaderTimeout > 0 {
		if b, _ := cn.br.Peek(cn.br.Buffered()); !bytes.Contains(b, []byte("\r\n\r\n")) {
			cn.setDeadline(cfg.ReadHeaderTimeout)
		}
	}

	req, prefix, status, why := cn.parseRequest(cn.br)
	switch {
	case status != 0:
		cn.w.fail(status, why)
		return nil, nil, false
	case req == nil && prefix == nil:
		return nil, nil, false // closed or timed out mid-request
	case req == nil:
		return nil, prefix, true
	}
	cn.lr.N = math.MaxInt64
	return req.WithContext(cn.ctx), nil, true
}

// parseRequest reads one request's line and headers from br. It returns
// the request; or the line read (prefix) when net/http should take the
// connection from there; or the status to refuse it with (and why); or
// nothing at all when the connection ended or timed out mid-request.
func (cn *conn) parseRequest(br *bufio.Reader) (req *http.Request, prefix []byte, status int, why string) {
	cfg := &cn.s.cfg
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, line, 0, "" // a long line: net/http's to judge
		}
		return nil, nil, 0, "" // closed or timed out mid-line
	}
	method, target, proto, minor, ok := parseRequestLine(line)
	if !ok || !strings.HasPrefix(target, cfg.Prefix) {
		return nil, line, 0, ""
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, line, 0, ""
	}
	hdr, err := textproto.NewReader(br).ReadMIMEHeader()
	if err != nil {
		if cn.lr.N <= 0 {
			return nil, nil, http.StatusRequestHeaderFieldsTooLarge, ""
		} else if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isTimeout(err) {
			return nil, nil, http.StatusBadRequest, ""
		}
		return nil, nil, 0, ""
	}
	h := http.Header(hdr)
	if why := checkHeader(h, minor); why != "" {
		return nil, nil, http.StatusBadRequest, why
	}
	host := ""
	if v := h["Host"]; len(v) > 0 {
		host = v[0]
	}
	delete(h, "Host")
	req = &http.Request{
		Method:     method,
		URL:        u,
		Proto:      proto,
		ProtoMajor: 1,
		ProtoMinor: minor,
		Header:     h,
		Body:       http.NoBody,
		Host:       host,
		RemoteAddr: cn.remote,
		RequestURI: target,
	}
	req.Close = wantsClose(h, minor)
	return req, nil, 0, ""
}

// setDeadline bounds the connection's reads to d from now; d ≤ 0 lifts a
// bound set before.
func (cn *conn) setDeadline(d time.Duration) {
	if d > 0 {
		cn.c.SetReadDeadline(time.Now().Add(d))
		cn.deadline = true
	} else if cn.deadline {
		cn.c.SetReadDeadline(time.Time{})
		cn.deadline = false
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// parseRequestLine splits "METHOD TARGET HTTP/1.x\r\n". It accepts only
// what the loop serves (GET or HEAD, origin-form, HTTP/1.0 or 1.1);
// anything else is not ok and goes to net/http.
func parseRequestLine(line []byte) (method, target, proto string, minor int, ok bool) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	m, rest, ok1 := bytes.Cut(line, []byte(" "))
	t, p, ok2 := bytes.Cut(rest, []byte(" "))
	if !ok1 || !ok2 || len(t) == 0 || t[0] != '/' {
		return "", "", "", 0, false
	}
	switch string(m) {
	case http.MethodGet:
		method = http.MethodGet
	case http.MethodHead:
		method = http.MethodHead
	default:
		return "", "", "", 0, false
	}
	switch string(p) {
	case "HTTP/1.1":
		proto, minor = "HTTP/1.1", 1
	case "HTTP/1.0":
		proto, minor = "HTTP/1.0", 0
	default:
		return "", "", "", 0, false
	}
	return method, string(t), proto, minor, true
}

// checkHeader applies net/http's checks of a request's headers, and
// refuses a body (see the package doc). It returns why a request is bad,
// or "".
func checkHeader(h http.Header, minor int) string {
	hosts, haveHost := h["Host"]
	switch {
	case minor >= 1 && (!haveHost || len(hosts) == 0):
		return "missing required Host header"
	case len(hosts) > 1:
		return "-" // net/http says no more than "400 Bad Request"
	case len(hosts) == 1 && !httpguts.ValidHostHeader(hosts[0]):
		return "malformed Host header"
	}
	for k, vv := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			return "invalid header name"
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return "invalid header value"
			}
		}
	}
	if len(h["Transfer-Encoding"]) > 0 {
		return "a request body on GET or HEAD"
	}
	for _, v := range h["Content-Length"] {
		if strings.TrimSpace(v) != "0" {
			return "a request body on GET or HEAD"
		}
	}
	return ""
}

// wantsClose reports whether the client asked to close after this
// request: "Connection: close", or HTTP/1.0 without keep-alive.
func wantsClose(h http.Header, minor int) bool {
	if httpguts.HeaderValuesContainsToken(h["Connection"], "close") {
		return true
	}
	return minor == 0 && !httpguts.HeaderValuesContainsToken(h["Connection"], "keep-alive")
}

// write writes p to the client: on a loop as far as the socket takes it
// without blocking, the rest from the connection's own goroutine.
func (cn *conn) write(p []byte) (int, error) {
	done := 0
	if cn.c == nil {
		n, err := cn.writeRaw(p)
		if err != nil || n == len(p) {
			return n, err
		}
		if err := cn.leave(); err != nil {
			return n, err
		}
		done = n
	}
	n, err := cn.c.Write(p[done:])
	return done + n, err
}

// writeBuffers writes bufs in one writev(2) where the socket takes them,
// consuming bufs.
func (cn *conn) writeBuffers(bufs *net.Buffers) error {
	if cn.c == nil {
		if err := cn.writevRaw(bufs); err != nil || len(*bufs) == 0 {
			return err
		}
		if err := cn.leave(); err != nil {
			return err
		}
	}
	_, err := bufs.WriteTo(cn.c)
	return err
}

// sendFrom copies src to the client, with sendfile(2) when src is a file.
func (cn *conn) sendFrom(src io.Reader) (int64, error) {
	var done int64
	if cn.c == nil {
		n, more, err := cn.sendRaw(src)
		if err != nil || !more {
			return n, err
		}
		if err := cn.leave(); err != nil {
			return n, err
		}
		done = n
	}
	n, err := io.Copy(cn.c, src)
	return done + n, err
}
