package updates

import (
	"fmt"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// A device with nothing installed (no version in its check) is older than
// every release: it takes the newest complete release, or the current one
// when the ramp admits it, never an invalid-input answer.
func TestCheckNothingInstalled(t *testing.T) {
	f := newFixture(t)
	if resp := f.check(t, "fresh-0", ""); resp.Update || resp.Reason != ReasonNoRollout {
		t.Fatalf("no rollout yet: %+v", resp)
	}
	f.release(t, "stable", "10.0.1")
	f.rollout(t, "r1", "stable", "10.0.1", "100%")
	f.setState(t, "r1", rollout.StateActive, rollout.StateComplete)
	f.release(t, "stable", "10.0.2")
	f.rollout(t, "r2", "stable", "10.0.2", "10%,100%@72h")

	counts := map[string]int{}
	for i := 0; i < 400; i++ {
		dev := fmt.Sprintf("fresh-%03d", i)
		resp := f.check(t, dev, "")
		if !resp.Update || resp.Target == nil {
			t.Fatalf("%s: nothing offered: %+v", dev, resp)
		}
		eligible := rollout.Bucket(dev, "r2") < 0.1
		switch {
		case eligible && (resp.Target.Version != "10.0.2" || resp.Reason != string(rollout.ReasonEligible)):
			t.Fatalf("%s (admitted): %+v", dev, resp)
		case !eligible && (resp.Target.Version != "10.0.1" || resp.Reason != ReasonPreviousRelease):
			t.Fatalf("%s (not admitted): %+v", dev, resp)
		}
		counts[resp.Target.Version]++
	}
	if counts["10.0.2"] == 0 || counts["10.0.1"] == 0 {
		t.Fatalf("offers = %v", counts)
	}
	// A hold pins a fresh device to the held release too.
	f.svc.Invalidate()
	if err := f.store.SetPin(t.Context(), db.Pin{Scope: db.PinDevice, Target: "fresh-hold", Version: "10.0.1", CreatedBy: "admin", CreatedAt: f.now}); err != nil {
		t.Fatal(err)
	}
	if resp := f.check(t, "fresh-hold", ""); !resp.Update || resp.Target.Version != "10.0.1" || resp.Reason != ReasonPinned {
		t.Fatalf("held fresh device: %+v", resp)
	}
}
