package rollout

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrBadRamp is wrapped by every error about a malformed ramp.
var ErrBadRamp = errors.New("invalid rollout ramp")

// Limits on a ramp. They keep signed metadata small and catch typos such as
// "100%@7200h"; nobody rolls a release out over more than a year.
const (
	MaxSteps  = 64
	MaxOffset = 366 * 24 * time.Hour
	// maxRampLen bounds the text ParseRamp looks at, so hostile input costs little.
	maxRampLen = 4096
	// fullBasisPoints is 100%.
	fullBasisPoints = 10000
)

// Step is one stage of a ramp: from Offset after the rollout's start, the
// release is offered to BasisPoints/10000 of the fleet.
type Step struct {
	// BasisPoints is the share of devices in hundredths of a percent, 1 to
	// 10000. An integer keeps the ramp exact when it is stored, printed and
	// signed.
	BasisPoints int
	// Offset from the rollout's start; whole seconds.
	Offset time.Duration
}

// Fraction is the step's share of devices in (0, 1].
func (s Step) Fraction() float64 { return float64(s.BasisPoints) / fullBasisPoints }

// Ramp is a validated list of steps. The zero Ramp has no steps and offers
// nothing; every other Ramp comes from ParseRamp or NewRamp and is valid:
// the first step is at offset 0, offsets strictly increase, shares never
// decrease and the last step is 100%.
type Ramp struct {
	steps []Step
}

// NewRamp validates steps and returns them as a Ramp.
func NewRamp(steps []Step) (Ramp, error) {
	if len(steps) == 0 {
		return Ramp{}, fmt.Errorf("%w: no steps", ErrBadRamp)
	}
	if len(steps) > MaxSteps {
		return Ramp{}, fmt.Errorf("%w: %d steps, at most %d allowed", ErrBadRamp, len(steps), MaxSteps)
	}
	for i, s := range steps {
		n := i + 1
		switch {
		case s.BasisPoints <= 0:
			return Ramp{}, fmt.Errorf("%w: step %d: share must be above 0%%", ErrBadRamp, n)
		case s.BasisPoints > fullBasisPoints:
			return Ramp{}, fmt.Errorf("%w: step %d: share %s is above 100%%", ErrBadRamp, n, formatPercent(s.BasisPoints))
		case s.Offset < 0:
			return Ramp{}, fmt.Errorf("%w: step %d: negative offset %s", ErrBadRamp, n, s.Offset)
		case s.Offset%time.Second != 0:
			return Ramp{}, fmt.Errorf("%w: step %d: offset %s is not whole seconds", ErrBadRamp, n, s.Offset)
		case s.Offset > MaxOffset:
			return Ramp{}, fmt.Errorf("%w: step %d: offset %s is beyond the %s limit", ErrBadRamp, n, formatOffset(s.Offset), formatOffset(MaxOffset))
		}
		if i == 0 {
			if s.Offset != 0 {
				// A delayed start is the rollout's start time, not a ramp step;
				// otherwise an "active" rollout would offer nothing.
				return Ramp{}, fmt.Errorf("%w: step 1 starts the rollout, its offset must be 0, not %s", ErrBadRamp, formatOffset(s.Offset))
			}
			continue
		}
		prev := steps[i-1]
		if s.Offset <= prev.Offset {
			return Ramp{}, fmt.Errorf("%w: step %d: offset %s is not after step %d's %s", ErrBadRamp, n, formatOffset(s.Offset), i, formatOffset(prev.Offset))
		}
		if s.BasisPoints < prev.BasisPoints {
			return Ramp{}, fmt.Errorf("%w: step %d: %s is below step %d's %s; a ramp never shrinks", ErrBadRamp, n, formatPercent(s.BasisPoints), i, formatPercent(prev.BasisPoints))
		}
	}
	if last := steps[len(steps)-1]; last.BasisPoints != fullBasisPoints {
		return Ramp{}, fmt.Errorf("%w: last step is %s, a ramp must end at 100%%", ErrBadRamp, formatPercent(last.BasisPoints))
	}
	return Ramp{steps: append([]Step(nil), steps...)}, nil
}

// ParseRamp parses a ramp such as "1%,10%@24h,50%@48h,100%@72h".
//
// Grammar (spaces around steps are ignored):
//
//	ramp    = step *( "," step )
//	step    = percent [ "@" offset ]     ; only the first step may omit "@"
//	percent = 1*3DIGIT [ "." 1*2DIGIT ] "%"
//	offset  = Go duration in h, m, s     ; e.g. 24h, 90m, 1h30m, 0
//
// The first step is at offset 0, offsets strictly increase, percentages
// never decrease, lie in (0%, 100%] and the last is 100%.
func ParseRamp(s string) (Ramp, error) {
	if len(s) > maxRampLen {
		return Ramp{}, fmt.Errorf("%w: %d bytes, at most %d allowed", ErrBadRamp, len(s), maxRampLen)
	}
	if strings.TrimSpace(s) == "" {
		return Ramp{}, fmt.Errorf("%w: empty", ErrBadRamp)
	}
	parts := strings.Split(s, ",")
	if len(parts) > MaxSteps {
		return Ramp{}, fmt.Errorf("%w: %d steps, at most %d allowed", ErrBadRamp, len(parts), MaxSteps)
	}
	steps := make([]Step, 0, len(parts))
	for i, part := range parts {
		step, err := parseStep(i, strings.TrimSpace(part))
		if err != nil {
			return Ramp{}, err
		}
		steps = append(steps, step)
	}
	return NewRamp(steps)
}

func parseStep(i int, s string) (Step, error) {
	n := i + 1
	if s == "" {
		return Step{}, fmt.Errorf("%w: step %d is empty", ErrBadRamp, n)
	}
	pct, off, hasAt := strings.Cut(s, "@")
	bp, err := parsePercent(pct)
	if err != nil {
		return Step{}, fmt.Errorf("%w: step %d %q: %w", ErrBadRamp, n, s, err)
	}
	if !hasAt {
		if i > 0 {
			return Step{}, fmt.Errorf("%w: step %d %q: needs an offset from the start, e.g. %s@24h", ErrBadRamp, n, s, pct)
		}
		return Step{BasisPoints: bp}, nil
	}
	d, err := parseOffset(off)
	if err != nil {
		return Step{}, fmt.Errorf("%w: step %d %q: %w", ErrBadRamp, n, s, err)
	}
	return Step{BasisPoints: bp, Offset: d}, nil
}

// parsePercent turns "12.5%" into 1250 basis points, without floating point.
func parsePercent(s string) (int, error) {
	num, ok := strings.CutSuffix(s, "%")
	if !ok {
		return 0, fmt.Errorf("share %q must be a percentage ending in %%", s)
	}
	whole, frac, hasDot := strings.Cut(num, ".")
	if whole == "" || len(whole) > 3 || !allDigits(whole) {
		return 0, fmt.Errorf("share %q is not a percentage like 10%% or 2.5%%", s)
	}
	if hasDot && (frac == "" || !allDigits(frac)) {
		return 0, fmt.Errorf("share %q is not a percentage like 10%% or 2.5%%", s)
	}
	if len(frac) > 2 {
		return 0, fmt.Errorf("share %q has more than two decimals", s)
	}
	w, _ := strconv.Atoi(whole) // at most 3 digits, checked above
	f := 0
	if frac != "" {
		f, _ = strconv.Atoi(frac)
		if len(frac) == 1 {
			f *= 10
		}
	}
	bp := w*100 + f
	switch {
	case bp == 0:
		return 0, fmt.Errorf("share %s must be above 0%%", s)
	case bp > fullBasisPoints:
		return 0, fmt.Errorf("share %s is above 100%%", s)
	}
	return bp, nil
}

func parseOffset(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("empty offset after @")
	}
	// ParseDuration also knows ms, us and ns and signs; a ramp needs none of
	// them, and refusing them keeps offsets readable.
	d, err := time.ParseDuration(s)
	if err != nil || strings.IndexFunc(s, notOffsetRune) >= 0 || strings.Contains(s, "ms") {
		return 0, fmt.Errorf("offset %q: use hours, minutes and seconds, e.g. 24h or 1h30m", s)
	}
	if d%time.Second != 0 {
		return 0, fmt.Errorf("offset %q is not whole seconds", s)
	}
	if d > MaxOffset {
		return 0, fmt.Errorf("offset %q is beyond the %s limit", s, formatOffset(MaxOffset))
	}
	return d, nil
}

func notOffsetRune(r rune) bool { return !strings.ContainsRune("0123456789.hms", r) }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// String prints the ramp in ParseRamp's canonical form: the first step
// without "@", shares with at most two decimals, offsets in h/m/s, e.g.
// "1%,10%@24h,50%@48h,100%@72h". The zero Ramp prints as "".
func (r Ramp) String() string {
	var b strings.Builder
	for i, s := range r.steps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(formatPercent(s.BasisPoints))
		if i > 0 {
			b.WriteByte('@')
			b.WriteString(formatOffset(s.Offset))
		}
	}
	return b.String()
}

// MarshalText implements encoding.TextMarshaler with the String form.
func (r Ramp) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseRamp.
func (r *Ramp) UnmarshalText(b []byte) error {
	p, err := ParseRamp(string(b))
	if err != nil {
		return err
	}
	*r = p
	return nil
}

func formatPercent(bp int) string {
	whole, frac := bp/100, bp%100
	switch {
	case frac == 0:
		return strconv.Itoa(whole) + "%"
	case frac%10 == 0:
		return fmt.Sprintf("%d.%d%%", whole, frac/10)
	default:
		return fmt.Sprintf("%d.%02d%%", whole, frac)
	}
}

// formatOffset prints whole-second durations as ParseDuration reads them,
// without zero units: 72h, 1h30m, 90s → 1m30s. Anything else (only in
// error messages) prints as time.Duration does.
func formatOffset(d time.Duration) string {
	if d <= 0 || d%time.Second != 0 {
		return d.String()
	}
	var b strings.Builder
	h, m, s := d/time.Hour, (d%time.Hour)/time.Minute, (d%time.Minute)/time.Second
	if h > 0 {
		b.WriteString(strconv.FormatInt(int64(h), 10) + "h")
	}
	if m > 0 {
		b.WriteString(strconv.FormatInt(int64(m), 10) + "m")
	}
	if s > 0 {
		b.WriteString(strconv.FormatInt(int64(s), 10) + "s")
	}
	return b.String()
}

// Steps returns a copy of the ramp's steps.
func (r Ramp) Steps() []Step { return append([]Step(nil), r.steps...) }

// IsZero reports whether the ramp has no steps.
func (r Ramp) IsZero() bool { return len(r.steps) == 0 }

// Duration is the offset of the last step: how long after the start the
// release reaches every device.
func (r Ramp) Duration() time.Duration {
	if len(r.steps) == 0 {
		return 0
	}
	return r.steps[len(r.steps)-1].Offset
}

// StepAt returns the index of the step in force at now for a rollout that
// started at start, or -1 before the start (and for the zero Ramp).
func (r Ramp) StepAt(start, now time.Time) int {
	if len(r.steps) == 0 || now.Before(start) {
		return -1
	}
	elapsed := now.Sub(start) // saturates instead of overflowing
	i := 0
	for j, s := range r.steps {
		if s.Offset <= elapsed {
			i = j
		}
	}
	return i
}

// FractionAt is the share of devices offered the release at now: the share
// of the latest step whose offset has passed, 0 before the start. It is a
// step function, never interpolated (see the package documentation).
func (r Ramp) FractionAt(start, now time.Time) float64 {
	i := r.StepAt(start, now)
	if i < 0 {
		return 0
	}
	return r.steps[i].Fraction()
}

// NextChange returns when the fraction next changes after now: the start
// itself before the rollout begins, the next step's time while ramping, and
// false once the last step is reached. Signed rollout metadata can expire
// then, and caches can be kept until then.
func (r Ramp) NextChange(start, now time.Time) (time.Time, bool) {
	i := r.StepAt(start, now)
	if len(r.steps) == 0 || i == len(r.steps)-1 {
		return time.Time{}, false
	}
	if i < 0 {
		return start, true
	}
	return start.Add(r.steps[i+1].Offset), true
}

// ShiftStart returns the start to use after a pause from pausedAt to
// resumedAt, so the ramp resumes at the step it was paused in instead of
// jumping ahead by the paused time. A resume before the pause (clock skew)
// leaves start unchanged.
func ShiftStart(start, pausedAt, resumedAt time.Time) time.Time {
	if !resumedAt.After(pausedAt) {
		return start
	}
	return start.Add(resumedAt.Sub(pausedAt))
}
