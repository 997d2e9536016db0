package updates

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	svc   *Service
	store *db.Store
	now   time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	store, err := db.Open(ctx, "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	set, err := channel.LoadDir("../../channels")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: store, now: t0}
	f.svc = &Service{Store: store, Channels: set, Now: func() time.Time { return f.now }}
	return f
}

func commitFor(v string) string {
	return strings.Repeat(fmt.Sprintf("%x", len(v)%16), 60) + fmt.Sprintf("%04x", len(v)*7+int(v[len(v)-1]))
}

func (f *fixture) release(t *testing.T, ch, version string) {
	t.Helper()
	err := f.store.AddRelease(context.Background(), db.Release{Channel: ch, Arch: "x86_64", Version: version,
		Ref: "mxos/10/x86_64/" + ch, Commit: commitFor(version), PublishedAt: f.now, PublishedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) rollout(t *testing.T, id, ch, version, ramp string) {
	t.Helper()
	err := f.store.CreateRollout(context.Background(), db.Rollout{ID: id, Channel: ch, Arch: "x86_64", Version: version,
		Ramp: ramp, State: rollout.StateActive, CreatedAt: f.now, CreatedBy: "test"})
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) setState(t *testing.T, id string, from, to rollout.State) {
	t.Helper()
	if err := f.store.SetRolloutState(context.Background(), id, from, to, "test", f.now); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) check(t *testing.T, dev, version string) api.CheckResponse {
	t.Helper()
	resp, err := f.svc.Check(context.Background(), api.CheckRequest{DeviceID: dev, Arch: "x86_64", Channel: "stable", Version: version})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestCheckRefusesBadRequests(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		req  api.CheckRequest
		code api.Code
	}{
		{api.CheckRequest{DeviceID: "d", Arch: "x86_64", Channel: "beta"}, api.CodeUnknownChannel},
		{api.CheckRequest{DeviceID: "d", Arch: "riscv64", Channel: "stable"}, api.CodeUnknownArch},
		{api.CheckRequest{DeviceID: "", Arch: "x86_64", Channel: "stable"}, api.CodeBadRequest},
		{api.CheckRequest{DeviceID: "d", Arch: "x86_64", Channel: "stable", Version: "ten"}, api.CodeBadRequest},
	}
	for _, c := range cases {
		_, err := f.svc.Check(context.Background(), c.req)
		if !errors.Is(err, &api.Error{Code: c.code}) {
			t.Errorf("%+v: err = %v, want %s", c.req, err, c.code)
		}
	}
	if n, _ := f.store.CountDevices(context.Background(), db.DeviceFilter{}); n != 0 {
		t.Fatalf("refused checks registered %d devices", n)
	}
}

func TestRampAndPreviousRelease(t *testing.T) {
	f := newFixture(t)
	f.release(t, "stable", "10.0.1")
	f.rollout(t, "r1", "stable", "10.0.1", "100%")
	f.setState(t, "r1", rollout.StateActive, rollout.StateComplete)
	f.release(t, "stable", "10.0.2")
	f.rollout(t, "r2", "stable", "10.0.2", "10%,100%@72h")

	const n = 2000
	offered := 0
	for i := 0; i < n; i++ {
		dev := fmt.Sprintf("lab-%04d", i)
		resp := f.check(t, dev, "10.0.1")
		if resp.Update {
			offered++
			if resp.Target.Version != "10.0.2" || resp.Target.RolloutID != "r2" || resp.Reason != "eligible" {
				t.Fatalf("%s: %+v", dev, resp)
			}
		} else if resp.Reason != "not-yet" {
			t.Fatalf("%s: reason %q", dev, resp.Reason)
		}
		// The same device gets the same answer.
		if again := f.check(t, dev, "10.0.1"); again.Update != resp.Update {
			t.Fatalf("%s: answer changed", dev)
		}
		// A device still on 10.0.0 and not admitted gets 10.0.1.
		if !resp.Update {
			old := f.check(t, dev+"-old", "10.0.0")
			if old.Update && old.Target.Version == "10.0.1" && old.Reason != ReasonPreviousRelease {
				t.Fatalf("old device: %+v", old)
			}
		}
	}
	if frac := float64(offered) / n; frac < 0.07 || frac > 0.13 {
		t.Fatalf("%.1f%% offered at a 10%% ramp", 100*frac)
	}
	f.now = t0.Add(73 * time.Hour)
	if resp := f.check(t, "lab-0001", "10.0.1"); !resp.Update {
		t.Fatalf("at 100%% the device is not offered: %+v", resp)
	}
}

func TestPinsPrecedence(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, v := range []string{"10.0.1", "10.0.2", "10.0.3"} {
		f.release(t, "stable", v)
		f.release(t, "testing", v)
	}
	f.rollout(t, "s", "stable", "10.0.3", "100%")
	f.rollout(t, "t", "testing", "10.0.3", "100%")
	f.check(t, "kiosk", "10.0.1")
	if err := f.store.SetDeviceGroup(ctx, "kiosk", "lab"); err != nil {
		t.Fatal(err)
	}
	// Group holds 10.0.2: offered while older, never a downgrade.
	if err := f.store.SetPin(ctx, db.Pin{Scope: db.PinGroup, Target: "lab", Version: "10.0.2", CreatedBy: "admin", CreatedAt: f.now}); err != nil {
		t.Fatal(err)
	}
	if r := f.check(t, "kiosk", "10.0.1"); !r.Update || r.Target.Version != "10.0.2" || r.Reason != ReasonPinned {
		t.Fatalf("group hold: %+v", r)
	}
	if r := f.check(t, "kiosk", "10.0.2"); r.Update || r.Reason != ReasonHeld {
		t.Fatalf("held device offered: %+v", r)
	}
	if r := f.check(t, "kiosk", "10.0.3"); r.Update {
		t.Fatalf("hold downgraded: %+v", r)
	}
	// A device pin beats the group pin: follow testing, no hold.
	if err := f.store.SetPin(ctx, db.Pin{Scope: db.PinDevice, Target: "kiosk", Channel: "testing", CreatedBy: "admin", CreatedAt: f.now}); err != nil {
		t.Fatal(err)
	}
	r := f.check(t, "kiosk", "10.0.2")
	if !r.Update || r.Target.Channel != "testing" || r.Target.Version != "10.0.3" {
		t.Fatalf("device pin: %+v", r)
	}
	// Another device of the group still has the group hold.
	f.check(t, "kiosk2", "10.0.1")
	f.store.SetDeviceGroup(ctx, "kiosk2", "lab")
	if r := f.check(t, "kiosk2", "10.0.1"); r.Target == nil || r.Target.Version != "10.0.2" {
		t.Fatalf("group member: %+v", r)
	}
	// A hold on a version that does not exist offers nothing.
	f.store.SetPin(ctx, db.Pin{Scope: db.PinDevice, Target: "kiosk2", Version: "10.9.9", CreatedBy: "admin", CreatedAt: f.now})
	if r := f.check(t, "kiosk2", "10.0.1"); r.Update || r.Reason != ReasonPinMissing {
		t.Fatalf("missing pinned release: %+v", r)
	}
}

func TestAutoHaltFromReports(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.release(t, "stable", "10.0.1")
	f.rollout(t, "r1", "stable", "10.0.1", "100%")
	changes := 0 // the server re-signs rollout state on this hook
	f.svc.OnRolloutChange = func() { changes++ }
	// stable: threshold 5%, at least 50 reports (channels/stable.yaml).
	const n = 300
	reported := 0
	for i := 0; i < n; i++ {
		dev := fmt.Sprintf("pc-%03d", i)
		resp := f.check(t, dev, "10.0.0")
		if !resp.Update {
			if resp.Reason != "halted" {
				t.Fatalf("%s not offered: %+v", dev, resp)
			}
			break // offers stop as soon as the rollout halts
		}
		reported++
		ev := api.EventHealthOK
		if i%5 == 0 { // 20% fail, in each release-failure class
			ev = api.ReleaseFailures[(i/5)%len(api.ReleaseFailures)]
		}
		if err := f.svc.Report(ctx, api.ReportRequest{DeviceID: dev, Seq: 1, RolloutID: "r1", Version: "10.0.1", Event: ev}); err != nil {
			t.Fatal(err)
		}
	}
	if reported < 50 || reported == n {
		t.Fatalf("halted after %d reports; want at least the 50-report minimum and before all %d", reported, n)
	}
	ro, err := f.store.GetRollout(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if ro.State != rollout.StateHalted || ro.HaltReason == "" {
		t.Fatalf("rollout state %s (%q), want halted", ro.State, ro.HaltReason)
	}
	if changes != 1 {
		t.Fatalf("OnRolloutChange called %d times, want once (the auto-halt)", changes)
	}
	if r := f.check(t, "newcomer", "10.0.0"); r.Update || r.Reason != "halted" {
		t.Fatalf("halted rollout still offered: %+v", r)
	}
	entries, err := f.store.ListAudit(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range entries {
		if e.Action == "rollout.halt" && strings.Contains(e.Detail, `"rollout":"r1"`) {
			found = true
		}
	}
	if !found {
		t.Fatalf("no audit entry for the halt in %d entries", len(entries))
	}
	if err := f.store.VerifyAudit(ctx); err != nil {
		t.Fatal(err)
	}
	// A device that rolled back is never offered the release again, even
	// after the release team resumes the rollout.
	f.setState(t, "r1", rollout.StateHalted, rollout.StateActive)
	if r := f.check(t, "pc-000", "10.0.0"); r.Update {
		t.Fatalf("rolled-back device re-offered: %+v", r)
	}
	if r := f.check(t, "newcomer", "10.0.0"); !r.Update {
		t.Fatalf("resumed rollout not offered: %+v", r)
	}
}

// Refusals, download and configuration errors (and the older agents'
// failed) are stored but never halt a rollout: a bad pin or a broken
// school network must not stop a good release (issue 9, failure 4).
func TestNonReleaseFailuresNeverHalt(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.release(t, "stable", "10.0.1")
	f.rollout(t, "r1", "stable", "10.0.1", "100%")
	classes := []api.Event{api.EventRefused, api.EventDownloadFailed, api.EventConfigError, api.EventFailed}
	for i := 0; i < 200; i++ {
		dev := fmt.Sprintf("pc-%03d", i)
		if resp := f.check(t, dev, "10.0.0"); !resp.Update {
			t.Fatalf("%s not offered after %d reports: %+v", dev, i, resp)
		}
		ev := classes[i%len(classes)]
		if err := f.svc.Report(ctx, api.ReportRequest{DeviceID: dev, Seq: 1, RolloutID: "r1", Version: "10.0.1", Event: ev, Error: "no route to host"}); err != nil {
			t.Fatal(err)
		}
	}
	ro, err := f.store.GetRollout(ctx, "r1")
	if err != nil || ro.State != rollout.StateActive {
		t.Fatalf("rollout %+v, %v; want active", ro, err)
	}
	stats, err := f.store.RolloutStats(ctx, "r1", f.now.Add(-time.Hour))
	if err != nil || stats != (rollout.Stats{}) {
		t.Fatalf("stats = %+v, %v; want none counted", stats, err)
	}
	// A device that refused is offered the release again (it is not bad).
	if r := f.check(t, "pc-000", "10.0.0"); !r.Update {
		t.Fatalf("refusing device lost its offer: %+v", r)
	}
}

func TestReportReplay(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.check(t, "d", "10.0.0")
	req := api.ReportRequest{DeviceID: "d", Seq: 7, Version: "10.0.0", Event: api.EventHealthOK}
	if err := f.svc.Report(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Report(ctx, req); !errors.Is(err, db.ErrReplay) {
		t.Fatalf("replayed report: %v", err)
	}
}

func TestReportRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	err := f.svc.Report(ctx, api.ReportRequest{DeviceID: "ghost", Seq: 1, Version: "1", Event: api.EventHealthOK})
	if !errors.Is(err, &api.Error{Code: api.CodeNotFound}) {
		t.Fatalf("unknown device: %v", err)
	}
	f.check(t, "d", "10.0.0")
	err = f.svc.Report(ctx, api.ReportRequest{DeviceID: "d", Seq: 1, RolloutID: "nope", Version: "1", Event: api.EventFailed})
	if !errors.Is(err, &api.Error{Code: api.CodeNotFound}) {
		t.Fatalf("unknown rollout: %v", err)
	}
	err = f.svc.Report(ctx, api.ReportRequest{DeviceID: "d", Version: "1", Event: "boom"})
	if !errors.Is(err, &api.Error{Code: api.CodeBadRequest}) {
		t.Fatalf("bad event: %v", err)
	}
}

// With every cache on (long TTLs), answers still follow each change made
// through the service or announced to it.
func TestCachesStayCorrect(t *testing.T) {
	f := newFixture(t)
	f.svc.CacheTTL = time.Hour
	ctx := context.Background()
	if err := f.svc.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	f.release(t, "stable", "10.0.1")
	f.release(t, "stable", "10.0.2")
	f.rollout(t, "r", "stable", "10.0.2", "100%")
	if r := f.check(t, "pc", "10.0.1"); !r.Update || r.Target.Version != "10.0.2" {
		t.Fatalf("first check: %+v", r)
	}
	// An admin moves the device to a group and holds the group on 10.0.1.
	if err := f.store.SetDeviceGroup(ctx, "pc", "lab"); err != nil {
		t.Fatal(err)
	}
	if err := f.store.SetPin(ctx, db.Pin{Scope: db.PinGroup, Target: "lab", Version: "10.0.1", CreatedBy: "a", CreatedAt: f.now}); err != nil {
		t.Fatal(err)
	}
	f.svc.ForgetDevice("pc")
	f.svc.Invalidate()
	if r := f.check(t, "pc", "10.0.1"); r.Update || r.Reason != ReasonHeld {
		t.Fatalf("after the group hold: %+v", r)
	}
	if err := f.store.DeletePin(ctx, db.PinGroup, "lab"); err != nil {
		t.Fatal(err)
	}
	f.svc.Invalidate()
	// A rollback report applies at once: the release is not offered again.
	if err := f.svc.Report(ctx, api.ReportRequest{DeviceID: "pc", Seq: 1, RolloutID: "r", Version: "10.0.2", Event: api.EventHealthFailed}); err != nil {
		t.Fatal(err)
	}
	if r := f.check(t, "pc", "10.0.1"); r.Update {
		t.Fatalf("rolled-back release re-offered with caches on: %+v", r)
	}
	if r := f.check(t, "other", "10.0.1"); !r.Update {
		t.Fatalf("another device lost its offer: %+v", r)
	}
	// Queued last-seen times reach the store on Flush.
	f.now = f.now.Add(time.Minute)
	f.check(t, "other", "10.0.1")
	if err := f.svc.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := f.store.GetDevice(ctx, "other")
	if err != nil || !d.LastSeen.Equal(f.now) {
		t.Fatalf("last seen %v (%v), want %v", d.LastSeen, err, f.now)
	}
}
