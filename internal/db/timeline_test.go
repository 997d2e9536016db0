package db

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/event"
)

func testReportTimeline(t *testing.T, s *Store) {
	ctx := context.Background()
	add := func(dev, ro, v string, ev event.Event, min int) {
		t.Helper()
		if err := s.AddReport(ctx, Report{DeviceID: dev, RolloutID: ro, Version: v, Event: ev, At: at(min)}); err != nil {
			t.Fatal(err)
		}
	}
	add("d1", "r1", "10.0.1", event.HealthOK, -5) // before the window
	add("d1", "r1", "10.0.1", event.HealthOK, 1)
	add("d1", "r1", "10.0.1", event.HealthOK, 2) // same device, same bucket
	add("d2", "r1", "10.0.1", event.HealthFailed, 30)
	add("d3", "", "10.0.0", event.HealthOK, 70)
	got, err := s.ReportTimeline(ctx, "", at(0), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	h := func(n int) time.Time { return stored(at(0).Add(time.Duration(n) * time.Hour)) }
	want := []ReportCount{
		{h(0), "10.0.1", event.HealthFailed, 1, 1},
		{h(0), "10.0.1", event.HealthOK, 2, 1},
		{h(1), "10.0.0", event.HealthOK, 1, 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ReportTimeline = %+v\nwant %+v", got, want)
	}
	got, err = s.ReportTimeline(ctx, "r1", at(0), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want[:2]) {
		t.Errorf("ReportTimeline(r1) = %+v\nwant %+v", got, want[:2])
	}
	if _, err := s.ReportTimeline(ctx, "", at(0), time.Second); !errors.Is(err, ErrInvalid) {
		t.Errorf("a one-second bucket: %v, want ErrInvalid", err)
	}
}

func testReleaseImage(t *testing.T, s *Store) {
	ctx := context.Background()
	if err := s.AddRelease(ctx, release("testing", "x86_64", "10.0.1")); err != nil {
		t.Fatal(err)
	}
	d1, d2 := "sha256:"+strings.Repeat("1", 64), "sha256:"+strings.Repeat("2", 64)
	if err := s.SetReleaseImage(ctx, "testing", "x86_64", "10.0.9", d1); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown release: %v, want ErrNotFound", err)
	}
	for range 2 { // the same digest again is fine
		if err := s.SetReleaseImage(ctx, "testing", "x86_64", "10.0.1", d1); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetReleaseImage(ctx, "testing", "x86_64", "10.0.1", d2); !errors.Is(err, ErrConflict) {
		t.Errorf("another image: %v, want ErrConflict", err)
	}
	if r, err := s.GetRelease(ctx, "testing", "x86_64", "10.0.1"); err != nil || r.OCIDigest != d1 {
		t.Errorf("release after: %+v, %v", r, err)
	}
}
