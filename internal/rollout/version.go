package rollout

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadVersion is wrapped by every error about a malformed version.
var ErrBadVersion = errors.New("invalid release version")

// maxVersionLen bounds versions; the longest real one (e.g. an FCOS-style
// "43.20260217.2.1-rc.1") is far shorter.
const maxVersionLen = 64

// Version is a parsed release version; see ParseVersion.
type Version struct {
	raw  string
	nums []string // numeric components, no leading zeros
	pre  []string // pre-release identifiers, nil for a release
}

// ParseVersion parses a release version:
//
//	version = number *( "." number ) [ "-" pre ]
//	number  = "0" / %x31-39 *DIGIT          ; no leading zeros
//	pre     = ident *( "." ident )
//	ident   = 1*( ALPHA / DIGIT / "-" )     ; numeric idents: no leading zeros
//
// e.g. 10, 10.1, 10.0.1, 10.20260217.1, 10.1-rc.1. At most 64 bytes. No
// "v" prefix and no "+build" suffix: two spellings of one release must not
// both be publishable.
//
// Order: numbers compare numerically left to right, a missing number
// counts as 0 (10.1 == 10.1.0); a version with a pre-release is older than
// the same version without (10.1-rc.1 < 10.1); pre-release identifiers
// compare as in SemVer 2.0: numeric ones numerically, others in ASCII
// order, numeric before non-numeric, and a shorter list first when one is
// a prefix of the other (10.1-rc < 10.1-rc.1 < 10.1-rc.2 < 10.1-rc.10).
func ParseVersion(s string) (Version, error) {
	if s == "" {
		return Version{}, fmt.Errorf("%w: empty", ErrBadVersion)
	}
	if len(s) > maxVersionLen {
		return Version{}, fmt.Errorf("%w: %d bytes, at most %d allowed", ErrBadVersion, len(s), maxVersionLen)
	}
	core, pre, hasPre := strings.Cut(s, "-")
	v := Version{raw: s}
	for _, n := range strings.Split(core, ".") {
		switch {
		case n == "":
			return Version{}, fmt.Errorf("%w: %q has an empty number", ErrBadVersion, s)
		case !allDigits(n):
			return Version{}, fmt.Errorf("%w: %q: %q is not a number (versions look like 10.0.1 or 10.1-rc.1)", ErrBadVersion, s, n)
		case len(n) > 1 && n[0] == '0':
			return Version{}, fmt.Errorf("%w: %q: number %q has a leading zero", ErrBadVersion, s, n)
		}
		v.nums = append(v.nums, n)
	}
	if !hasPre {
		return v, nil
	}
	if pre == "" {
		return Version{}, fmt.Errorf("%w: %q has an empty pre-release after -", ErrBadVersion, s)
	}
	for _, id := range strings.Split(pre, ".") {
		switch {
		case id == "":
			return Version{}, fmt.Errorf("%w: %q has an empty pre-release identifier", ErrBadVersion, s)
		case strings.IndexFunc(id, notIdentRune) >= 0:
			return Version{}, fmt.Errorf("%w: %q: pre-release %q may hold only letters, digits and -", ErrBadVersion, s, id)
		case allDigits(id) && len(id) > 1 && id[0] == '0':
			return Version{}, fmt.Errorf("%w: %q: pre-release number %q has a leading zero", ErrBadVersion, s, id)
		}
		v.pre = append(v.pre, id)
	}
	return v, nil
}

func notIdentRune(r rune) bool {
	return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-')
}

// String returns the version as it was written.
func (v Version) String() string { return v.raw }

// IsPreRelease reports whether the version has a pre-release suffix.
func (v Version) IsPreRelease() bool { return v.pre != nil }

// Compare returns -1, 0 or +1 as v is older than, equal to or newer than w.
func (v Version) Compare(w Version) int {
	for i := range max(len(v.nums), len(w.nums)) {
		if c := compareNumeric(at(v.nums, i), at(w.nums, i)); c != 0 {
			return c
		}
	}
	switch {
	case v.pre == nil && w.pre == nil:
		return 0
	case v.pre == nil:
		return 1
	case w.pre == nil:
		return -1
	}
	for i := range min(len(v.pre), len(w.pre)) {
		a, b := v.pre[i], w.pre[i]
		an, bn := allDigits(a), allDigits(b)
		var c int
		switch {
		case an && bn:
			c = compareNumeric(a, b)
		case an:
			c = -1
		case bn:
			c = 1
		default:
			c = strings.Compare(a, b)
		}
		if c != 0 {
			return c
		}
	}
	return cmpInt(len(v.pre), len(w.pre))
}

func at(nums []string, i int) string {
	if i < len(nums) {
		return nums[i]
	}
	return "0"
}

// compareNumeric compares digit strings without leading zeros, of any length.
func compareNumeric(a, b string) int {
	if c := cmpInt(len(a), len(b)); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Compare parses a and b and returns -1, 0 or +1 as a is older than, equal
// to or newer than b. A malformed version is an error wrapping
// ErrBadVersion, never an order.
func Compare(a, b string) (int, error) {
	va, err := ParseVersion(a)
	if err != nil {
		return 0, err
	}
	vb, err := ParseVersion(b)
	if err != nil {
		return 0, err
	}
	return va.Compare(vb), nil
}
