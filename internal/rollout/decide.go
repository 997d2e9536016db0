package rollout

import (
	"math"
	"time"
)

// Reason is a stable code saying why a device was or was not offered a
// release. API answers carry it; never rename one.
type Reason string

// Reason codes.
const (
	// Offered.
	ReasonEligible  Reason = "eligible"  // the ramp admits the device (or the rollout is complete)
	ReasonBarrier   Reason = "barrier"   // must install the offered barrier release first
	ReasonSuccessor Reason = "successor" // on a dead end; offered its declared successor

	// Not offered.
	ReasonNotYet     Reason = "not-yet"       // rollout pending, not started, or the ramp does not admit the device yet
	ReasonPaused     Reason = "paused"        // rollout paused by the release team
	ReasonHalted     Reason = "halted"        // rollout halted (by hand or auto-halt)
	ReasonRolledBack Reason = "rolled-back"   // the device rolled back from the release; never re-offered
	ReasonUpToDate   Reason = "up-to-date"    // the device runs the target or something newer
	ReasonDeadEnd    Reason = "dead-end"      // the device's release is a dead end with no way to the target
	ReasonInvalid    Reason = "invalid-input" // malformed version, state, ramp or bucket; fails closed
)

// Graph is what a channel says about paths between releases, modelled on
// Cincinnati's barriers and dead ends.
type Graph struct {
	// Barriers are releases every device must install before anything
	// newer (e.g. the release that brings a rotated signing key).
	Barriers []string
	// DeadEnds are releases nothing is offered from except their successor.
	DeadEnds []DeadEnd
}

// DeadEnd is a release that offers no update but to Successor; with no
// Successor it offers none at all (the device needs a reinstall or a
// manual rebase, and the release notes say so).
type DeadEnd struct {
	Version   string
	Successor string
}

// DecideInput is everything Decide looks at. The caller reads the rollout
// and the device's report; Decide only computes.
type DecideInput struct {
	State State     // the target's rollout state
	Ramp  Ramp      // the target's ramp
	Start time.Time // when the ramp started (shifted by pauses, see ShiftStart)
	Now   time.Time

	Bucket float64 // Bucket(deviceID, rolloutID)

	Current string // the version the device runs
	Target  string // the rollout's release

	// RolledBackFrom lists releases the device rolled back from (marked bad
	// locally or reported); none of them is offered again.
	RolledBackFrom []string

	Graph Graph
}

// Decision is Decide's answer.
type Decision struct {
	Offer bool
	// Target is the release to install when Offer is set: the rollout's
	// target, or a barrier or dead-end successor on the way to it. Empty
	// when nothing is offered.
	Target string
	Reason Reason
	// Fraction is the share of the fleet the target's rollout admits at
	// Now: the ramp's fraction while active, 1 when complete, 0 otherwise.
	Fraction float64
}

// Decide says whether a device should be offered a release now. In order:
//
//  1. malformed inputs offer nothing (invalid-input); an empty Current is
//     not malformed: it is a device with nothing installed, older than
//     every release (see the package doc);
//  2. a device on the target or newer is up-to-date (no downgrades);
//  3. a device on a dead end is offered only its successor: directly if it
//     is older than the target (successor), through the rollout if it is
//     the target; otherwise nothing (dead-end);
//  4. a device behind a barrier older than the target is offered the
//     oldest such barrier (barrier), unless step 3 sent it to the target;
//  5. a release the device rolled back from is never offered (rolled-back);
//  6. otherwise the target's rollout decides: pending is not-yet, paused
//     and halted offer nothing, complete offers to all, active offers when
//     Eligible(bucket, ramp fraction) (eligible, not-yet).
//
// Barriers and successors are older, already published releases, so steps
// 3 and 4 do not wait for the target's ramp.
func Decide(in DecideInput) Decision {
	fraction := rolloutFraction(in)
	no := func(r Reason) Decision { return Decision{Reason: r, Fraction: fraction} }
	offer := func(v string, r Reason) Decision {
		if rolledBack(in.RolledBackFrom, v) {
			return no(ReasonRolledBack)
		}
		return Decision{Offer: true, Target: v, Reason: r, Fraction: fraction}
	}

	if !in.State.Valid() || math.IsNaN(in.Bucket) || in.Bucket < 0 || in.Bucket >= 1 {
		return no(ReasonInvalid)
	}
	tgt, err := ParseVersion(in.Target)
	if err != nil {
		return no(ReasonInvalid)
	}
	// An empty Current is a machine with nothing installed yet (freshly
	// imaged): older than every release, on no dead end.
	fresh := in.Current == ""
	var cur Version
	if !fresh {
		if cur, err = ParseVersion(in.Current); err != nil {
			return no(ReasonInvalid)
		}
		if cur.Compare(tgt) >= 0 {
			return no(ReasonUpToDate)
		}
	}
	// newerThanCur reports whether v is newer than what the device runs.
	newerThanCur := func(v Version) bool { return fresh || v.Compare(cur) > 0 }

	// Dead ends: only the successor, if it lies on the way to the target.
	toSuccessor := false
	for _, d := range in.Graph.DeadEnds {
		dv, err := ParseVersion(d.Version)
		if err != nil {
			return no(ReasonInvalid)
		}
		if fresh || dv.Compare(cur) != 0 {
			continue
		}
		if d.Successor == "" {
			return no(ReasonDeadEnd)
		}
		sv, err := ParseVersion(d.Successor)
		if err != nil {
			return no(ReasonInvalid)
		}
		switch c := sv.Compare(tgt); {
		case sv.Compare(cur) <= 0 || c > 0:
			return no(ReasonDeadEnd)
		case c < 0:
			return offer(d.Successor, ReasonSuccessor)
		}
		toSuccessor = true // the successor is the target: the rollout decides
	}

	// Barriers: the oldest one strictly between current and target.
	// A dead end's declared successor overrides them.
	var barrier *Version
	for _, b := range in.Graph.Barriers {
		if toSuccessor {
			break
		}
		bv, err := ParseVersion(b)
		if err != nil {
			return no(ReasonInvalid)
		}
		if newerThanCur(bv) && bv.Compare(tgt) < 0 && (barrier == nil || bv.Compare(*barrier) < 0) {
			barrier = &bv
		}
	}
	if barrier != nil {
		return offer(barrier.String(), ReasonBarrier)
	}

	if rolledBack(in.RolledBackFrom, in.Target) {
		return no(ReasonRolledBack)
	}
	switch in.State {
	case StatePending:
		return no(ReasonNotYet)
	case StatePaused:
		return no(ReasonPaused)
	case StateHalted:
		return no(ReasonHalted)
	case StateComplete:
		return offer(in.Target, ReasonEligible)
	}
	// Active.
	if in.Ramp.IsZero() {
		return no(ReasonInvalid)
	}
	if Eligible(in.Bucket, fraction) {
		return offer(in.Target, ReasonEligible)
	}
	return no(ReasonNotYet)
}

func rolloutFraction(in DecideInput) float64 {
	switch in.State {
	case StateActive:
		return in.Ramp.FractionAt(in.Start, in.Now)
	case StateComplete:
		return 1
	}
	return 0
}

// rolledBack reports whether v is in list, comparing as versions so that
// 10.1 and 10.1.0 are one release; malformed entries are skipped.
func rolledBack(list []string, v string) bool {
	vv, err := ParseVersion(v)
	if err != nil {
		return false
	}
	for _, r := range list {
		if rv, err := ParseVersion(r); err == nil && rv.Compare(vv) == 0 {
			return true
		}
	}
	return false
}
