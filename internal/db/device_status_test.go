package db

import (
	"context"
	"fmt"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/event"
)

// DeviceStatuses: the newest report and the newest failure per device,
// nothing for devices that never reported, refused beyond MaxStatusIDs.
func testDeviceStatuses(t *testing.T, s *Store) {
	ctx := context.Background()
	for _, id := range []string{"pc1", "pc2", "pc3"} {
		if err := s.UpsertDevice(ctx, device(id, "stable", "", 1)); err != nil {
			t.Fatal(err)
		}
	}
	seq := int64(0)
	add := func(dev string, ev event.Event, errText string) {
		t.Helper()
		seq++
		if err := s.AddReport(ctx, Report{DeviceID: dev, RolloutID: "r1", Version: "10.2", Event: ev, Error: errText, At: at(int(seq)), Seq: seq}); err != nil {
			t.Fatal(err)
		}
	}
	add("pc1", event.DownloadStarted, "")
	add("pc1", event.HealthFailed, "sshd did not start")
	add("pc1", event.HealthOK, "")
	add("pc2", event.Refused, "older than installed")
	add("pc2", event.DownloadStarted, "")
	got, err := s.DeviceStatuses(ctx, []string{"pc1", "pc2", "pc3", "ghost", "x'); DROP TABLE reports; --"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("statuses of %d devices, want 2: %+v", len(got), got)
	}
	for id, want := range map[string][2]string{
		"pc1": {"health-ok", "health-failed: sshd did not start"},
		"pc2": {"download-started", "refused: older than installed"},
	} {
		st := got[id]
		if st.Last == nil || st.LastFailure == nil || string(st.Last.Event) != want[0] ||
			fmt.Sprintf("%s: %s", st.LastFailure.Event, st.LastFailure.Error) != want[1] || st.LastFailure.RolloutID != "r1" {
			t.Errorf("%s: %+v %+v, want %v", id, st.Last, st.LastFailure, want)
		}
	}
	if got, err := s.DeviceStatuses(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("no ids: %v %v", got, err)
	}
	wantErr(t, "too many ids", func() error { _, err := s.DeviceStatuses(ctx, make([]string, MaxStatusIDs+1)); return err }(), ErrInvalid)
	if reps, err := s.DeviceReports(ctx, "pc1", 10); err != nil || len(reps) != 3 {
		t.Errorf("reports after the lookups: %d %v", len(reps), err)
	}
}

// A rollback by hand (event.ManualRollback) does not keep the server from
// offering the version again; any other release failure does.
func testManualRollback(t *testing.T, s *Store) {
	ctx := context.Background()
	for _, id := range []string{"pc1", "pc2"} {
		if err := s.UpsertDevice(ctx, device(id, "stable", "", 1)); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range []Report{
		{DeviceID: "pc1", Version: "10.2", Event: event.RolledBack, Error: event.ManualRollback},
		{DeviceID: "pc2", Version: "10.2", Event: event.RolledBack, Error: event.ManualRollback},
		{DeviceID: "pc2", Version: "10.3", Event: event.RolledBack, Error: "rolled back: " + event.ManualRollback},
		{DeviceID: "pc2", Version: "10.4", Event: event.HealthFailed, Error: event.ManualRollback},
	} {
		r.At, r.Seq = at(i), int64(i+1)
		if err := s.AddReport(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.RolledBackFrom(ctx, "pc1"); err != nil || len(got) != 0 {
		t.Errorf("pc1 rolled back by hand only: %v %v", got, err)
	}
	if got, err := s.RolledBackFrom(ctx, "pc2"); err != nil || fmt.Sprint(got) != "[10.3 10.4]" {
		t.Errorf("pc2: %v %v", got, err)
	}
	if got, err := s.DevicesWithRollbacks(ctx); err != nil || fmt.Sprint(got) != "[pc2]" {
		t.Errorf("devices with rollbacks: %v %v", got, err)
	}
}
