package server

import (
	"net/http"
	"strings"
	"time"
)

// parseHTTPDate parses the dates clients put in If-Modified-Since and
// If-Unmodified-Since, returning the time in UTC.
//
// Besides the three HTTP-date forms of RFC 9110 (via http.ParseTime), it
// accepts what libostree's curl fetcher sends:
//
//	g_date_time_format(t, "%a, %d %b %Y %H:%M:%S %Z")  →  "Mon, 23 Nov 2026 12:13:00 UTC"
//
// i.e. an IMF-fixdate whose zone is "UTC" instead of "GMT". %a and %b follow
// the client's locale, so on an es-MX machine the names may be Spanish
// ("lun, 23 nov 2026 …"); the weekday is redundant and ignored, and month
// abbreviations are matched in English and Spanish, ignoring case and a
// trailing dot.
func parseHTTPDate(s string) (time.Time, bool) {
	if t, ok := parseFixdate(s); ok {
		return t, true
	}
	if t, err := http.ParseTime(s); err == nil {
		return t.UTC(), true
	}
	return time.Time{}, false
}

// parseFixdate parses "<weekday>, DD Mon YYYY HH:MM:SS GMT|UTC".
func parseFixdate(s string) (time.Time, bool) {
	_, rest, ok := strings.Cut(s, ", ")
	if !ok {
		return time.Time{}, false
	}
	f := strings.Fields(rest)
	if len(f) != 5 {
		return time.Time{}, false
	}
	if f[4] != "GMT" && f[4] != "UTC" {
		return time.Time{}, false
	}
	day, ok1 := atoiN(f[0], 1, 2)
	month, ok2 := parseMonth(f[1])
	year, ok3 := atoiN(f[2], 4, 4)
	if !ok1 || !ok2 || !ok3 || len(f[3]) != 8 || f[3][2] != ':' || f[3][5] != ':' {
		return time.Time{}, false
	}
	hh, ok4 := atoiN(f[3][0:2], 2, 2)
	mm, ok5 := atoiN(f[3][3:5], 2, 2)
	ss, ok6 := atoiN(f[3][6:8], 2, 2)
	if !ok4 || !ok5 || !ok6 || hh > 23 || mm > 59 || ss > 60 {
		return time.Time{}, false
	}
	t := time.Date(year, month, day, hh, mm, ss, 0, time.UTC)
	if t.Day() != day { // e.g. 31 Feb: time.Date would normalise it
		return time.Time{}, false
	}
	return t, true
}

// atoiN parses an unsigned decimal of minLen..maxLen digits.
func atoiN(s string, minLen, maxLen int) (int, bool) {
	if len(s) < minLen || len(s) > maxLen {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// monthAbbrevs maps lower-case English and Spanish month abbreviations.
var monthAbbrevs = map[string]time.Month{
	"jan": time.January, "ene": time.January,
	"feb": time.February,
	"mar": time.March,
	"apr": time.April, "abr": time.April,
	"may": time.May,
	"jun": time.June,
	"jul": time.July,
	"aug": time.August, "ago": time.August,
	"sep": time.September, "sept": time.September, "set": time.September,
	"oct": time.October,
	"nov": time.November,
	"dec": time.December, "dic": time.December,
}

func parseMonth(s string) (time.Month, bool) {
	s = strings.TrimSuffix(s, ".")
	if len(s) < 3 || len(s) > 4 {
		return 0, false
	}
	var buf [4]byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	m, ok := monthAbbrevs[string(buf[:len(s)])]
	return m, ok
}
