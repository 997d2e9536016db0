package changefeed

import (
	"context"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/db"
)

func TestFollower(t *testing.T) {
	ctx := context.Background()
	store, err := db.Open(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	skew := time.Duration(0) // how far our clock is ahead of the writers'
	f := &Follower{Store: store, Now: func() time.Time { return time.Now().Add(skew) }}
	f.Start()
	defer f.Close() // before the store closes: Next's first call starts a prune
	next := func(what string, wantGap bool, want ...string) {
		t.Helper()
		b, err := f.Next(ctx)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		var got []string
		for _, c := range b.Changes {
			got = append(got, c.Kind+" "+c.Subject)
		}
		if len(got) != len(want) || b.Gap != wantGap {
			t.Fatalf("%s: changes %q gap %v, want %q gap %v", what, got, b.Gap, want, wantGap)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: changes %q, want %q", what, got, want)
			}
		}
	}
	next("empty feed", false)
	pin := db.Pin{Scope: db.PinDevice, Target: "d1", Channel: "edu", CreatedBy: "admin:ana", CreatedAt: time.Now()}
	if err := store.SetPin(ctx, pin); err != nil {
		t.Fatal(err)
	}
	next("after a pin", false, "pin device:d1")
	next("again: each change once", false)
	// A writer whose clock is 40 s behind ours (or a transaction that
	// committed 40 s after its row's time) is still seen.
	skew = 40 * time.Second
	if err := store.DeletePin(ctx, db.PinDevice, "d1"); err != nil {
		t.Fatal(err)
	}
	next("a late change", false, "pin device:d1")
	// Unable to read for longer than half the retention: a gap.
	skew = Retention
	next("after an hour without reading", true)
	next("then none", false)
}

// TestCloseWaitsForPrune: Close returns only after the prune Next started
// has ended, so the store can be closed (and a test's directory removed)
// after it. The prune is held on SQLite's write lock by an open
// transaction; Close must still be waiting when the transaction ends.
func TestCloseWaitsForPrune(t *testing.T) {
	ctx := context.Background()
	store, err := db.Open(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	f := &Follower{Store: store}
	f.Start()
	locked, release := make(chan struct{}), make(chan struct{})
	txDone := make(chan error, 1)
	go func() {
		txDone <- store.Tx(ctx, func(tx *db.Tx) error {
			close(locked)
			<-release
			return nil
		})
	}()
	<-locked
	if _, err := f.Next(ctx); err != nil { // reads; starts a prune, which waits for the lock
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { f.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while the prune it started was still waiting for the database")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-txDone; err != nil {
		t.Fatal(err)
	}
	<-closed
}
