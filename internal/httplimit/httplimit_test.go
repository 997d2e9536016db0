package httplimit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"testing/iotest"
	"time"
)

func TestReadAll(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 10_000) // 100,000 bytes
	for _, tc := range []struct {
		name        string
		body        []byte
		limit, hint int64
		wantErr     error
	}{
		{"exact hint", data, 100_000, 100_000, nil},
		{"no hint", data, 100_000, -1, nil},
		{"hint too small", data, 100_000, 10, nil},
		{"hint too large", data, 100_000, 1 << 40, nil},
		{"empty", nil, 10, -1, nil},
		{"one over", data, 99_999, -1, ErrTooLarge},
		{"one over, hint says fits", data, 99_999, 50, ErrTooLarge},
		{"zero limit", []byte("x"), 0, -1, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadAll(iotest.HalfReader(bytes.NewReader(tc.body)), tc.limit, tc.hint)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && !bytes.Equal(got, tc.body) {
				t.Fatalf("read %d bytes, want %d", len(got), len(tc.body))
			}
		})
	}
	if _, err := ReadAll(iotest.ErrReader(io.ErrUnexpectedEOF), 10, -1); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("read error lost: %v", err)
	}
}

// endless is a reader that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// TestReadAllEndlessIsBounded: an endless body under a 10 MiB cap costs
// under three times the cap in allocations (the doubling buffer: 16 MiB
// of smaller buffers, then the 10 MiB one), where io.ReadAll's growth
// allocates several times more before a limit trips.
func TestReadAllEndlessIsBounded(t *testing.T) {
	const limit = 10 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := ReadAll(endless{}, limit, -1)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v", err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 3*limit {
		t.Errorf("allocated %d bytes for a %d-byte cap", got, limit)
	}
}

func TestDoHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/silent" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		w.Write([]byte("hello"))
	}))
	defer srv.Close()
	defer close(release)
	get := func(path string) (*http.Response, error) {
		ctx, cancel := context.WithCancelCause(context.Background())
		t.Cleanup(func() { cancel(nil) })
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
		return Do(srv.Client(), req, 200*time.Millisecond, cancel)
	}
	if _, err := get("/silent"); !errors.Is(err, ErrNoHeaders) {
		t.Fatalf("silent server: err = %v, want ErrNoHeaders", err)
	}
	resp, err := get("/ok")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The timer is stopped once the headers came: the body stays readable
	// after the header timeout.
	time.Sleep(300 * time.Millisecond)
	if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "hello" {
		t.Fatalf("body = %q, %v", b, err)
	}
}

func TestWatcherCutsTricklingBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for r.Context().Err() == nil {
			w.Write([]byte{'x'})
			w.(http.Flusher).Flush()
			time.Sleep(20 * time.Millisecond)
		}
	}))
	defer srv.Close()
	w := NewWatcher(1000, 200*time.Millisecond)
	defer w.Close()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := Do(srv.Client(), req, time.Second, cancel)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, done := w.Watch(resp.Body, cancel)
	defer done()
	_, err = io.Copy(io.Discard, body)
	if err == nil || !errors.Is(context.Cause(ctx), ErrTooSlow) {
		t.Fatalf("trickle: err = %v, cause = %v", err, context.Cause(ctx))
	}
}
