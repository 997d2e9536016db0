// Package channel owns channel definitions: the shipped channels/*.yaml
// files (testing, stable, edu) that say, per channel, which OSTree ref each
// architecture follows, who may publish, which channel it is promoted from, its default
// rollout plan and its barriers and dead ends.
//
// Files are decoded strictly (go.yaml.in/yaml/v4 with known fields: an
// unknown or duplicated key is an error naming it) and then validated, and
// a directory of them is validated as a set, so a typo can never silently
// change what the fleet receives. The package is pure apart from reading
// the files: it imports no server, storage or ostree code (the ref grammar
// is checked locally) and uses internal/rollout for ramps and versions.
//
// Decisions:
//
//   - Refs follow mxos/<major>/<arch>/<channel>, and each ref must end in
//     "/<arch>/<name>" of its own entry: pointing aarch64 at an x86_64 ref,
//     or stable at testing's ref, is the copy-paste slip that would ship
//     the wrong tree, so it is refused (and two channels can then never
//     share a ref).
//   - A channel's bootable images need no settings of their own: the image
//     of ref mxos/<major>/<arch>/<channel> is <registry>/mxos/<major>/<arch>
//     tagged <channel> and <channel>-<version> (internal/oci/bootimage), so
//     it follows the ref and two channels can never share a tag.
//   - Publishers are either auth roles ("release", "admin") or named
//     tokens ("token:<name>", e.g. a CI builder allowed only on testing).
//     The "device" role can never publish. For a channel that is promoted
//     from another, publishing means promoting: releases enter it only
//     from its source.
//   - Promotion has one source per channel (stable from testing, edu from
//     stable); the source must exist, the graph has no cycles, and a
//     channel's architectures must be a subset of its source's, since a
//     promotion re-signs the source's commit for the target ref.
//   - Rollout defaults are a ramp string (rollout.ParseRamp), a halt
//     threshold in (0, 1], a minimum sample size ≥ 1 and the window over
//     which device reports are counted.
//   - static_deltas is how many previous releases of the channel get a
//     static delta to each new one (0..16; unset means 2): lab machines
//     off for days benefit from a larger value, at the cost of generation
//     time and disk on the server. static_delta_from_scratch (default
//     false) adds one from scratch, for machines installed over the
//     network; it is slow to make (pure-Go xz, inside the publish lock).
//   - Barriers and dead ends carry a reason shown to admins and devices.
//     A release cannot be both, and a dead end's successor must be newer.
package channel
