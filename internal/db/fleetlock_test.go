package db

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func lockHolders(g FleetLockGrant) []string {
	var out []string
	for _, h := range g.Holders {
		out = append(out, h.DeviceID)
	}
	return out
}

// testFleetLocks: N slots per group, idempotent re-acquire, release,
// expiry, groups apart, admin force-release, bad input.
func testFleetLocks(t *testing.T, s *Store) {
	ctx := context.Background()
	ttl := time.Hour
	acquire := func(group, dev string, slots, minute int) FleetLockGrant {
		t.Helper()
		g, err := s.AcquireFleetLock(ctx, group, dev, slots, at(minute), at(minute).Add(ttl))
		if err != nil {
			t.Fatalf("acquire %s/%s: %v", group, dev, err)
		}
		return g
	}
	// Two slots: a and b get them, c waits.
	if g := acquire("lab3", "a", 2, 0); !g.Granted || g.Lock.DeviceID != "a" || !g.Lock.AcquiredAt.Equal(stored(at(0))) || !g.Lock.ExpiresAt.Equal(stored(at(60))) {
		t.Fatalf("a: %+v", g)
	}
	if g := acquire("lab3", "b", 2, 1); !g.Granted || strings.Join(lockHolders(g), ",") != "a,b" {
		t.Fatalf("b: %+v", g)
	}
	if g := acquire("lab3", "c", 2, 2); g.Granted || strings.Join(lockHolders(g), ",") != "a,b" {
		t.Fatalf("c should wait: %+v", g)
	}
	// Another group has its own slots.
	if g := acquire("lab4", "c", 1, 2); !g.Granted {
		t.Fatalf("lab4: %+v", g)
	}
	// Idempotent: a asks again (after a crash) and keeps its slot, with a
	// later expiry and its original acquisition time.
	if g := acquire("lab3", "a", 2, 10); !g.Granted || !g.Lock.AcquiredAt.Equal(stored(at(0))) || !g.Lock.ExpiresAt.Equal(stored(at(70))) || len(g.Holders) != 2 {
		t.Fatalf("a again: %+v", g)
	}
	// Release frees the slot for c, which also leaves its lab4 slot.
	if n, err := s.ReleaseFleetLocks(ctx, "b"); err != nil || n != 1 {
		t.Fatalf("release b: %d %v", n, err)
	}
	if n, err := s.ReleaseFleetLocks(ctx, "b"); err != nil || n != 0 {
		t.Fatalf("release b twice: %d %v", n, err)
	}
	if g := acquire("lab3", "c", 2, 11); !g.Granted || strings.Join(lockHolders(g), ",") != "a,c" {
		t.Fatalf("c after release: %+v", g)
	}
	if l, err := s.ListFleetLocks(ctx, "lab4", at(11)); err != nil || len(l) != 0 {
		t.Fatalf("c still holds lab4 after moving groups: %+v %v", l, err)
	}
	// Expiry: c's slot lasts until minute 71; a's until 70. At minute 70
	// a's slot is free, so d gets it.
	if g := acquire("lab3", "d", 2, 69); g.Granted {
		t.Fatalf("d before expiry: %+v", g)
	}
	if g := acquire("lab3", "d", 2, 70); !g.Granted || strings.Join(lockHolders(g), ",") != "c,d" {
		t.Fatalf("d after a expired: %+v", g)
	}
	all, err := s.ListFleetLocks(ctx, "", at(70))
	if err != nil || len(all) != 2 || all[0].DeviceID != "c" || all[1].DeviceID != "d" {
		t.Fatalf("list: %+v %v", all, err)
	}
	if l, _ := s.ListFleetLocks(ctx, "", at(72)); len(l) != 1 || l[0].DeviceID != "d" {
		t.Fatalf("list after c expired: %+v", l)
	}
	// Fewer slots than holders (the devices' setting was lowered): no new
	// grants, but the holders keep theirs.
	if g := acquire("lab3", "e", 1, 71); g.Granted {
		t.Fatalf("e with 1 slot: %+v", g)
	}
	if g := acquire("lab3", "d", 1, 71); !g.Granted {
		t.Fatalf("d renewing with 1 slot: %+v", g)
	}
	// Admin force-release.
	wantErr(t, "force release", s.ForceReleaseFleetLock(ctx, "lab3", "d"), nil)
	wantErr(t, "force release twice", s.ForceReleaseFleetLock(ctx, "lab3", "d"), ErrNotFound)
	if g := acquire("lab3", "f", 1, 100); !g.Granted || len(g.Holders) != 1 {
		t.Fatalf("f after the force-release: %+v", g)
	}

	// Bad input changes nothing.
	for _, c := range []struct {
		name, group, dev string
		slots            int
		now, exp         time.Time
	}{
		{"no group", "", "x", 1, at(0), at(1)},
		{"no device", "g", "", 1, at(0), at(1)},
		{"zero slots", "g", "x", 0, at(0), at(1)},
		{"too many slots", "g", "x", maxSlots + 1, at(0), at(1)},
		{"no time", "g", "x", 1, time.Time{}, at(1)},
		{"expiry not after now", "g", "x", 1, at(1), at(1)},
		{"NUL in group", "g\x00", "x", 1, at(0), at(1)},
		{"long device", "g", strings.Repeat("x", maxKey+1), 1, at(0), at(1)},
	} {
		if _, err := s.AcquireFleetLock(ctx, c.group, c.dev, c.slots, c.now, c.exp); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", c.name, err)
		}
	}
	if _, err := s.ReleaseFleetLocks(ctx, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("release without device: %v", err)
	}
	if l, _ := s.ListFleetLocks(ctx, "", at(100)); len(l) != 1 || l[0].Group != "lab3" || l[0].DeviceID != "f" {
		t.Fatalf("bad input changed the locks: %+v", l)
	}
}

// testFleetLocksConcurrent: 20 devices racing for 3 slots get exactly 3.
func testFleetLocksConcurrent(t *testing.T, s *Store) {
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, err := s.AcquireFleetLock(ctx, "race", fmt.Sprintf("dev-%02d", i), 3, at(0), at(60))
			if err != nil {
				errs <- err
				return
			}
			if g.Granted {
				mu.Lock()
				granted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	l, err := s.ListFleetLocks(ctx, "race", at(0))
	if err != nil || granted != 3 || len(l) != 3 {
		t.Fatalf("granted %d, held %d (%v)", granted, len(l), err)
	}
}
