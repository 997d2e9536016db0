package db

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// testFleet: the whole-fleet reads see every device and every group, and
// UpsertDevices updates known devices (keeping a group when given "",
// replacing it otherwise), inserts unknown ones, and refuses bad input
// without writing anything of the batch.
func testFleet(t *testing.T, s *Store) {
	ctx := context.Background()
	at := t0.Add(time.Hour)
	for i := range 5 {
		d := Device{ID: fmt.Sprintf("pc%d", i), Arch: "x86_64", Channel: "stable", Version: "10.0.1", LastSeen: t0}
		if i%2 == 0 {
			d.Group = "lab"
		}
		if err := s.UpsertDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	err := s.UpsertDevices(ctx, []Device{
		{ID: "pc0", Arch: "x86_64", Channel: "stable", Version: "10.0.2", LastSeen: at},             // keeps "lab"
		{ID: "pc1", Arch: "x86_64", Channel: "edu", Group: "aula", Version: "10.0.1", LastSeen: at}, // joins "aula"
		{ID: "new", Arch: "aarch64", Channel: "stable", LastSeen: at},                               // inserted
	})
	if err != nil {
		t.Fatal(err)
	}
	// A batch whose rows all hold the same state: only what differs in a
	// row (its last-seen time, a first group) is written.
	err = s.UpsertDevices(ctx, []Device{
		{ID: "pc2", Arch: "x86_64", Channel: "stable", Version: "10.0.1", LastSeen: at},               // only seen again
		{ID: "pc3", Arch: "x86_64", Channel: "stable", Group: "lab", Version: "10.0.1", LastSeen: at}, // joins "lab"
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]Device{}
	if err := s.ScanDevices(ctx, func(d Device) error { seen[d.ID] = d; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 6 {
		t.Fatalf("scan saw %d devices, want 6: %v", len(seen), seen)
	}
	for id, want := range map[string]Device{
		"pc0": {Group: "lab", Channel: "stable", Version: "10.0.2", LastSeen: at},
		"pc1": {Group: "aula", Channel: "edu", Version: "10.0.1", LastSeen: at},
		"pc2": {Group: "lab", Channel: "stable", Version: "10.0.1", LastSeen: at},
		"pc3": {Group: "lab", Channel: "stable", Version: "10.0.1", LastSeen: at},
		"pc4": {Group: "lab", Channel: "stable", Version: "10.0.1", LastSeen: t0},
		"new": {Channel: "stable", LastSeen: at},
	} {
		got := seen[id]
		if got.Group != want.Group || got.Channel != want.Channel || got.Version != want.Version || !got.LastSeen.Equal(want.LastSeen.Truncate(time.Microsecond)) {
			t.Errorf("%s: got %+v, want %+v", id, got, want)
		}
	}
	groups := map[string]string{}
	if err := s.GroupedDevices(ctx, func(id, g string) error { groups[id] = g; return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(groups) != "map[pc0:lab pc1:aula pc2:lab pc3:lab pc4:lab]" {
		t.Errorf("grouped devices: %v", groups)
	}
	// Batches longer than one UPDATE.
	var many []Device
	for i := range 250 {
		d := Device{ID: fmt.Sprintf("m%03d", i), Arch: "x86_64", Channel: "stable", LastSeen: t0}
		if err := s.UpsertDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
		d.Version, d.LastSeen = "10.0.3", at
		many = append(many, d)
	}
	if err := s.UpsertDevices(ctx, many); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"m000", "m099", "m100", "m249"} {
		if d, err := s.GetDevice(ctx, id); err != nil || d.Version != "10.0.3" || !d.LastSeen.Equal(at.Truncate(time.Microsecond)) {
			t.Errorf("%s after a long batch: %+v %v", id, d, err)
		}
	}
	stop := errors.New("stop")
	if err := s.ScanDevices(ctx, func(Device) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("scan did not return fn's error: %v", err)
	}
	// A bad device fails the whole batch.
	err = s.UpsertDevices(ctx, []Device{
		{ID: "pc3", Arch: "x86_64", Channel: "stable", Version: "9", LastSeen: at.Add(time.Hour)},
		{ID: "pc4", Arch: "", Channel: "stable", LastSeen: at},
	})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad batch: %v", err)
	}
	if d, err := s.GetDevice(ctx, "pc3"); err != nil || d.Version != "10.0.1" {
		t.Fatalf("a refused batch wrote pc3: %+v %v", d, err)
	}
}
