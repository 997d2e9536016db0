// Package rollout owns the pure policy of staged rollouts: ramps, device
// bucketing, rollout states, the per-device offer decision, auto-halt and the
// ordering of release versions. It has no clock, no I/O and no logging: the
// caller passes the time, the rollout's state and the counts it collected,
// so every answer can be reproduced from its inputs (and from signed
// metadata, on the device).
//
// # Ramps are step functions
//
// A ramp is a list of steps "percentage@offset", e.g.
//
//	1%,10%@24h,50%@48h,100%@72h
//
// From each step's offset after the rollout's start the release is offered
// to that share of the fleet, until the next step. We step rather than
// interpolate linearly between steps (as Cincinnati/Zincati do) because the
// fraction in force is then always one of the numbers the release team
// wrote and signed: the server's answer, the device's own check against
// signed metadata, the status shown in mxosctl and the audit log all agree,
// and a signed fraction stays valid until the next step instead of going
// stale by the second. A smoother ramp is just more steps. Percentages have
// at most two decimals (stored as basis points) so a ramp prints, parses and
// signs exactly. See [ParseRamp].
//
// Pausing does not move the ramp: the caller shifts the start by the paused
// time on resume ([ShiftStart]) so a resumed rollout continues where it
// stopped rather than jumping ahead.
//
// # Buckets are a wire format
//
// A device's place in a rollout is [Bucket](deviceID, rolloutID), a number
// in [0, 1); it is offered the release when its bucket is below the ramp's
// fraction ([Eligible]). Devices recompute it to check the server's answer,
// so its definition is fixed:
//
//	msg    = "mxos-rollout-bucket-v1" 0x00
//	         u64be(len(deviceID)) deviceID
//	         u64be(len(rolloutID)) rolloutID       (lengths in bytes)
//	h      = SHA-256(msg)
//	x      = first 8 bytes of h as a big-endian unsigned 64-bit integer
//	bucket = (x >> 11) / 2^53
//
// That is x / 2^64 truncated to the 53 bits a float64 holds exactly, so the
// value is the same in every language and never rounds up to 1. The length
// prefixes keep ("ab", "c") and ("a", "bc") apart; the tag separates this
// hash from any other use of the same ids. Because the rollout id is hashed
// in, each rollout picks its own early devices: the same schools are not
// always first. Raising the fraction only adds devices, never drops one.
//
// # Decisions
//
// [Decide] answers "should this device be offered this release now?" with a
// stable [Reason] code used in API answers. Barriers and dead ends follow
// Cincinnati: a barrier release must be installed before anything newer,
// and a dead end offers no update except to its declared successor. Both
// redirect the device to an older, already published release, so they are
// not gated by the new release's ramp; the device never goes backwards and
// never re-targets a release it rolled back from.
//
// # A device with nothing installed
//
// An empty current version means the device runs no release yet (a freshly
// imaged machine whose first check carries no version). It is older than
// every release, so it takes the current release like any device behind
// it: through the ramp, and through barriers first, since it has installed
// none of them (a barrier may carry a rotated key or a migration, and a
// fresh machine gains nothing by skipping it). It is on no dead end.
// Refusing it instead (the earlier answer, invalid-input) left new
// machines with no way to their first update but a manual install.
//
// # Auto-halt
//
// [AutoHalt] halts a rollout when devices report a failure rate above the
// channel's threshold over its window, once at least the minimum number of
// reports is in. A halted rollout is never offered again unless the release
// team resumes it ([Transition]).
//
// # Versions
//
// Release versions are dotted numbers with an optional pre-release suffix,
// compared with [Compare]; see [ParseVersion] for the exact rules.
package rollout
