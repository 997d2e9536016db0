package updater

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
)

// fakeClock records the loop's waits instead of sleeping, and stops the
// loop after a number of cycles.
type fakeClock struct {
	waits  []time.Duration
	cycles int
	stopAt int
	cancel context.CancelFunc
}

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	c.waits = append(c.waits, d)
	if c.cycles >= c.stopAt {
		c.cancel()
	}
	return ctx.Err()
}

func TestRunSchedule(t *testing.T) {
	const interval, jitter = time.Hour, 15 * time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := &fakeClock{stopAt: 200, cancel: cancel}
	// Cycles 10-15 fail (six in a row), the rest work.
	failing := func(n int) bool { return n >= 10 && n <= 15 }
	var out bytes.Buffer
	r := &Runner{Interval: interval, Jitter: jitter, Out: &out, Sleep: clock.sleep,
		Cycle: func(ctx context.Context) (bool, error) {
			clock.cycles++
			if failing(clock.cycles) {
				return false, errors.New("server unreachable")
			}
			return false, nil
		}}
	if err := r.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if clock.cycles != 200 {
		t.Fatalf("ran %d cycles, want 200", clock.cycles)
	}
	if len(clock.waits) != 201 {
		t.Fatalf("%d waits for 200 cycles", len(clock.waits))
	}
	if w := clock.waits[0]; w < 0 || w >= DefaultStartJitter {
		t.Fatalf("first cycle after %s, want under %s", w, DefaultStartJitter)
	}
	// waits[n] is the wait after cycle n.
	factor := map[int]time.Duration{10: 1, 11: 2, 12: 4, 13: 4, 14: 4, 15: 4}
	distinct := map[time.Duration]bool{}
	for n := 1; n <= 200; n++ {
		base := interval
		if f, ok := factor[n]; ok {
			base = f * interval
		}
		w := clock.waits[n]
		if w < base || w >= base+jitter {
			t.Errorf("wait after cycle %d = %s, want in [%s, %s)", n, w, base, base+jitter)
		}
		distinct[w-base] = true
	}
	if len(distinct) < 100 {
		t.Errorf("only %d distinct jitters in 200 waits", len(distinct))
	}
	if got := strings.Count(out.String(), "Update check failed: server unreachable. Trying again in"); got != 6 {
		t.Errorf("%d failure messages, want 6:\n%s", got, out.String())
	}
}

// Jitter stays inside its bounds at the extremes of the random source.
func TestRunJitterBounds(t *testing.T) {
	for _, c := range []struct {
		name       string
		rnd        func(int64) int64
		start, gap time.Duration
	}{
		{"lowest", func(int64) int64 { return 0 }, 0, time.Hour},
		{"highest", func(n int64) int64 { return n - 1 }, 30*time.Second - 1, time.Hour + 10*time.Minute - 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			clock := &fakeClock{stopAt: 3, cancel: cancel}
			r := &Runner{Interval: time.Hour, Jitter: 10 * time.Minute, StartJitter: 30 * time.Second, Sleep: clock.sleep, Rand: c.rnd,
				Cycle: func(context.Context) (bool, error) { clock.cycles++; return false, nil }}
			if err := r.Run(ctx); err != nil {
				t.Fatal(err)
			}
			if clock.waits[0] != c.start || clock.waits[1] != c.gap {
				t.Fatalf("waits %v, want start %s then %s", clock.waits, c.start, c.gap)
			}
		})
	}
	// No jitter configured: exact intervals, and the first cycle at once.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := &fakeClock{stopAt: 2, cancel: cancel}
	r := &Runner{Interval: time.Minute, Sleep: clock.sleep, Cycle: func(context.Context) (bool, error) { clock.cycles++; return false, nil }}
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if clock.waits[0] != 0 || clock.waits[1] != time.Minute {
		t.Fatalf("waits without jitter: %v", clock.waits)
	}
}

// A stop request ends a wait at once; a cycle in progress finishes a
// short step, and a long one is cancelled after the grace period.
func TestRunStops(t *testing.T) {
	t.Run("while waiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cycles := 0
		r := &Runner{Interval: time.Hour, StartJitter: time.Nanosecond, Jitter: time.Nanosecond,
			Cycle: func(context.Context) (bool, error) { cycles++; cancel(); return false, nil }}
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()
		select {
		case err := <-done:
			if err != nil || cycles != 1 {
				t.Fatalf("Run = %v after %d cycles", err, cycles)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not stop while waiting")
		}
	})
	t.Run("short step finishes", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var stepErr error
		r := &Runner{Interval: time.Hour, StopGrace: 10 * time.Second, Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() },
			Cycle: func(cctx context.Context) (bool, error) {
				cancel()
				time.Sleep(20 * time.Millisecond) // the step goes on after the signal
				stepErr = cctx.Err()
				return false, nil
			}}
		if err := r.Run(ctx); err != nil || stepErr != nil {
			t.Fatalf("Run = %v, step context = %v", err, stepErr)
		}
	})
	t.Run("long step abandoned", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		r := &Runner{Interval: time.Hour, StopGrace: 30 * time.Millisecond, Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() },
			Cycle: func(cctx context.Context) (bool, error) {
				cancel()
				select {
				case <-cctx.Done():
					return false, cctx.Err()
				case <-time.After(10 * time.Second):
					return false, errors.New("the step was never cancelled")
				}
			}}
		var out bytes.Buffer
		r.Out = &out
		if err := r.Run(ctx); err != nil {
			t.Fatalf("Run = %v", err)
		}
		if strings.Contains(out.String(), "never cancelled") || strings.Contains(out.String(), "Trying again") {
			t.Fatalf("output:\n%s", out.String())
		}
	})
}

// A switch with --reboot restarts the machine; without a switch it does not.
func TestRunReboots(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := &fakeClock{stopAt: 3, cancel: cancel}
	reboots := 0
	r := &Runner{Interval: time.Hour, Sleep: clock.sleep,
		Reboot: func(context.Context) error { reboots++; return nil },
		Cycle:  func(context.Context) (bool, error) { clock.cycles++; return clock.cycles == 2, nil }}
	if err := r.Run(ctx); err != nil || reboots != 1 {
		t.Fatalf("Run = %v, %d reboots", err, reboots)
	}
}

// The real agent against a server that does not answer: every cycle
// fails, the loop keeps going and says so plainly.
func TestRunWithAgentKeepsGoing(t *testing.T) {
	dir := t.TempDir()
	cfg, err := ParseConfig([]byte("server: http://127.0.0.1:1\ndevice_id: lab-pc-01\nchannel: stable\narch: x86_64\ntrusted_keys: /nonexistent\ntrusted_root: /nonexistent/root.json\nsysroot: " +
		filepath.Join(dir, "root") + "\ninterval: 1m\njitter: 1s\n"))
	if err != nil {
		t.Fatal(err)
	}
	sys, err := sysroot.Open(cfg.Sysroot)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := ostree.Create(sys.RepoPath())
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg.Server, "", client.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var out bytes.Buffer
	a := &Agent{Cfg: cfg, Client: c, Puller: &pull.Puller{URLs: cfg.Mirrors}, Sys: sys, Repo: repo, Out: lockedWriter{&mu, &out}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waits := 0
	r := &Runner{Agent: a, Sleep: func(ctx context.Context, d time.Duration) error {
		waits++
		if waits > 3 {
			cancel()
		}
		if waits > 1 && (d < time.Minute || d >= 4*time.Minute+time.Second) {
			t.Errorf("wait %s outside the configured schedule", d)
		}
		return ctx.Err()
	}}
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(out.String(), "Update check failed: asking the server for updates"); n != 3 {
		t.Fatalf("%d failure lines, want 3:\n%s", n, out.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
