package channelmeta

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// Target path prefixes. Releases live in the release-signed top-level
// targets role, rollout state in the online-signed delegated role.
const (
	ReleasesPrefix = "releases/"
	RolloutsPrefix = "rollouts/"
	// RolloutsPattern is the only path pattern delegated to the online key.
	// go-tuf matches patterns segment by segment, so it covers exactly
	// rollouts/<channel>/<arch> and nothing under releases/.
	RolloutsPattern = "rollouts/*/*"
	RolloutsRole    = "rollouts"
)

// Release is one release-signed entry: "this commit may be installed as
// version V of channel C on arch A". It is the target's custom JSON, and
// the target's length and hashes are over its canonical JSON.
type Release struct {
	Channel string `json:"channel"`
	Arch    string `json:"arch"`
	Version string `json:"version"`
	// Ref is the OSTree ref the commit is bound to (ostree.ref-binding).
	Ref string `json:"ref"`
	// Commit is the OSTree commit checksum (64 lowercase hex digits).
	Commit string `json:"commit"`
	// OCIDigest is the bootable container image's manifest digest, if the
	// release is also published as an image.
	OCIDigest   string    `json:"oci_digest,omitempty"`
	PublishedAt time.Time `json:"published_at"`
	// Threshold, when above 1, is how many distinct release keys must sign
	// the targets that list this release (see threshold.go); devices
	// ignore the release otherwise.
	Threshold int `json:"threshold,omitempty"`
}

// Path is the release's TUF target path: releases/<channel>/<arch>/<version>.
func (r Release) Path() string {
	return ReleasesPrefix + r.Channel + "/" + r.Arch + "/" + r.Version
}

// RolloutState is the online-signed rollout of one channel and arch. The
// record also carries channel and arch (beyond the fields the issue lists)
// so that it is self-describing and the signed hash binds them, not only
// the target path.
type RolloutState struct {
	Channel   string        `json:"channel"`
	Arch      string        `json:"arch"`
	RolloutID string        `json:"rollout_id"`
	Version   string        `json:"version"`
	Ramp      rollout.Ramp  `json:"ramp"`
	State     rollout.State `json:"state"`
	// StartedAt is when the ramp started (after ShiftStart for pauses);
	// zero for a pending rollout.
	StartedAt  time.Time `json:"started_at,omitzero"`
	HaltReason string    `json:"halt_reason,omitempty"`
	// Barriers and DeadEnds are the channel's update graph (channels/*.yaml,
	// rollout.Graph), so that a device that cannot reach the server decides
	// from the signed record as the server would (Graph). Absent in records
	// of servers before them: no barriers, no dead ends.
	Barriers []string  `json:"barriers,omitempty"`
	DeadEnds []DeadEnd `json:"dead_ends,omitempty"`
}

// DeadEnd is a release nothing is offered from but Successor (none when
// empty); see rollout.DeadEnd.
type DeadEnd struct {
	Version   string `json:"version"`
	Successor string `json:"successor,omitempty"`
}

// maxGraph bounds the barriers and dead ends of one record.
const maxGraph = 256

// Graph returns the record's update graph for rollout.Decide.
func (s RolloutState) Graph() rollout.Graph {
	g := rollout.Graph{Barriers: append([]string(nil), s.Barriers...)}
	for _, d := range s.DeadEnds {
		g.DeadEnds = append(g.DeadEnds, rollout.DeadEnd{Version: d.Version, Successor: d.Successor})
	}
	return g
}

// Path is the rollout's TUF target path: rollouts/<channel>/<arch>.
func (s RolloutState) Path() string {
	return RolloutsPrefix + s.Channel + "/" + s.Arch
}

var (
	// Path segments must not contain "/" or glob characters: they become TUF
	// target paths, which delegations match with shell patterns.
	channelRE   = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	archRE      = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)
	versionRE   = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z._+~-]{0,127}$`)
	commitRE    = regexp.MustCompile(`^[0-9a-f]{64}$`)
	ociDigestRE = regexp.MustCompile(`^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$`)
	rolloutIDRE = regexp.MustCompile(`^[!-~]{1,128}$`)
)

const maxHaltReason = 1024

func checkSegments(channelName, arch, version string) error {
	if !channelRE.MatchString(channelName) {
		return fmt.Errorf("channel %q: want [a-z][a-z0-9-]*", channelName)
	}
	if !archRE.MatchString(arch) {
		return fmt.Errorf("arch %q: want [a-z0-9_]+", arch)
	}
	if version != "" && !versionRE.MatchString(version) {
		return fmt.Errorf("version %q: want letters, digits and ._+~- (at most 128)", version)
	}
	return nil
}

// Validate checks a release record on its own.
func (r Release) Validate() error {
	if r.Version == "" {
		return fmt.Errorf("release %s/%s: empty version", r.Channel, r.Arch)
	}
	if err := checkSegments(r.Channel, r.Arch, r.Version); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	if err := channel.ValidateRef(r.Ref); err != nil {
		return fmt.Errorf("release %s: %w", r.Path(), err)
	}
	if !commitRE.MatchString(r.Commit) {
		return fmt.Errorf("release %s: commit must be 64 lowercase hex digits", r.Path())
	}
	if r.OCIDigest != "" && !ociDigestRE.MatchString(r.OCIDigest) {
		return fmt.Errorf("release %s: OCI digest %q: want sha256:<64 hex> or sha512:<128 hex>", r.Path(), r.OCIDigest)
	}
	if r.PublishedAt.IsZero() {
		return fmt.Errorf("release %s: no published_at", r.Path())
	}
	if r.Threshold < 0 || r.Threshold > maxRoleKeys {
		return fmt.Errorf("release %s: threshold %d", r.Path(), r.Threshold)
	}
	return nil
}

// Validate checks a rollout record on its own.
func (s RolloutState) Validate() error {
	if s.Version == "" {
		return fmt.Errorf("rollout %s/%s: empty version", s.Channel, s.Arch)
	}
	if err := checkSegments(s.Channel, s.Arch, s.Version); err != nil {
		return fmt.Errorf("rollout: %w", err)
	}
	if !rolloutIDRE.MatchString(s.RolloutID) {
		return fmt.Errorf("rollout %s: id must be 1-128 printable ASCII characters without spaces", s.Path())
	}
	if s.Ramp.IsZero() {
		return fmt.Errorf("rollout %s: no ramp", s.Path())
	}
	if !s.State.Valid() {
		return fmt.Errorf("rollout %s: unknown state %q", s.Path(), s.State)
	}
	if s.State != rollout.StatePending && s.StartedAt.IsZero() {
		return fmt.Errorf("rollout %s: state %s needs started_at", s.Path(), s.State)
	}
	if len(s.Barriers) > maxGraph || len(s.DeadEnds) > maxGraph {
		return fmt.Errorf("rollout %s: more than %d barriers or dead ends", s.Path(), maxGraph)
	}
	for _, v := range s.Barriers {
		if !versionRE.MatchString(v) {
			return fmt.Errorf("rollout %s: barrier %q: want letters, digits and ._+~- (at most 128)", s.Path(), v)
		}
	}
	for _, d := range s.DeadEnds {
		if !versionRE.MatchString(d.Version) || (d.Successor != "" && !versionRE.MatchString(d.Successor)) {
			return fmt.Errorf("rollout %s: dead end %q → %q: want letters, digits and ._+~- (at most 128)", s.Path(), d.Version, d.Successor)
		}
	}
	if len(s.HaltReason) > maxHaltReason || !utf8.ValidString(s.HaltReason) ||
		strings.IndexFunc(s.HaltReason, unicode.IsControl) >= 0 {
		return fmt.Errorf("rollout %s: halt reason must be at most %d bytes of UTF-8 without control characters", s.Path(), maxHaltReason)
	}
	return nil
}

// targetRecord checks a signed target's custom JSON against the target's
// own length and hashes and decodes it into out. Unknown fields are
// accepted (and covered by the hash), so newer servers can add fields
// without breaking older devices.
func targetRecord(path string, tf *metadata.TargetFiles, out any) error {
	if tf == nil || tf.Custom == nil {
		return malformedf("target %s has no record", path)
	}
	canon, err := cjson.EncodeCanonical(*tf.Custom)
	if err != nil {
		return malformedf("target %s: record is not canonicalizable JSON: %v", path, err)
	}
	if err := tf.VerifyLengthHashes(canon); err != nil {
		return fmt.Errorf("target %s: %w: %w", path, ErrHashMismatch, err)
	}
	if err := json.Unmarshal(canon, out); err != nil {
		return malformedf("target %s: %v", path, err)
	}
	return nil
}

// ParseRelease decodes and checks one release target.
func ParseRelease(path string, tf *metadata.TargetFiles) (Release, error) {
	var r Release
	if err := targetRecord(path, tf, &r); err != nil {
		return Release{}, err
	}
	if err := r.Validate(); err != nil {
		return Release{}, malformedf("target %s: %v", path, err)
	}
	if r.Path() != path {
		return Release{}, malformedf("target %s carries the record of %s", path, r.Path())
	}
	return r, nil
}

// ParseRollout decodes and checks one rollout target.
func ParseRollout(path string, tf *metadata.TargetFiles) (RolloutState, error) {
	var s RolloutState
	if err := targetRecord(path, tf, &s); err != nil {
		return RolloutState{}, err
	}
	if err := s.Validate(); err != nil {
		return RolloutState{}, malformedf("target %s: %v", path, err)
	}
	if s.Path() != path {
		return RolloutState{}, malformedf("target %s carries the record of %s", path, s.Path())
	}
	return s, nil
}
