package rollout

import (
	"errors"
	"strings"
	"testing"
)

func TestCompare(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"10", "10", 0},
		{"10.0.1", "10.0.1", 0},
		{"10.1", "10.1.0", 0}, // missing numbers count as 0
		{"10", "10.0.0.0", 0},
		{"10.0.1", "10.0.2", -1},
		{"10.0.10", "10.0.9", 1}, // numeric, not lexical
		{"10.1", "10.0.99", 1},
		{"9.9", "10", -1},
		{"10.0.1", "10.0", 1},
		{"43.20260217.2.1", "43.20260217.2.0", 1},
		{"1.99999999999999999999999", "1.100000000000000000000000", -1}, // bigger than uint64
		{"10.1-rc.1", "10.1", -1}, // pre-release before release
		{"10.1", "10.1-rc.1", 1},
		{"10.1-rc.1", "10.1.0-rc.1", 0},
		{"10.1-rc.1", "10.1-rc.2", -1},
		{"10.1-rc.2", "10.1-rc.10", -1},
		{"10.1-rc", "10.1-rc.1", -1}, // shorter list first
		{"10.1-alpha", "10.1-beta", -1},
		{"10.1-beta", "10.1-rc", -1},
		{"10.1-1", "10.1-alpha", -1},  // numeric before alphanumeric
		{"10.1-rc-2", "10.1-rc.2", 1}, // "rc-2" > "rc" in ASCII
		{"10.1-RC", "10.1-rc", -1},    // ASCII order
		{"10.0.9", "10.1-rc.1", -1},
		{"0", "0.0.1", -1},
	} {
		got, err := Compare(c.a, c.b)
		if err != nil || got != c.want {
			t.Errorf("Compare(%q, %q) = %d, %v; want %d", c.a, c.b, got, err, c.want)
		}
		if back, _ := Compare(c.b, c.a); back != -c.want {
			t.Errorf("Compare(%q, %q) = %d, not the opposite of %d", c.b, c.a, back, c.want)
		}
	}
}

func TestCompareErrors(t *testing.T) {
	for _, c := range []struct{ v, msg string }{
		{"", "empty"},
		{"v10", `"v10" is not a number`},
		{"10.", "empty number"},
		{".10", "empty number"},
		{"10..1", "empty number"},
		{"10.01", `number "01" has a leading zero`},
		{"010", "leading zero"},
		{"10.a", "is not a number"},
		{"10.1+build.5", "is not a number"},
		{"10 .1", "is not a number"},
		{"-10", "empty number"},
		{"10.1-", "empty pre-release after -"},
		{"10.1-rc..1", "empty pre-release identifier"},
		{"10.1-rc.", "empty pre-release identifier"},
		{"10.1-rc.01", `pre-release number "01" has a leading zero`},
		{"10.1-rc_1", "only letters, digits and -"},
		{"10.1-ñ", "only letters, digits and -"},
		{"1" + strings.Repeat(".1", 40), "at most 64 allowed"},
	} {
		_, err := Compare(c.v, "10")
		if !errors.Is(err, ErrBadVersion) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("Compare(%q, 10) = %v; want ErrBadVersion containing %q", c.v, err, c.msg)
		}
		if _, err := Compare("10", c.v); !errors.Is(err, ErrBadVersion) {
			t.Errorf("Compare(10, %q) = %v; want ErrBadVersion", c.v, err)
		}
	}
}

func TestParseVersion(t *testing.T) {
	v, err := ParseVersion("10.1-rc.1")
	if err != nil || v.String() != "10.1-rc.1" || !v.IsPreRelease() {
		t.Fatalf("ParseVersion = %v, %v", v, err)
	}
	// "10.1-rc-1": the first "-" starts the pre-release, later ones are part of it.
	v, err = ParseVersion("10.1-rc-1")
	if err != nil || !v.IsPreRelease() {
		t.Fatalf("ParseVersion(10.1-rc-1) = %v, %v", v, err)
	}
	if v, _ := ParseVersion("10.1"); v.IsPreRelease() {
		t.Fatal("10.1 is not a pre-release")
	}
}
