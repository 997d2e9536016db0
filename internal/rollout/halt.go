package rollout

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ErrBadPolicy is wrapped by HaltPolicy.Validate's errors.
var ErrBadPolicy = errors.New("invalid halt policy")

// Stats are the reports devices sent about a rollout's release within the
// policy's window; the caller counts them.
type Stats struct {
	Successes int // deployed and passed health checks
	Failures  int // failed to deploy, or rolled back
}

// HaltPolicy says when a rollout halts itself.
type HaltPolicy struct {
	// Threshold is the failure rate, in (0, 1], above which the rollout
	// halts. 1 never halts (a rate cannot exceed 1).
	Threshold float64
	// MinSamples is how many reports (successes + failures) are needed
	// before the rate means anything; at least 1.
	MinSamples int
	// Window is how far back the caller counts reports; AutoHalt itself
	// only sees the counts.
	Window time.Duration
}

// Validate checks the policy's ranges.
func (p HaltPolicy) Validate() error {
	switch {
	case math.IsNaN(p.Threshold) || p.Threshold <= 0 || p.Threshold > 1:
		return fmt.Errorf("%w: threshold %v must be in (0, 1]", ErrBadPolicy, p.Threshold)
	case p.MinSamples < 1:
		return fmt.Errorf("%w: min samples %d must be at least 1", ErrBadPolicy, p.MinSamples)
	case p.Window <= 0:
		return fmt.Errorf("%w: window %s must be positive", ErrBadPolicy, p.Window)
	}
	return nil
}

// AutoHalt decides whether a rollout should halt: only when there are at
// least MinSamples reports and failures/reports is strictly above the
// threshold (a rate exactly at the threshold does not halt). The reason is
// a sentence for the audit log. An invalid policy or negative counts never
// halt, and the reason says so; channel definitions are validated on load,
// so that is a programming error, not a fleet event.
func AutoHalt(stats Stats, policy HaltPolicy) (halt bool, reason string) {
	if err := policy.Validate(); err != nil {
		return false, "not judged: " + err.Error()
	}
	if stats.Successes < 0 || stats.Failures < 0 || stats.Successes > math.MaxInt-stats.Failures {
		return false, fmt.Sprintf("not judged: invalid counts (%d successes, %d failures)", stats.Successes, stats.Failures)
	}
	n := stats.Successes + stats.Failures
	if n < policy.MinSamples {
		return false, fmt.Sprintf("%d reports, fewer than the %d needed to judge", n, policy.MinSamples)
	}
	// Both sides are correctly rounded, so 5 of 100 equals a 0.05 threshold.
	rate := float64(stats.Failures) / float64(n)
	desc := fmt.Sprintf("failure rate %s (%d of %d reports)", percent(rate), stats.Failures, n)
	if rate > policy.Threshold {
		return true, desc + " is above the " + percent(policy.Threshold) + " threshold"
	}
	return false, desc + " is within the " + percent(policy.Threshold) + " threshold"
}

// percent prints a fraction as a percentage with at most two decimals.
func percent(f float64) string {
	s := strconv.FormatFloat(f*100, 'f', 2, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s + "%"
}
