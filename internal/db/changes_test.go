package db

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// testCacheChangeFeed: every change to a cached row (release, rollout
// created or moved, pin set or deleted, device group) adds its change to
// the feed in the same transaction, a refused change adds none, a change
// rolled back with its transaction leaves none, and pruning drops old
// rows.
func testCacheChangeFeed(t *testing.T, s *Store) {
	ctx := context.Background()
	start := time.Now().Add(-time.Second)
	feed := func() []string {
		t.Helper()
		cs, err := s.ChangesSince(ctx, start)
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(cs, func(a, b Change) int { return int(a.Seq - b.Seq) })
		var got []string
		for _, c := range cs {
			if c.At.Before(start) || c.At.After(time.Now().Add(time.Second)) {
				t.Errorf("change %+v has a time outside the test", c)
			}
			got = append(got, c.Kind+" "+c.Subject)
		}
		return got
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	must("release", s.AddRelease(ctx, release("stable", "x86_64", "10.1")))
	must("image", s.SetReleaseImage(ctx, "stable", "x86_64", "10.1", "sha256:"+commit(3)))
	must("rollout", s.CreateRollout(ctx, newRollout("r1", "stable", "x86_64", "10.1", rollout.StateActive)))
	must("halt", s.SetRolloutState(ctx, "r1", rollout.StateActive, rollout.StateHalted, "broken", at(5)))
	must("device", s.UpsertDevice(ctx, device("d1", "stable", "", 1)))
	must("group", s.SetDeviceGroup(ctx, "d1", "lab-1"))
	must("pin", s.SetPin(ctx, Pin{Scope: PinGroup, Target: "lab-1", Version: "10.1", CreatedBy: "admin:ana", CreatedAt: at(3)}))
	must("unpin", s.DeletePin(ctx, PinGroup, "lab-1"))
	want := []string{"release stable/x86_64/10.1", "release stable/x86_64/10.1", "rollout stable/x86_64", "rollout stable/x86_64",
		"group d1", "pin group:lab-1", "pin group:lab-1"}
	if got := feed(); !slices.Equal(got, want) {
		t.Fatalf("feed = %q\nwant %q", got, want)
	}

	// Refused and rolled-back changes add nothing.
	wantErr(t, "unpin again", s.DeletePin(ctx, PinGroup, "lab-1"), ErrNotFound)
	wantErr(t, "group of nobody", s.SetDeviceGroup(ctx, "nope", "x"), ErrNotFound)
	wantErr(t, "halt again", s.SetRolloutState(ctx, "r1", rollout.StateActive, rollout.StateHalted, "", at(6)), ErrConflict)
	errRollback := errors.New("roll back")
	err := s.Tx(ctx, func(tx *Tx) error {
		if err := tx.SetPin(ctx, Pin{Scope: PinDevice, Target: "d1", Channel: "edu", CreatedBy: "admin:ana", CreatedAt: at(4)}); err != nil {
			return err
		}
		return errRollback
	})
	wantErr(t, "rolled back pin", err, errRollback)
	if got := feed(); !slices.Equal(got, want) {
		t.Fatalf("feed after refusals = %q\nwant %q", got, want)
	}
	if cs, err := s.ChangesSince(ctx, time.Now().Add(time.Minute)); err != nil || len(cs) != 0 {
		t.Errorf("changes since a minute ahead = %+v, %v; want none", cs, err)
	}
	must("prune", s.PruneChanges(ctx, time.Now().Add(time.Second)))
	if got := feed(); len(got) != 0 {
		t.Errorf("feed after pruning = %q, want empty", got)
	}
}
