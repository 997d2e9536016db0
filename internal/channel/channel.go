package channel

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// Sentinel errors; callers tell a bad definition from a refused request.
var (
	// ErrInvalid is wrapped by every error about a malformed definition or set.
	ErrInvalid = errors.New("invalid channel")
	// ErrUnknownChannel is returned for a name that is not in the set.
	ErrUnknownChannel = errors.New("unknown channel")
	// ErrPromotion is returned when a promotion is not allowed.
	ErrPromotion = errors.New("promotion not allowed")
	// ErrBelowThreshold: a release carries fewer release signatures than
	// the channel's threshold.
	ErrBelowThreshold = errors.New("too few release signatures")
)

// Channel is one channels/<name>.yaml file.
type Channel struct {
	// Name is the channel's name; it must match the file name.
	Name string `yaml:"name"`
	// Description is one line for humans (mxosctl, the admin UI).
	Description string `yaml:"description"`
	// Refs maps an architecture to the OSTree ref it follows, e.g.
	// x86_64: mxos/10/x86_64/stable.
	Refs map[string]string `yaml:"refs"`
	// Publishers may publish (or, with PromotesFrom set, promote) into the
	// channel: roles "release" or "admin", or "token:<name>".
	Publishers []string `yaml:"publishers"`
	// PromotesFrom is the only channel releases are promoted from; empty
	// for a channel that is published to directly.
	PromotesFrom string `yaml:"promotes_from"`
	// Rollout is the default plan for a new release on the channel.
	Rollout Rollout `yaml:"rollout"`
	// Barriers and DeadEnds shape the update graph (see rollout.Graph).
	Barriers []Barrier `yaml:"barriers"`
	DeadEnds []DeadEnd `yaml:"dead_ends"`
	// Threshold is how many distinct release keys must sign a release of
	// the channel (k of the n release keys the signed root names): with 2,
	// two release team members sign a promotion (mxosctl promote
	// --sign-only, then mxosctl release cosign). 0 in the file means 1.
	Threshold int `yaml:"threshold"`
	// StaticDeltas is how many previous releases of the channel get a
	// static delta to each new release; unset means DefaultStaticDeltas,
	// 0 none.
	StaticDeltas *int `yaml:"static_deltas"`
	// StaticDeltaFromScratch adds a delta from scratch to each release
	// (default off: it is slow to make; see release.DeltaPolicy).
	StaticDeltaFromScratch bool `yaml:"static_delta_from_scratch"`
}

// DefaultStaticDeltas is Channel.StaticDeltas when the file does not set
// it; MaxStaticDeltas bounds it.
const (
	DefaultStaticDeltas = 2
	MaxStaticDeltas     = 16
)

// DeltaSources is the channel's static_deltas, or its default.
func (c *Channel) DeltaSources() int {
	if c.StaticDeltas == nil {
		return DefaultStaticDeltas
	}
	return *c.StaticDeltas
}

// MaxThreshold bounds Channel.Threshold.
const MaxThreshold = 16

// SignaturesRequired is the channel's threshold, at least 1.
func (c *Channel) SignaturesRequired() int { return max(c.Threshold, 1) }

// CheckThreshold refuses a release of the channel signed by fewer than
// its threshold of distinct release keys. The server and the release
// pipeline call it with the count channelmeta.TargetsSigners returns.
func (c *Channel) CheckThreshold(signers int) error {
	if need := c.SignaturesRequired(); signers < need {
		return fmt.Errorf("%w: channel %s needs release signatures by %d different release keys, the release has %d",
			ErrBelowThreshold, c.Name, need, signers)
	}
	return nil
}

// Rollout is a channel's default rollout plan.
type Rollout struct {
	// Ramp in rollout.ParseRamp's syntax, e.g. "1%,10%@24h,100%@72h".
	Ramp string `yaml:"ramp"`
	// HaltThreshold is the failure rate in (0, 1] above which a rollout halts.
	HaltThreshold float64 `yaml:"halt_threshold"`
	// MinSamples is how many device reports are needed before judging.
	MinSamples int `yaml:"min_samples"`
	// Window is how far back reports are counted, e.g. 24h.
	Window time.Duration `yaml:"window"`
}

// Barrier is a release every device must install before anything newer.
type Barrier struct {
	Version string `yaml:"version"`
	Reason  string `yaml:"reason"`
}

// DeadEnd is a release nothing is offered from but its Successor (none if
// empty).
type DeadEnd struct {
	Version   string `yaml:"version"`
	Successor string `yaml:"successor"`
	Reason    string `yaml:"reason"`
}

// Arches CentOS Stream builds for; a ref for anything else is a typo.
var knownArches = []string{"aarch64", "ppc64le", "s390x", "x86_64"}

// Roles that may publish; "device" is a role too, but never a publisher.
var publisherRoles = []string{"admin", "release"}

const tokenPrefix = "token:"

var (
	nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	// OSTree's ref grammar (libostree ostree_validate_rev): fragments of
	// [\w\d][-._\w\d]* joined by "/". \w is ASCII here, as in GLib.
	refFragmentRE = regexp.MustCompile(`^[\w\d][-._\w\d]*$`)
	tokenNameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
)

// maxRefLen bounds refs; they become file names under refs/heads/.
const maxRefLen = 255

// Validate checks one definition on its own and returns every problem
// found (joined), each wrapping ErrInvalid. Checks that need the other
// channels (promotion source exists, no cycles, unique refs) are NewSet's.
func (c *Channel) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w %q: %s", ErrInvalid, c.Name, fmt.Sprintf(format, args...)))
	}

	if !nameRE.MatchString(c.Name) {
		bad("name %q must be lower-case letters, digits and -, starting with a letter", c.Name)
	}

	if len(c.Refs) == 0 {
		bad("refs: at least one architecture is required")
	}
	for _, arch := range sortedKeys(c.Refs) {
		ref := c.Refs[arch]
		if !slices.Contains(knownArches, arch) {
			bad("refs: unknown architecture %q (known: %s)", arch, strings.Join(knownArches, ", "))
			continue
		}
		if err := ValidateRef(ref); err != nil {
			bad("refs.%s: %v", arch, err)
			continue
		}
		if want := "/" + arch + "/" + c.Name; !strings.HasSuffix(ref, want) {
			bad("refs.%s: %q must end in %q (refs are mxos/<major>/<arch>/<channel>)", arch, ref, want)
		}
	}

	if len(c.Publishers) == 0 {
		bad("publishers: at least one is required (e.g. release)")
	}
	for i, p := range c.Publishers {
		if err := validatePublisher(p); err != nil {
			bad("publishers[%d]: %v", i, err)
		} else if slices.Index(c.Publishers, p) < i {
			bad("publishers[%d]: %q is listed twice", i, p)
		}
	}

	if c.PromotesFrom != "" {
		switch {
		case !nameRE.MatchString(c.PromotesFrom):
			bad("promotes_from %q is not a channel name", c.PromotesFrom)
		case c.PromotesFrom == c.Name:
			bad("promotes_from: a channel cannot be promoted from itself")
		}
	}

	if n := c.StaticDeltas; n != nil && (*n < 0 || *n > MaxStaticDeltas) {
		bad("static_deltas %d must be between 0 and %d (previous releases that get a delta to each new one)", *n, MaxStaticDeltas)
	}
	if c.Threshold < 0 || c.Threshold > MaxThreshold {
		bad("threshold %d must be between 1 and %d (release signatures a release needs)", c.Threshold, MaxThreshold)
	}

	if _, err := rollout.ParseRamp(c.Rollout.Ramp); err != nil {
		errs = append(errs, fmt.Errorf("%w %q: rollout.ramp: %w", ErrInvalid, c.Name, err))
	}
	if t := c.Rollout.HaltThreshold; math.IsNaN(t) || t <= 0 || t > 1 {
		bad("rollout.halt_threshold %v must be a failure rate in (0, 1], e.g. 0.05", t)
	}
	if c.Rollout.MinSamples < 1 {
		bad("rollout.min_samples %d must be at least 1", c.Rollout.MinSamples)
	}
	if c.Rollout.Window <= 0 {
		bad("rollout.window %s must be positive, e.g. 24h", c.Rollout.Window)
	}

	type declared struct{ version, field string }
	var seen []declared
	declare := func(field, v string) bool {
		if _, err := rollout.ParseVersion(v); err != nil {
			bad("%s.version: %v", field, err)
			return false
		}
		for _, d := range seen {
			if cmp, _ := rollout.Compare(d.version, v); cmp == 0 {
				bad("%s.version %s is already declared in %s", field, v, d.field)
				return false
			}
		}
		seen = append(seen, declared{v, field})
		return true
	}
	for i, b := range c.Barriers {
		field := fmt.Sprintf("barriers[%d]", i)
		declare(field, b.Version)
		if strings.TrimSpace(b.Reason) == "" {
			bad("%s.reason is required: say why devices must stop at %s", field, b.Version)
		}
	}
	for i, d := range c.DeadEnds {
		field := fmt.Sprintf("dead_ends[%d]", i)
		ok := declare(field, d.Version)
		if strings.TrimSpace(d.Reason) == "" {
			bad("%s.reason is required: say why %s is a dead end", field, d.Version)
		}
		if d.Successor == "" {
			continue
		}
		if _, err := rollout.ParseVersion(d.Successor); err != nil {
			bad("%s.successor: %v", field, err)
		} else if cmp, _ := rollout.Compare(d.Successor, d.Version); ok && cmp <= 0 {
			bad("%s.successor %s must be newer than %s", field, d.Successor, d.Version)
		}
	}

	return join(errs)
}

// ValidateRef checks an OSTree ref name: fragments of [\w\d][-._\w\d]*
// joined by "/", as libostree accepts.
func ValidateRef(ref string) error {
	if ref == "" {
		return errors.New("empty OSTree ref")
	}
	if len(ref) > maxRefLen {
		return fmt.Errorf("OSTree ref is %d bytes, at most %d allowed", len(ref), maxRefLen)
	}
	for _, frag := range strings.Split(ref, "/") {
		if !refFragmentRE.MatchString(frag) {
			return fmt.Errorf("%q is not a valid OSTree ref (fragments of letters, digits, -._ joined by /)", ref)
		}
	}
	return nil
}

func validatePublisher(p string) error {
	if name, ok := strings.CutPrefix(p, tokenPrefix); ok {
		if !tokenNameRE.MatchString(name) {
			return fmt.Errorf("%q: token names are lower-case letters, digits and -._", p)
		}
		return nil
	}
	if p == "device" {
		return errors.New(`"device" cannot publish: devices only receive updates`)
	}
	if !slices.Contains(publisherRoles, p) {
		return fmt.Errorf("%q is neither a role (%s) nor token:<name>", p, strings.Join(publisherRoles, ", "))
	}
	return nil
}

// AllowsPublisher reports whether a caller holding role, authenticated with
// the token named token (may be empty), may publish into the channel.
func (c *Channel) AllowsPublisher(role, token string) bool {
	if role != "" && role != "device" && !strings.HasPrefix(role, tokenPrefix) && slices.Contains(c.Publishers, role) {
		return true
	}
	return token != "" && slices.Contains(c.Publishers, tokenPrefix+token)
}

// Arches returns the channel's architectures, sorted.
func (c *Channel) Arches() []string { return sortedKeys(c.Refs) }

// Ref returns the OSTree ref the channel follows on arch.
func (c *Channel) Ref(arch string) (string, bool) {
	r, ok := c.Refs[arch]
	return r, ok
}

// DefaultRamp parses the channel's default ramp.
func (c *Channel) DefaultRamp() (rollout.Ramp, error) {
	r, err := rollout.ParseRamp(c.Rollout.Ramp)
	if err != nil {
		return rollout.Ramp{}, fmt.Errorf("channel %q: %w", c.Name, err)
	}
	return r, nil
}

// HaltPolicy is the channel's auto-halt policy.
func (c *Channel) HaltPolicy() rollout.HaltPolicy {
	return rollout.HaltPolicy{
		Threshold:  c.Rollout.HaltThreshold,
		MinSamples: c.Rollout.MinSamples,
		Window:     c.Rollout.Window,
	}
}

// Graph returns the channel's barriers and dead ends for rollout.Decide.
func (c *Channel) Graph() rollout.Graph {
	var g rollout.Graph
	for _, b := range c.Barriers {
		g.Barriers = append(g.Barriers, b.Version)
	}
	for _, d := range c.DeadEnds {
		g.DeadEnds = append(g.DeadEnds, rollout.DeadEnd{Version: d.Version, Successor: d.Successor})
	}
	return g
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
