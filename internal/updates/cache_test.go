package updates

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/db"
)

// The cache's rules, one case each: a cancelled caller does not end the
// shared load, transient errors are not kept, a failed refresh serves the
// last good value, definite answers (not found) are kept, and a clear
// during a load keeps the load's (older) result out.
func TestTTLCacheSharedLoad(t *testing.T) {
	errDown := errors.New("database is down")
	now := time.Unix(1000, 0)
	tests := []struct {
		name string
		run  func(t *testing.T, c *ttlCache[string, int])
	}{
		{"cancelled caller does not cancel the shared load", func(t *testing.T, c *ttlCache[string, int]) {
			started, release := make(chan struct{}), make(chan struct{})
			load := func(ctx context.Context) (int, error) {
				close(started)
				<-release
				return 7, ctx.Err()
			}
			ctxA, cancelA := context.WithCancel(context.Background())
			errA := make(chan error, 1)
			go func() { _, err := c.get(ctxA, "k", now, load); errA <- err }()
			<-started
			type res struct {
				v   int
				err error
			}
			resB := make(chan res, 1)
			go func() {
				v, err := c.get(context.Background(), "k", now, func(context.Context) (int, error) { return 0, errors.New("second load: not shared") })
				resB <- res{v, err}
			}()
			cancelA()
			if err := <-errA; !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled caller: %v", err)
			}
			time.Sleep(10 * time.Millisecond) // let B join the flight before it ends
			close(release)
			if r := <-resB; r.err != nil || r.v != 7 {
				t.Fatalf("other caller got %d, %v", r.v, r.err)
			}
			if v, err := c.get(context.Background(), "k", now, func(context.Context) (int, error) { return 0, errDown }); v != 7 || err != nil {
				t.Fatalf("cached value: %d, %v", v, err)
			}
		}},
		{"transient error is not cached", func(t *testing.T, c *ttlCache[string, int]) {
			if _, err := c.get(context.Background(), "k", now, func(context.Context) (int, error) { return 0, errDown }); !errors.Is(err, errDown) {
				t.Fatalf("first: %v", err)
			}
			if v, err := c.get(context.Background(), "k", now, func(context.Context) (int, error) { return 3, nil }); v != 3 || err != nil {
				t.Fatalf("second load was not tried: %d, %v", v, err)
			}
		}},
		{"failed refresh serves the last good value", func(t *testing.T, c *ttlCache[string, int]) {
			c.get(context.Background(), "k", now, func(context.Context) (int, error) { return 5, nil })
			later := now.Add(2 * c.ttl)
			if v, err := c.get(context.Background(), "k", later, func(context.Context) (int, error) { return 0, errDown }); v != 5 || err != nil {
				t.Fatalf("during the outage: %d, %v", v, err)
			}
			if v, _ := c.get(context.Background(), "k", later, func(context.Context) (int, error) { return 6, nil }); v != 6 {
				t.Fatalf("after the outage: %d", v)
			}
		}},
		{"not found is a definite answer", func(t *testing.T, c *ttlCache[string, int]) {
			c.get(context.Background(), "k", now, func(context.Context) (int, error) { return 0, db.ErrNotFound })
			if _, err := c.get(context.Background(), "k", now, func(context.Context) (int, error) { return 1, nil }); !errors.Is(err, db.ErrNotFound) {
				t.Fatalf("not found was not kept: %v", err)
			}
		}},
		{"clear during a load keeps its result out", func(t *testing.T, c *ttlCache[string, int]) {
			started, release := make(chan struct{}), make(chan struct{})
			done := make(chan struct{})
			go func() {
				c.get(context.Background(), "k", now, func(context.Context) (int, error) { close(started); <-release; return 1, nil })
				close(done)
			}()
			<-started
			c.clear() // e.g. a halt was committed while the old state loaded
			if v, _ := c.get(context.Background(), "k", now, func(context.Context) (int, error) { return 2, nil }); v != 2 {
				t.Fatalf("a caller after clear joined the old load: %d", v)
			}
			close(release)
			<-done
			if v, _ := c.get(context.Background(), "k", now, func(context.Context) (int, error) { return 3, nil }); v != 2 {
				t.Fatalf("the pre-clear load overwrote the fresh value: %d", v)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, &ttlCache[string, int]{ttl: time.Second})
		})
	}
}

// Devices that hang up while the caches refresh fail alone: under load,
// with every cache entry expiring within a millisecond and a third of the
// checks cancelled at random moments, every other check is answered.
func TestCancelledChecksFailAlone(t *testing.T) {
	f := newFixture(t)
	f.svc.Now = time.Now
	f.svc.CacheTTL = time.Millisecond
	f.release(t, "stable", "10.0.1")
	f.release(t, "stable", "10.0.2")
	f.rollout(t, "r", "stable", "10.0.2", "100%")

	var failed, cancelled, ok atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < 9; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				hangUp := w%3 == 0
				if hangUp {
					ctx, cancel = context.WithTimeout(context.Background(), time.Duration(rand.IntN(300))*time.Microsecond)
				}
				_, err := f.svc.Check(ctx, api.CheckRequest{DeviceID: fmt.Sprintf("pc-%d-%d", w, i%20), Arch: "x86_64", Channel: "stable", Version: "10.0.1"})
				cancel()
				switch {
				case err == nil:
					ok.Add(1)
				case hangUp:
					cancelled.Add(1)
				default:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d answered, %d hung up", ok.Load(), cancelled.Load())
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d checks failed because other devices hung up; first: %v", n, firstErr.Load())
	}
	if cancelled.Load() == 0 {
		t.Fatal("no check was cancelled: the test proved nothing")
	}
}
