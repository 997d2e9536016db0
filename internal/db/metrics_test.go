package db

import (
	"context"
	"reflect"
	"testing"
)

// testMetricsQueries: devices counted by channel and version; the error
// counter counts a failed statement, not the answers the store expects
// (a duplicate release, a missing row).
func testMetricsQueries(t *testing.T, s *Store) {
	ctx := context.Background()
	for _, d := range []Device{device("d1", "stable", "", 1), device("d2", "stable", "lab", 2), device("d3", "edu", "", 3)} {
		if d.ID == "d3" {
			d.Version = "10.2"
		}
		if err := s.UpsertDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.DeviceVersionCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := s.GetDevice(ctx, "d1")
	want := []VersionCount{{"edu", "10.2", 1}, {"stable", d1.Version, 2}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DeviceVersionCounts = %+v, want %+v", got, want)
	}

	if n := s.Errors(); n != 0 {
		t.Fatalf("errors before any = %d", n)
	}
	if err := s.AddRelease(ctx, release("stable", "x86_64", "10.1")); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "duplicate", s.AddRelease(ctx, release("stable", "x86_64", "10.1")), ErrDuplicate)
	if _, err := s.GetDevice(ctx, "nobody"); err == nil {
		t.Fatal("found a device that does not exist")
	}
	if n := s.Errors(); n != 0 {
		t.Errorf("errors after expected answers = %d, want 0", n)
	}
	if _, err := s.q.ExecContext(ctx, `UPDATE no_such_table SET x = 1`); err == nil {
		t.Fatal("a statement on a missing table succeeded")
	}
	if n := s.Errors(); n != 1 {
		t.Errorf("errors after a failed statement = %d, want 1", n)
	}
}
