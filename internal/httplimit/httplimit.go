// Package httplimit bounds one HTTP download from an untrusted server in
// time and in memory. The device's repository puller (internal/ostree/pull)
// and its channel metadata fetcher (internal/channelmeta) both use it, so a
// mirror that never answers, trickles, or sends without end is cut off the
// same way wherever the device downloads:
//
//   - Do: the response headers must arrive within a header timeout
//     (DefaultHeaderTimeout, 30 s): a server that accepts the connection
//     and then says nothing is given up on quickly, so the next mirror is
//     tried instead of waiting for a whole-request limit.
//   - Watcher: once the body flows, it must keep at least a minimum
//     throughput (DefaultMinBytesPerSecond over every DefaultGrace window);
//     one goroutine watches every body of a Watcher.
//   - ReadAll: a body read into memory never makes its buffer grow past
//     the cap the caller gives (plus one byte, to see that it is too
//     large), whatever Content-Length says: an endless body holds at most
//     the cap (and allocates under three times it in all, counting the
//     smaller buffers it outgrew), never the many times more that growing
//     without a cap costs.
package httplimit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Errors callers decide on; returned errors wrap them with detail.
var (
	// ErrNoHeaders: the server sent no response headers within the header
	// timeout.
	ErrNoHeaders = errors.New("no response headers")
	// ErrTooSlow: a response body arrived slower than the throughput floor.
	ErrTooSlow = errors.New("transfer below minimum throughput")
	// ErrTooLarge: a body is larger than the cap.
	ErrTooLarge = errors.New("response too large")
)

// Defaults for the limits.
const (
	DefaultHeaderTimeout     = 30 * time.Second
	DefaultMinBytesPerSecond = 1024
	DefaultGrace             = 30 * time.Second
)

// Do sends req with client and returns once the response headers arrived.
// When they do not arrive within headerTimeout (DefaultHeaderTimeout when
// <= 0), cancel, which must cancel req's context, is called with an error
// wrapping ErrNoHeaders, and Do returns that error.
func Do(client *http.Client, req *http.Request, headerTimeout time.Duration, cancel context.CancelCauseFunc) (*http.Response, error) {
	if headerTimeout <= 0 {
		headerTimeout = DefaultHeaderTimeout
	}
	cause := fmt.Errorf("%w within %s", ErrNoHeaders, headerTimeout)
	timer := time.AfterFunc(headerTimeout, func() { cancel(cause) })
	resp, err := client.Do(req)
	if !timer.Stop() {
		// Fired: the request is cancelled, even if the headers just came.
		if err == nil {
			resp.Body.Close()
		}
		return nil, cause
	}
	return resp, err
}

// Watcher enforces a throughput floor on the bodies it watches: a body
// that delivered fewer than MinBytesPerSecond bytes per second over a
// window of at least Grace has its request cancelled with an error
// wrapping ErrTooSlow. Create it with NewWatcher; Close stops it.
type Watcher struct {
	minRate int64
	grace   time.Duration

	mu    sync.Mutex
	xfers map[*transfer]struct{}
	stop  chan struct{}
}

// NewWatcher returns a Watcher (DefaultMinBytesPerSecond when minRate is
// 0, no floor at all when it is negative; DefaultGrace when grace <= 0).
// It starts its goroutine on the first Watch.
func NewWatcher(minRate int64, grace time.Duration) *Watcher {
	if minRate == 0 {
		minRate = DefaultMinBytesPerSecond
	}
	if grace <= 0 {
		grace = DefaultGrace
	}
	return &Watcher{minRate: minRate, grace: grace}
}

// transfer is a body being read.
type transfer struct {
	m      *meter
	cancel context.CancelCauseFunc
	last   int64     // bytes read at the start of the window
	since  time.Time // start of the window
}

// Watch puts r under the floor until done is called; reads must go
// through the returned reader. cancel must cancel the request r belongs to.
func (w *Watcher) Watch(r io.Reader, cancel context.CancelCauseFunc) (_ io.Reader, done func()) {
	if w.minRate < 0 {
		return r, func() {}
	}
	t := &transfer{m: &meter{r: r}, cancel: cancel, since: time.Now()}
	w.mu.Lock()
	if w.xfers == nil {
		w.xfers = map[*transfer]struct{}{}
		w.stop = make(chan struct{})
		go w.watch(w.stop)
	}
	w.xfers[t] = struct{}{}
	w.mu.Unlock()
	return t.m, func() {
		w.mu.Lock()
		delete(w.xfers, t)
		w.mu.Unlock()
	}
}

func (w *Watcher) watch(stop <-chan struct{}) {
	tick := time.NewTicker(max(w.grace/4, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			w.mu.Lock()
			for t := range w.xfers {
				elapsed := now.Sub(t.since)
				if elapsed < w.grace {
					continue
				}
				n := t.m.n.Load()
				if float64(n-t.last)/elapsed.Seconds() < float64(w.minRate) {
					t.cancel(fmt.Errorf("%w: %d bytes in %s, floor %d B/s", ErrTooSlow, n-t.last, elapsed.Round(time.Millisecond), w.minRate))
					delete(w.xfers, t)
					continue
				}
				t.last, t.since = n, now
			}
			w.mu.Unlock()
		}
	}
}

// Close stops the watcher's goroutine. Bodies still watched are no longer
// checked; Watch may be called again afterwards.
func (w *Watcher) Close() {
	w.mu.Lock()
	if w.stop != nil {
		close(w.stop)
		w.stop, w.xfers = nil, nil
	}
	w.mu.Unlock()
}

// meter counts the bytes read through it.
type meter struct {
	r io.Reader
	n atomic.Int64
}

func (m *meter) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	m.n.Add(int64(n))
	return n, err
}

// firstChunk is the buffer ReadAll starts with when the size is not known.
const firstChunk = 32 << 10

// ReadAll reads r to the end, failing with an error wrapping ErrTooLarge
// as soon as more than limit bytes arrive. sizeHint (a Content-Length, -1
// when unknown) only sizes the first buffer; the buffer grows by doubling
// but never past limit+1 bytes, so memory stays near the bytes actually
// received and at most about limit.
func ReadAll(r io.Reader, limit, sizeHint int64) ([]byte, error) {
	if limit < 0 {
		limit = 0
	}
	ceil := limit + 1
	size := min(int64(firstChunk), ceil)
	if sizeHint >= 0 && sizeHint < ceil {
		size = sizeHint + 1 // +1 so the final read sees EOF without growing
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			if int64(cap(buf)) >= ceil {
				return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
			}
			next := make([]byte, len(buf), min(2*int64(cap(buf)), ceil))
			copy(next, buf)
			buf = next
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
