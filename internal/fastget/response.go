package fastget

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// outMax is the most a response buffers before writing: the headers and
// a small body leave in one write(2); a larger body is written as it
// comes, or with sendfile(2) through ReadFrom.
const outMax = 64 << 10

// response is the http.ResponseWriter of the loop, reused for every
// request on its connection.
type response struct {
	c    *conn
	req  *http.Request
	hdr  http.Header
	hb   []byte // status line and headers not yet written
	out  []byte // body bytes not yet written
	iov  [3][]byte
	bufs net.Buffers

	status      int
	wroteHeader bool // WriteHeader was called (the status is fixed)
	headerOut   bool // the header is in out or on the wire
	clen        int64
	written     int64 // body bytes accepted
	noBody      bool  // HEAD, or a status without a body
	chunked     bool
	closeAfter  bool
	err         error // a write failed: the client is gone
}

var (
	_ http.ResponseWriter = (*response)(nil)
	_ http.Flusher        = (*response)(nil)
	_ io.ReaderFrom       = (*response)(nil)
)

// serve runs the handler for req and finishes its response. It reports
// whether the connection may carry another request.
func (w *response) serve(req *http.Request) (keep bool) {
	w.req = req
	if w.hdr == nil {
		w.hdr = make(http.Header, 8)
	} else {
		clear(w.hdr)
	}
	w.hb, w.out = w.hb[:0], w.out[:0]
	w.status, w.wroteHeader, w.headerOut = 0, false, false
	w.clen, w.written, w.chunked, w.err = -1, 0, false, nil
	w.noBody = req.Method == http.MethodHead
	w.closeAfter = req.Close || w.c.s.shutdown.Load()

	w.c.s.cfg.Handler.ServeHTTP(w, req)
	w.finish()
	return w.err == nil && !w.closeAfter
}

func (w *response) Header() http.Header { return w.hdr }

func (w *response) WriteHeader(code int) {
	if w.wroteHeader || code < 200 || code > 999 {
		// 1xx interim responses are not sent (no client of the loop waits
		// for one); a repeated call is ignored, as net/http does.
		return
	}
	w.wroteHeader, w.status = true, code
	if code == http.StatusNoContent || code == http.StatusNotModified {
		w.noBody = true
	}
	if v := w.hdr.Get("Content-Length"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			delete(w.hdr, "Content-Length")
		} else {
			w.clen = n
		}
	}
}

func (w *response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody {
		if w.req.Method == http.MethodHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.clen >= 0 && w.written+int64(len(p)) > w.clen {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if !w.headerOut && w.clen < 0 && len(w.out)+len(p) <= outMax {
		w.out = append(w.out, p...) // the length is decided at the end
		return len(p), nil
	}
	w.putHeader()
	switch {
	case w.chunked:
		w.out = fmt.Appendf(w.out, "%x\r\n", len(p))
		w.out = append(w.out, p...)
		w.out = append(w.out, "\r\n"...)
		w.flush(nil)
	case w.written == w.clen || len(w.out)+len(p) > outMax:
		// The whole body, or more than the buffer: written from p
		// with the header in one writev(2), without copying it.
		w.flush(p)
	default:
		w.out = append(w.out, p...)
		return len(p), nil
	}
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

// ReadFrom sends a body of declared length from src, with sendfile(2)
// when src is a file (net.TCPConn's ReadFrom).
func (w *response) ReadFrom(src io.Reader) (int64, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.noBody || w.clen < 0 || w.err != nil {
		return io.Copy(writerOnly{w}, src)
	}
	left := w.clen - w.written
	if lr, ok := src.(*io.LimitedReader); !ok || lr.N > left {
		src = io.LimitReader(src, left)
	}
	w.putHeader()
	w.flush(nil)
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.c.sendFrom(src)
	w.written += n
	if err != nil {
		w.err = err
	}
	return n, err
}

// Flush writes what is buffered; a body of unknown length then goes on
// chunked (HTTP/1.1) or until the connection closes (HTTP/1.0).
func (w *response) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.putHeader()
	w.flush(nil)
}

// putHeader puts the status line and headers in hb, ahead of the body
// bytes in out.
func (w *response) putHeader() {
	if w.headerOut {
		return
	}
	w.headerOut = true
	if w.clen < 0 && !w.noBody {
		if w.req.ProtoMinor >= 1 {
			w.chunked = true
		} else {
			w.closeAfter = true
		}
	}
	w.hb = w.appendHeader(w.hb[:0], -1)
	if w.chunked && len(w.out) > 0 {
		chunk := fmt.Appendf(make([]byte, 0, len(w.out)+16), "%x\r\n", len(w.out))
		chunk = append(chunk, w.out...)
		w.out = append(chunk, "\r\n"...)
	}
}

// appendHeader appends the status line and headers; clen ≥ 0 is the body
// length to declare when the handler declared none.
func (w *response) appendHeader(b []byte, clen int64) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(w.status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(w.status)...)
	b = append(b, "\r\n"...)
	h := w.hdr
	if clen >= 0 && w.clen < 0 {
		if !w.noBody || w.req.Method == http.MethodHead && clen > 0 {
			b = append(b, "Content-Length: "...)
			b = strconv.AppendInt(b, clen, 10)
			b = append(b, "\r\n"...)
		}
	}
	if w.chunked {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if w.c.s.shutdown.Load() {
		w.closeAfter = true
	}
	if w.closeAfter {
		b = append(b, "Connection: close\r\n"...)
	}
	if _, ok := h["Date"]; !ok {
		b = append(b, "Date: "...)
		b = append(b, httpDate()...)
		b = append(b, "\r\n"...)
	}
	if _, ok := h["Content-Type"]; !ok && w.status != http.StatusNotModified && w.status != http.StatusNoContent {
		if w.written > 0 || clen > 0 {
			// net/http sniffs; the loop's routes always set it, so
			// this is only a safe default.
			b = append(b, "Content-Type: application/octet-stream\r\n"...)
		}
	}
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		switch k {
		case "Connection", "Transfer-Encoding", "Trailer":
			continue // the loop frames the response itself
		}
		if w.noBody && w.status == http.StatusNotModified && k == "Content-Type" {
			continue
		}
		for _, v := range h[k] {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, headerValue(v)...)
			b = append(b, "\r\n"...)
		}
	}
	return append(b, "\r\n"...)
}

// headerValue replaces the characters a handler must not put in a header
// value, as net/http does.
func headerValue(v string) string {
	if strings.ContainsAny(v, "\r\n") {
		return strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	return v
}

// finish completes the response after the handler returned.
func (w *response) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headerOut {
		clen := int64(len(w.out))
		if w.noBody && w.req.Method == http.MethodHead {
			clen = 0 // a HEAD handler that declared nothing
			w.out = w.out[:0]
		}
		w.hb = w.appendHeader(w.hb[:0], clen)
		w.headerOut = true
		if w.clen < 0 {
			w.clen = clen
		}
	} else if w.chunked {
		w.out = append(w.out, "0\r\n\r\n"...)
	}
	w.flush(nil)
	if w.clen >= 0 && !w.noBody && w.written < w.clen {
		w.closeAfter = true // short body: the framing is lost
	}
}

// flush writes the header and body bytes not yet written, then p, in one
// writev(2).
func (w *response) flush(p []byte) {
	if w.err == nil {
		w.bufs = w.iov[:0]
		for _, b := range [...][]byte{w.hb, w.out, p} {
			if len(b) > 0 {
				w.bufs = append(w.bufs, b)
			}
		}
		switch len(w.bufs) {
		case 0:
		case 1:
			_, w.err = w.c.write(w.bufs[0])
		default:
			w.err = w.c.writeBuffers(&w.bufs) // consumes w.bufs, not iov
		}
	}
	w.hb, w.out = w.hb[:0], w.out[:0]
	if cap(w.out) > outMax+4096 {
		w.out = nil // a chunked body's buffer: not kept
	}
}

// fail answers a request the loop refused before any handler ran, and
// the connection closes.
func (w *response) fail(code int, why string) {
	msg := strconv.Itoa(code) + " " + http.StatusText(code)
	if why != "" && why != "-" {
		msg += ": " + why
	}
	b := fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n%s", code, http.StatusText(code), msg)
	if _, err := w.c.c.Write(b); err != nil {
		return
	}
	// As net/http does: stop sending, and read what the client still
	// sends for a moment, so that closing does not reset the connection
	// before the client has read the answer.
	if tc, ok := w.c.c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		_ = tc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		w.c.lr.N = 256 << 10
		_, _ = io.Copy(io.Discard, w.c.br)
	}
}

// writerOnly hides ReadFrom, so io.Copy does not come back to it.
type writerOnly struct{ io.Writer }

// httpDate is the Date header's value, made once a second.
func httpDate() string {
	now := time.Now().Unix()
	if d := dateCache.Load(); d != nil && d.sec == now {
		return d.s
	}
	d := &cachedDate{sec: now, s: time.Unix(now, 0).UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.s
}

type cachedDate struct {
	sec int64
	s   string
}

var dateCache atomic.Pointer[cachedDate]
