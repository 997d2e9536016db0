package rollout

import (
	"math"
	"testing"
	"time"
)

var (
	testStart = time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC)
	testRamp  = mustRamp("1%,10%@24h,50%@48h,100%@72h")
)

func mustRamp(s string) Ramp {
	r, err := ParseRamp(s)
	if err != nil {
		panic(err)
	}
	return r
}

// base is an active rollout 30 hours in (10% of the fleet) of 10.2 to a
// device on 10.1 whose bucket is 0.05.
func base() DecideInput {
	return DecideInput{
		State:   StateActive,
		Ramp:    testRamp,
		Start:   testStart,
		Now:     testStart.Add(30 * time.Hour),
		Bucket:  0.05,
		Current: "10.1",
		Target:  "10.2",
	}
}

func TestDecide(t *testing.T) {
	for _, c := range []struct {
		name     string
		edit     func(*DecideInput)
		offer    bool
		target   string
		reason   Reason
		fraction float64
	}{
		{"eligible", func(*DecideInput) {}, true, "10.2", ReasonEligible, 0.1},
		{"bucket above fraction", func(in *DecideInput) { in.Bucket = 0.2 }, false, "", ReasonNotYet, 0.1},
		{"bucket equal to fraction", func(in *DecideInput) { in.Bucket = 0.1 }, false, "", ReasonNotYet, 0.1},
		{"later step admits it", func(in *DecideInput) { in.Bucket = 0.2; in.Now = testStart.Add(50 * time.Hour) }, true, "10.2", ReasonEligible, 0.5},
		{"before start", func(in *DecideInput) { in.Now = testStart.Add(-time.Minute); in.Bucket = 0 }, false, "", ReasonNotYet, 0},
		{"first instant", func(in *DecideInput) { in.Now = testStart; in.Bucket = 0.005 }, true, "10.2", ReasonEligible, 0.01},
		{"pending", func(in *DecideInput) { in.State = StatePending }, false, "", ReasonNotYet, 0},
		{"paused", func(in *DecideInput) { in.State = StatePaused }, false, "", ReasonPaused, 0},
		{"halted", func(in *DecideInput) { in.State = StateHalted }, false, "", ReasonHalted, 0},
		{"halted past the ramp's end", func(in *DecideInput) { in.State = StateHalted; in.Now = testStart.Add(1000 * time.Hour) }, false, "", ReasonHalted, 0},
		{"complete admits any bucket", func(in *DecideInput) { in.State = StateComplete; in.Bucket = 0.999 }, true, "10.2", ReasonEligible, 1},
		{"complete needs no ramp", func(in *DecideInput) { in.State = StateComplete; in.Ramp = Ramp{} }, true, "10.2", ReasonEligible, 1},
		{"rolled back", func(in *DecideInput) { in.RolledBackFrom = []string{"10.2"} }, false, "", ReasonRolledBack, 0.1},
		{"rolled back, other spelling", func(in *DecideInput) { in.RolledBackFrom = []string{"junk", "10.2.0"} }, false, "", ReasonRolledBack, 0.1},
		{"rolled back beats complete", func(in *DecideInput) { in.State = StateComplete; in.RolledBackFrom = []string{"10.2"} }, false, "", ReasonRolledBack, 1},
		{"rolled back from an older one", func(in *DecideInput) { in.RolledBackFrom = []string{"10.1.5"} }, true, "10.2", ReasonEligible, 0.1},
		{"up to date", func(in *DecideInput) { in.Current = "10.2" }, false, "", ReasonUpToDate, 0.1},
		{"up to date, other spelling", func(in *DecideInput) { in.Current = "10.2.0" }, false, "", ReasonUpToDate, 0.1},
		{"newer than target: no downgrade", func(in *DecideInput) { in.Current = "10.3" }, false, "", ReasonUpToDate, 0.1},
		{"pre-release to release", func(in *DecideInput) { in.Current = "10.2-rc.1" }, true, "10.2", ReasonEligible, 0.1},

		{"barrier between", func(in *DecideInput) { in.Current = "10.0"; in.Graph.Barriers = []string{"10.1.5"} }, true, "10.1.5", ReasonBarrier, 0.1},
		{"oldest barrier first", func(in *DecideInput) { in.Current = "9.0"; in.Graph.Barriers = []string{"10.1", "9.5", "10.0"} }, true, "9.5", ReasonBarrier, 0.1},
		{"barrier ignores the target's ramp", func(in *DecideInput) {
			in.Current = "10.0"
			in.Graph.Barriers = []string{"10.1"}
			in.State = StatePaused
		}, true, "10.1", ReasonBarrier, 0},
		{"barrier ignores the bucket", func(in *DecideInput) { in.Current = "10.0"; in.Graph.Barriers = []string{"10.1"}; in.Bucket = 0.9 }, true, "10.1", ReasonBarrier, 0.1},
		{"barrier already installed", func(in *DecideInput) { in.Graph.Barriers = []string{"10.1", "10.0"} }, true, "10.2", ReasonEligible, 0.1},
		{"barrier is the target", func(in *DecideInput) { in.Graph.Barriers = []string{"10.2"}; in.Bucket = 0.9 }, false, "", ReasonNotYet, 0.1},
		{"barrier newer than target", func(in *DecideInput) { in.Graph.Barriers = []string{"10.3"} }, true, "10.2", ReasonEligible, 0.1},
		{"rolled back from barrier", func(in *DecideInput) {
			in.Current = "10.0"
			in.Graph.Barriers = []string{"10.1"}
			in.RolledBackFrom = []string{"10.1"}
		}, false, "", ReasonRolledBack, 0.1},

		{"dead end, no successor", func(in *DecideInput) { in.Graph.DeadEnds = []DeadEnd{{Version: "10.1"}} }, false, "", ReasonDeadEnd, 0.1},
		{"dead end, other spelling", func(in *DecideInput) { in.Graph.DeadEnds = []DeadEnd{{Version: "10.1.0"}} }, false, "", ReasonDeadEnd, 0.1},
		{"dead end to an older successor", func(in *DecideInput) { in.Graph.DeadEnds = []DeadEnd{{"10.1", "10.1.1"}}; in.Bucket = 0.9 }, true, "10.1.1", ReasonSuccessor, 0.1},
		{"dead end to the target goes through the ramp", func(in *DecideInput) { in.Graph.DeadEnds = []DeadEnd{{"10.1", "10.2"}}; in.Bucket = 0.9 }, false, "", ReasonNotYet, 0.1},
		{"dead end to the target, eligible", func(in *DecideInput) { in.Graph.DeadEnds = []DeadEnd{{"10.1", "10.2"}} }, true, "10.2", ReasonEligible, 0.1},
		{"dead end successor overrides a barrier", func(in *DecideInput) {
			in.Graph.DeadEnds = []DeadEnd{{"10.1", "10.2"}}
			in.Graph.Barriers = []string{"10.1.5"}
		}, true, "10.2", ReasonEligible, 0.1},
		{"dead end successor past the target", func(in *DecideInput) { in.Graph.DeadEnds = []DeadEnd{{"10.1", "10.3"}} }, false, "", ReasonDeadEnd, 0.1},
		{"dead end successor behind it", func(in *DecideInput) { in.Graph.DeadEnds = []DeadEnd{{"10.1", "10.0"}} }, false, "", ReasonDeadEnd, 0.1},
		{"another release is a dead end", func(in *DecideInput) { in.Graph.DeadEnds = []DeadEnd{{Version: "10.0"}} }, true, "10.2", ReasonEligible, 0.1},
		{"target is a dead end: still offered", func(in *DecideInput) { in.Graph.DeadEnds = []DeadEnd{{Version: "10.2"}} }, true, "10.2", ReasonEligible, 0.1},
		{"rolled back from successor", func(in *DecideInput) {
			in.Graph.DeadEnds = []DeadEnd{{"10.1", "10.1.1"}}
			in.RolledBackFrom = []string{"10.1.1"}
		}, false, "", ReasonRolledBack, 0.1},

		{"bad current", func(in *DecideInput) { in.Current = "ten" }, false, "", ReasonInvalid, 0.1},
		{"bad target", func(in *DecideInput) { in.Target = "" }, false, "", ReasonInvalid, 0.1},
		{"bad state", func(in *DecideInput) { in.State = "" }, false, "", ReasonInvalid, 0},
		{"bad bucket", func(in *DecideInput) { in.Bucket = 1 }, false, "", ReasonInvalid, 0.1},
		{"negative bucket", func(in *DecideInput) { in.Bucket = -0.1 }, false, "", ReasonInvalid, 0.1},
		{"NaN bucket", func(in *DecideInput) { in.Bucket = math.NaN() }, false, "", ReasonInvalid, 0.1},
		{"active without ramp", func(in *DecideInput) { in.Ramp = Ramp{} }, false, "", ReasonInvalid, 0},
		{"bad barrier", func(in *DecideInput) { in.Graph.Barriers = []string{"x"} }, false, "", ReasonInvalid, 0.1},
		{"bad dead end", func(in *DecideInput) { in.Graph.DeadEnds = []DeadEnd{{Version: "x"}} }, false, "", ReasonInvalid, 0.1},
		{"bad successor", func(in *DecideInput) { in.Graph.DeadEnds = []DeadEnd{{"10.1", "x"}} }, false, "", ReasonInvalid, 0.1},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := base()
			c.edit(&in)
			want := Decision{Offer: c.offer, Target: c.target, Reason: c.reason, Fraction: c.fraction}
			if got := Decide(in); got != want {
				t.Errorf("Decide = %+v, want %+v", got, want)
			}
		})
	}
}

// Decide over a simulated fleet agrees with the bucket math at every step,
// and a device offered the release at one step is offered it at every later
// one.
func TestDecideOverFleet(t *testing.T) {
	buckets := fleet(rolloutID)
	offered := make([]bool, len(buckets))
	for _, at := range []time.Duration{0, 24 * time.Hour, 48 * time.Hour, 72 * time.Hour} {
		in := base()
		in.Now = testStart.Add(at)
		n := 0
		for i, b := range buckets {
			in.Bucket = b
			d := Decide(in)
			if offered[i] && !d.Offer {
				t.Fatalf("device-%06d dropped at +%s", i, at)
			}
			offered[i] = d.Offer
			if d.Offer {
				n++
			}
		}
		want := testRamp.FractionAt(testStart, in.Now)
		if got := float64(n) / float64(len(buckets)); math.Abs(got-want) > 0.01 {
			t.Errorf("+%s: %.3f%% offered, want %.0f%% ± 1 point", at, got*100, want*100)
		}
	}
}

// A device with nothing installed (empty Current) is older than every
// release: it goes through the ramp and through barriers like any device
// behind them, and is on no dead end.
func TestDecideNothingInstalled(t *testing.T) {
	for _, c := range []struct {
		name   string
		edit   func(*DecideInput)
		offer  bool
		target string
		reason Reason
	}{
		{"eligible", func(*DecideInput) {}, true, "10.2", ReasonEligible},
		{"ramp still gates it", func(in *DecideInput) { in.Bucket = 0.9 }, false, "", ReasonNotYet},
		{"complete", func(in *DecideInput) { in.State = StateComplete; in.Bucket = 0.9 }, true, "10.2", ReasonEligible},
		{"halted", func(in *DecideInput) { in.State = StateHalted }, false, "", ReasonHalted},
		{"oldest barrier first", func(in *DecideInput) { in.Graph.Barriers = []string{"10.1", "9.5"}; in.Bucket = 0.9 }, true, "9.5", ReasonBarrier},
		{"barrier at the target", func(in *DecideInput) { in.Graph.Barriers = []string{"10.2"} }, true, "10.2", ReasonEligible},
		{"dead ends do not apply", func(in *DecideInput) { in.Graph.DeadEnds = []DeadEnd{{Version: "10.1"}, {Version: "0"}} }, true, "10.2", ReasonEligible},
		{"rolled back from the target", func(in *DecideInput) { in.RolledBackFrom = []string{"10.2"} }, false, "", ReasonRolledBack},
		{"bad target still invalid", func(in *DecideInput) { in.Target = "" }, false, "", ReasonInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := base()
			in.Current = ""
			c.edit(&in)
			d := Decide(in)
			if d.Offer != c.offer || d.Target != c.target || d.Reason != c.reason {
				t.Errorf("Decide = %+v, want offer=%v target=%q reason=%s", d, c.offer, c.target, c.reason)
			}
		})
	}
}
