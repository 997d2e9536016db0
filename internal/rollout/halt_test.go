package rollout

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestAutoHalt(t *testing.T) {
	p := HaltPolicy{Threshold: 0.05, MinSamples: 100, Window: 24 * time.Hour}
	for _, c := range []struct {
		name   string
		stats  Stats
		policy HaltPolicy
		halt   bool
		reason string
	}{
		{"no reports", Stats{}, p, false, "0 reports, fewer than the 100 needed"},
		{"below min samples, all failing", Stats{Failures: 99}, p, false, "99 reports, fewer than the 100 needed"},
		{"exactly min samples, over", Stats{Successes: 94, Failures: 6}, p, true, "failure rate 6% (6 of 100 reports) is above the 5% threshold"},
		{"exactly at threshold", Stats{Successes: 95, Failures: 5}, p, false, "failure rate 5% (5 of 100 reports) is within the 5% threshold"},
		{"at threshold, other counts", Stats{Successes: 57, Failures: 3}, HaltPolicy{0.05, 60, time.Hour}, false, "within"},
		{"just over threshold", Stats{Successes: 949, Failures: 51}, p, true, "5.1%"},
		{"below threshold", Stats{Successes: 990, Failures: 10}, p, false, "1% (10 of 1000 reports) is within"},
		{"all successes", Stats{Successes: 1000}, p, false, "0%"},
		{"min samples 1", Stats{Failures: 1}, HaltPolicy{0.5, 1, time.Hour}, true, "above the 50% threshold"},
		{"threshold 1 never halts", Stats{Failures: 1000}, HaltPolicy{1, 1, time.Hour}, false, "within the 100% threshold"},
		{"invalid threshold 0", Stats{Failures: 1000}, HaltPolicy{0, 1, time.Hour}, false, "not judged: invalid halt policy: threshold 0"},
		{"invalid threshold NaN", Stats{Failures: 1000}, HaltPolicy{math.NaN(), 1, time.Hour}, false, "not judged"},
		{"invalid min samples", Stats{Failures: 1000}, HaltPolicy{0.1, 0, time.Hour}, false, "min samples 0"},
		{"invalid window", Stats{Failures: 1000}, HaltPolicy{0.1, 1, 0}, false, "window 0s"},
		{"negative counts", Stats{Successes: -5, Failures: 10}, p, false, "invalid counts"},
		{"overflowing counts", Stats{Successes: math.MaxInt, Failures: 1}, p, false, "invalid counts"},
	} {
		t.Run(c.name, func(t *testing.T) {
			halt, reason := AutoHalt(c.stats, c.policy)
			if halt != c.halt || !strings.Contains(reason, c.reason) {
				t.Errorf("AutoHalt(%+v, %+v) = %v, %q; want %v, %q", c.stats, c.policy, halt, reason, c.halt, c.reason)
			}
		})
	}
}

func TestHaltPolicyValidate(t *testing.T) {
	if err := (HaltPolicy{0.05, 50, time.Hour}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []HaltPolicy{
		{-0.1, 50, time.Hour}, {1.01, 50, time.Hour}, {math.Inf(1), 50, time.Hour}, {0.05, -1, time.Hour}, {0.05, 50, -time.Hour},
	} {
		if err := p.Validate(); !errors.Is(err, ErrBadPolicy) {
			t.Errorf("Validate(%+v) = %v", p, err)
		}
	}
}
