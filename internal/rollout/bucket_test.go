package rollout

import (
	"fmt"
	"math"
	"testing"
)

// The bucket is a wire format: these values were computed independently
// (Python hashlib, from the definition in the package documentation) and
// must never change.
func TestBucketGolden(t *testing.T) {
	golden := []struct {
		device, rollout string
		want            float64
	}{
		{"device-000000", "stable/10.1", 0.746453871780249},
		{"device-000001", "stable/10.1", 0.9224243653292016},
		{"ab", "c", 0.5617103990196096},
		{"a", "bc", 0.48975193498417535},
		{"", "", 0.08213277208079639},
		{"7f3c2a9e-5b1d-4c8e-9a0f-2d6b8e1c4f70", "3f1e8a2c-rollout", 0.18539366242792588},
		{"escuela-primaria-benito-juarez-lab-12", "edu/10.2", 0.8339471837420154},
		{"ñandú", "estable/10.2-rc.1", 0.23563432326254996},
	}
	for _, g := range golden {
		if got := Bucket(g.device, g.rollout); got != g.want {
			t.Errorf("Bucket(%q, %q) = %v, want %v", g.device, g.rollout, got, g.want)
		}
	}
}

func TestBucketLengthPrefix(t *testing.T) {
	if Bucket("ab", "c") == Bucket("a", "bc") {
		t.Fatal(`("ab","c") and ("a","bc") share a bucket: ids are not length-prefixed`)
	}
	if Bucket("x", "") == Bucket("", "x") {
		t.Fatal(`("x","") and ("","x") share a bucket`)
	}
}

func TestEligible(t *testing.T) {
	for _, c := range []struct {
		bucket, fraction float64
		want             bool
	}{
		{0, 0, false},
		{0, 0.01, true},
		{0.5, 0.5, false}, // strictly below
		{0.4999, 0.5, true},
		{math.Nextafter(1, 0), 1, true}, // 100% admits every bucket
	} {
		if got := Eligible(c.bucket, c.fraction); got != c.want {
			t.Errorf("Eligible(%v, %v) = %v, want %v", c.bucket, c.fraction, got, c.want)
		}
	}
}

const (
	fleetSize = 100_000
	rolloutID = "stable/10.1"
)

func fleet(rollout string) []float64 {
	b := make([]float64, fleetSize)
	for i := range b {
		b[i] = Bucket(fmt.Sprintf("device-%06d", i), rollout)
	}
	return b
}

// At every step of the ramp the share of a 100,000-device fleet offered the
// release is within ±1 point of the step's fraction.
func TestRampFractionOverFleet(t *testing.T) {
	buckets := fleet(rolloutID)
	for _, b := range buckets {
		if b < 0 || b >= 1 {
			t.Fatalf("bucket %v outside [0, 1)", b)
		}
	}
	ramp, err := ParseRamp("1%,10%@24h,50%@48h,100%@72h")
	if err != nil {
		t.Fatal(err)
	}
	extra := []float64{0.001, 0.05, 0.25, 0.75, 0.99}
	fractions := extra
	for _, s := range ramp.Steps() {
		fractions = append(fractions, s.Fraction())
	}
	for _, f := range fractions {
		n := 0
		for _, b := range buckets {
			if Eligible(b, f) {
				n++
			}
		}
		got := float64(n) / fleetSize
		if math.Abs(got-f) > 0.01 {
			t.Errorf("at %v%%: %.3f%% of the fleet eligible, want within ±1 point", f*100, got*100)
		}
		t.Logf("at %6.2f%%: %6.3f%% eligible", f*100, got*100)
	}
}

// The same device gets the same answer on every check, from a fresh
// computation each time.
func TestBucketStable(t *testing.T) {
	first := fleet(rolloutID)
	for i := 0; i < fleetSize; i += 97 {
		id := fmt.Sprintf("device-%06d", i)
		for range 3 {
			if got := Bucket(id, rolloutID); got != first[i] {
				t.Fatalf("Bucket(%q) changed: %v then %v", id, first[i], got)
			}
		}
	}
}

// Raising the fraction never drops a device that was eligible.
func TestRaisingRampNeverDrops(t *testing.T) {
	buckets := fleet(rolloutID)
	eligible := make([]bool, fleetSize)
	prev := 0
	for bp := 1; bp <= fullBasisPoints; bp += 37 {
		f := Step{BasisPoints: bp}.Fraction()
		n := 0
		for i, b := range buckets {
			now := Eligible(b, f)
			if eligible[i] && !now {
				t.Fatalf("device-%06d dropped when the ramp rose to %v", i, f)
			}
			eligible[i] = now
			if now {
				n++
			}
		}
		if n < prev {
			t.Fatalf("eligible set shrank from %d to %d at %v", prev, n, f)
		}
		prev = n
	}
}

// Two rollouts pick their early devices independently: at 10% each, about
// 10%·10% = 1% of the fleet is early in both.
func TestBucketsIndependentAcrossRollouts(t *testing.T) {
	a, b := fleet("stable/10.1"), fleet("stable/10.2")
	both, inA, inB := 0, 0, 0
	for i := range a {
		ea, eb := Eligible(a[i], 0.1), Eligible(b[i], 0.1)
		if ea {
			inA++
		}
		if eb {
			inB++
		}
		if ea && eb {
			both++
		}
	}
	got := float64(both) / fleetSize
	t.Logf("in A %d, in B %d, in both %d (%.3f%%)", inA, inB, both, got*100)
	// σ ≈ sqrt(0.01·0.99/1e5) ≈ 0.03 points; allow 0.2.
	if math.Abs(got-0.01) > 0.002 {
		t.Errorf("%.3f%% early in both rollouts, want about 1%%", got*100)
	}
}
