package rollout

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseRamp(t *testing.T) {
	h := time.Hour
	for _, c := range []struct {
		in        string
		want      []Step
		canonical string // "" means same as in
	}{
		{"100%", []Step{{10000, 0}}, ""},
		{"1%,10%@24h,50%@48h,100%@72h", []Step{{100, 0}, {1000, 24 * h}, {5000, 48 * h}, {10000, 72 * h}}, ""},
		{"5%,25%@48h,100%@120h", []Step{{500, 0}, {2500, 48 * h}, {10000, 120 * h}}, ""},
		{"0.5%,2.25%@1h30m,100%@36h", []Step{{50, 0}, {225, 90 * time.Minute}, {10000, 36 * h}}, ""},
		{"1%@0,100%@1h", []Step{{100, 0}, {10000, h}}, "1%,100%@1h"},
		{"1%@0h, 10%@90m , 100%@1.5h2m", []Step{{100, 0}, {1000, 90 * time.Minute}, {10000, 92 * time.Minute}}, "1%,10%@1h30m,100%@1h32m"},
		{"10%,10%@24h,100%@48h", []Step{{1000, 0}, {1000, 24 * h}, {10000, 48 * h}}, ""}, // a hold is allowed
		{"1.50%,100%@90s", []Step{{150, 0}, {10000, 90 * time.Second}}, "1.5%,100%@1m30s"},
		{"050%,100%@1h", []Step{{5000, 0}, {10000, h}}, "50%,100%@1h"},
		{"100.00%", []Step{{10000, 0}}, "100%"},
	} {
		r, err := ParseRamp(c.in)
		if err != nil {
			t.Errorf("ParseRamp(%q): %v", c.in, err)
			continue
		}
		if !slices.Equal(r.Steps(), c.want) {
			t.Errorf("ParseRamp(%q) = %v, want %v", c.in, r.Steps(), c.want)
		}
		want := c.canonical
		if want == "" {
			want = c.in
		}
		if r.String() != want {
			t.Errorf("ParseRamp(%q).String() = %q, want %q", c.in, r.String(), want)
		}
		again, err := ParseRamp(r.String())
		if err != nil || !slices.Equal(again.Steps(), r.Steps()) {
			t.Errorf("round trip of %q: %v, %v", r.String(), again.Steps(), err)
		}
	}
}

func TestParseRampErrors(t *testing.T) {
	for _, c := range []struct{ in, msg string }{
		{"", "empty"},
		{"   ", "empty"},
		{"10", `must be a percentage ending in %`},
		{"0.1,100%@1h", `must be a percentage ending in %`},
		{"x%", "is not a percentage"},
		{"-5%,100%@1h", "is not a percentage"},
		{"+5%,100%@1h", "is not a percentage"},
		{"1e2%", "is not a percentage"},
		{"1.%,100%@1h", "is not a percentage"},
		{".5%,100%@1h", "is not a percentage"},
		{"1000%", "is not a percentage"},
		{"1.234%,100%@1h", "more than two decimals"},
		{"0%,100%@1h", "must be above 0%"},
		{"0.00%,100%@1h", "must be above 0%"},
		{"101%", "above 100%"},
		{"100.01%", "above 100%"},
		{"1%,,100%@1h", "step 2 is empty"},
		{"1%,100%@1h,", "step 3 is empty"},
		{",100%", "step 1 is empty"},
		{"1%,100%", "step 2 \"100%\": needs an offset"},
		{"1%,100%@", "empty offset after @"},
		{"1%,100%@1d", `offset "1d": use hours, minutes and seconds`},
		{"1%,100%@24", `offset "24": use hours`},
		{"1%,100%@-1h", `offset "-1h": use hours`},
		{"1%,100%@+1h", `offset "+1h": use hours`},
		{"1%,100%@10ms", `offset "10ms": use hours`},
		{"1%,100%@1h@2h", `offset "1h@2h": use hours`},
		{"1%,100%@1.5s", "not whole seconds"},
		{"1%,100%@9000h", "beyond the 8784h limit"},
		{"1%@1h,100%@2h", "step 1 starts the rollout, its offset must be 0, not 1h"},
		{"1%,10%@24h,50%@24h,100%@72h", "step 3: offset 24h is not after step 2's 24h"},
		{"1%,10%@48h,50%@24h,100%@72h", "step 3: offset 24h is not after step 2's 48h"},
		{"1%,10%@24h,5%@48h,100%@72h", "step 3: 5% is below step 2's 10%; a ramp never shrinks"},
		{"1%,50%@24h", "last step is 50%, a ramp must end at 100%"},
		{"50%", "last step is 50%"},
		{strings.Repeat("1%,", 70) + "100%@1h", "at most 64 allowed"},
		{strings.Repeat(" ", 5000), "at most 4096 allowed"},
	} {
		_, err := ParseRamp(c.in)
		if err == nil {
			t.Errorf("ParseRamp(%q) succeeded, want error containing %q", c.in, c.msg)
			continue
		}
		if !errors.Is(err, ErrBadRamp) {
			t.Errorf("ParseRamp(%q) = %v, does not wrap ErrBadRamp", c.in, err)
		}
		if !strings.Contains(err.Error(), c.msg) {
			t.Errorf("ParseRamp(%q) = %q, want it to contain %q", c.in, err, c.msg)
		}
	}
}

func TestNewRampErrors(t *testing.T) {
	for _, c := range []struct {
		steps []Step
		msg   string
	}{
		{nil, "no steps"},
		{[]Step{{-1, 0}, {10000, time.Hour}}, "above 0%"},
		{[]Step{{100, -time.Hour}, {10000, time.Hour}}, "negative offset"},
		{[]Step{{100, 0}, {10000, time.Hour + time.Millisecond}}, "not whole seconds"},
		{[]Step{{100, 0}, {20000, time.Hour}}, "above 100%"},
		{[]Step{{100, 0}, {10000, MaxOffset + time.Hour}}, "beyond"},
	} {
		_, err := NewRamp(c.steps)
		if !errors.Is(err, ErrBadRamp) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("NewRamp(%v) = %v, want ErrBadRamp containing %q", c.steps, err, c.msg)
		}
	}
	// NewRamp copies its input.
	in := []Step{{10000, 0}}
	r, err := NewRamp(in)
	if err != nil {
		t.Fatal(err)
	}
	in[0].BasisPoints = 1
	if r.Steps()[0].BasisPoints != 10000 {
		t.Fatal("NewRamp kept a reference to its input")
	}
}

func TestFractionAt(t *testing.T) {
	r, err := ParseRamp("1%,10%@24h,50%@48h,100%@72h")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		at       time.Duration
		fraction float64
		step     int
	}{
		{-time.Second, 0, -1},
		{0, 0.01, 0},
		{23*time.Hour + 59*time.Minute, 0.01, 0},
		{24 * time.Hour, 0.10, 1}, // a step applies from its offset on
		{36 * time.Hour, 0.10, 1}, // step, not interpolation
		{48 * time.Hour, 0.50, 2},
		{72*time.Hour - time.Nanosecond, 0.50, 2},
		{72 * time.Hour, 1, 3},
		{10000 * time.Hour, 1, 3},
	} {
		now := start.Add(c.at)
		if got := r.FractionAt(start, now); got != c.fraction {
			t.Errorf("FractionAt(+%s) = %v, want %v", c.at, got, c.fraction)
		}
		if got := r.StepAt(start, now); got != c.step {
			t.Errorf("StepAt(+%s) = %d, want %d", c.at, got, c.step)
		}
	}
	// Far-apart times saturate rather than overflow.
	if got := r.FractionAt(time.Time{}, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)); got != 1 {
		t.Errorf("FractionAt over centuries = %v, want 1", got)
	}
	// Time zones do not matter, only instants.
	mx := time.FixedZone("CST", -6*3600)
	if got := r.FractionAt(start.In(mx), start.Add(24*time.Hour)); got != 0.10 {
		t.Errorf("FractionAt across zones = %v", got)
	}
	var zero Ramp
	if zero.FractionAt(start, start.Add(time.Hour)) != 0 || zero.StepAt(start, start) != -1 || !zero.IsZero() || zero.Duration() != 0 {
		t.Error("zero Ramp must offer nothing")
	}
	if r.Duration() != 72*time.Hour {
		t.Errorf("Duration = %s", r.Duration())
	}
}

func TestNextChange(t *testing.T) {
	r, _ := ParseRamp("1%,10%@24h,100%@72h")
	start := time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		at   time.Duration
		next time.Duration
		ok   bool
	}{
		{-time.Hour, 0, true},
		{0, 24 * time.Hour, true},
		{30 * time.Hour, 72 * time.Hour, true},
		{72 * time.Hour, 0, false},
	} {
		got, ok := r.NextChange(start, start.Add(c.at))
		if ok != c.ok || (ok && !got.Equal(start.Add(c.next))) {
			t.Errorf("NextChange(+%s) = %v, %v; want +%s, %v", c.at, got, ok, c.next, c.ok)
		}
	}
	if _, ok := (Ramp{}).NextChange(start, start); ok {
		t.Error("zero Ramp has no next change")
	}
}

func TestShiftStart(t *testing.T) {
	r, _ := ParseRamp("1%,10%@24h,100%@72h")
	start := time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC)
	paused := start.Add(20 * time.Hour) // at 1%
	resumed := paused.Add(48 * time.Hour)
	s := ShiftStart(start, paused, resumed)
	if got := r.FractionAt(s, resumed); got != 0.01 {
		t.Errorf("after resume the ramp is at %v, want 0.01 (where it paused)", got)
	}
	if got := r.FractionAt(s, resumed.Add(4*time.Hour)); got != 0.10 {
		t.Errorf("4h after resume the ramp is at %v, want 0.10", got)
	}
	if !ShiftStart(start, resumed, paused).Equal(start) {
		t.Error("a resume before the pause must not move the start")
	}
}

func TestRampText(t *testing.T) {
	var r Ramp
	if err := r.UnmarshalText([]byte("1%,100%@1h")); err != nil {
		t.Fatal(err)
	}
	b, err := r.MarshalText()
	if err != nil || string(b) != "1%,100%@1h" {
		t.Fatalf("MarshalText = %q, %v", b, err)
	}
	if err := r.UnmarshalText([]byte("oops")); !errors.Is(err, ErrBadRamp) {
		t.Fatalf("UnmarshalText(oops) = %v", err)
	}
	if r.String() != "1%,100%@1h" {
		t.Fatal("a failed UnmarshalText changed the ramp")
	}
}
