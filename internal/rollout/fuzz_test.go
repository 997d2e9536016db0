package rollout

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func FuzzParseRamp(f *testing.F) {
	for _, s := range []string{
		"100%", "1%,10%@24h,50%@48h,100%@72h", "0.5%,2.25%@1h30m,100%@36h", "1%@0,100%@1.5h",
		"", ",", "1%,", "@", "%", "1%@", "99.99%,100%@1s", "1%,100%@9223372036854775807ns", "1%,100%@1e9h",
	} {
		f.Add(s)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRamp(s)
		if err != nil {
			if !errors.Is(err, ErrBadRamp) {
				t.Fatalf("ParseRamp(%q) error %v does not wrap ErrBadRamp", s, err)
			}
			return
		}
		again, err := ParseRamp(r.String())
		if err != nil || !slices.Equal(again.Steps(), r.Steps()) {
			t.Fatalf("ParseRamp(%q): String %q does not round-trip: %v", s, r.String(), err)
		}
		prev := 0.0
		for _, st := range r.Steps() {
			f := r.FractionAt(start, start.Add(st.Offset))
			if f < prev || f <= 0 || f > 1 {
				t.Fatalf("ParseRamp(%q): fraction %v at +%s after %v", s, f, st.Offset, prev)
			}
			prev = f
		}
		if r.FractionAt(start, start.Add(r.Duration())) != 1 {
			t.Fatalf("ParseRamp(%q) does not reach 100%%", s)
		}
	})
}

func FuzzCompare(f *testing.F) {
	for _, p := range [][2]string{
		{"10", "10.0"}, {"10.0.1", "10.0.2"}, {"10.1-rc.1", "10.1"}, {"10.1-rc.10", "10.1-rc.9"},
		{"", "1"}, {"01", "1"}, {"1.-", "1"}, {"1-a.b.c", "1-a.b"}, {"99999999999999999999", "1"},
	} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ab, errA := Compare(a, b)
		ba, errB := Compare(b, a)
		if (errA == nil) != (errB == nil) {
			t.Fatalf("Compare(%q, %q) and back disagree on errors: %v / %v", a, b, errA, errB)
		}
		if errA != nil {
			if !errors.Is(errA, ErrBadVersion) {
				t.Fatalf("Compare(%q, %q) error %v does not wrap ErrBadVersion", a, b, errA)
			}
			return
		}
		if ab != -ba || ab < -1 || ab > 1 {
			t.Fatalf("Compare(%q, %q) = %d but Compare(%q, %q) = %d", a, b, ab, b, a, ba)
		}
		if c, _ := Compare(a, a); c != 0 {
			t.Fatalf("Compare(%q, %q) = %d", a, a, c)
		}
	})
}
