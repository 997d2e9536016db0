package server

import (
	"testing"
	"time"
)

func TestParseHTTPDate(t *testing.T) {
	want := time.Date(2026, 11, 23, 12, 13, 0, 0, time.UTC)
	tests := []struct {
		name, in string
		ok       bool
		want     time.Time
	}{
		{"imf-fixdate", "Mon, 23 Nov 2026 12:13:00 GMT", true, want},
		{"libostree-utc", "Mon, 23 Nov 2026 12:13:00 UTC", true, want},
		{"rfc850", "Monday, 23-Nov-26 12:13:00 GMT", true, want},
		{"asctime", "Mon Nov 23 12:13:00 2026", true, want},
		{"es-locale", "lun, 23 nov 2026 12:13:00 UTC", true, want},
		{"es-locale-dotted", "lun., 23 nov. 2026 12:13:00 UTC", true, want},
		{"es-enero", "jue, 01 ene 2026 00:00:00 UTC", true, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"es-diciembre", "jue, 31 dic 2026 23:59:59 UTC", true, time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC)},
		{"weekday-ignored", "Fri, 23 Nov 2026 12:13:00 UTC", true, want},
		{"single-digit-day", "Thu, 5 Feb 2026 01:02:03 GMT", true, time.Date(2026, 2, 5, 1, 2, 3, 0, time.UTC)},
		{"lowercase-month", "Mon, 23 nov 2026 12:13:00 GMT", true, want},
		{"other-zone", "Mon, 23 Nov 2026 12:13:00 CET", false, time.Time{}},
		{"numeric-zone", "Mon, 23 Nov 2026 12:13:00 +0000", false, time.Time{}},
		{"no-zone", "Mon, 23 Nov 2026 12:13:00", false, time.Time{}},
		{"bad-month", "Mon, 23 Foo 2026 12:13:00 UTC", false, time.Time{}},
		{"bad-day", "Mon, 31 Feb 2026 12:13:00 UTC", false, time.Time{}},
		{"day-zero", "Mon, 00 Feb 2026 12:13:00 UTC", false, time.Time{}},
		{"bad-hour", "Mon, 23 Nov 2026 24:13:00 UTC", false, time.Time{}},
		{"bad-minute", "Mon, 23 Nov 2026 12:60:00 UTC", false, time.Time{}},
		{"short-year", "Mon, 23 Nov 26 12:13:00 UTC", false, time.Time{}},
		{"bad-time", "Mon, 23 Nov 2026 12-13-00 UTC", false, time.Time{}},
		{"signed-number", "Mon, +3 Nov 2026 12:13:00 UTC", false, time.Time{}},
		{"trailing-junk", "Mon, 23 Nov 2026 12:13:00 UTC x", false, time.Time{}},
		{"empty", "", false, time.Time{}},
		{"garbage", "yesterday", false, time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseHTTPDate(tt.in)
			if ok != tt.ok {
				t.Fatalf("parseHTTPDate(%q) ok = %v, want %v", tt.in, ok, tt.ok)
			}
			if ok && !got.Equal(tt.want) {
				t.Fatalf("parseHTTPDate(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if ok && got.Location() != time.UTC {
				t.Fatalf("parseHTTPDate(%q) location %v, want UTC", tt.in, got.Location())
			}
		})
	}
}

func FuzzParseHTTPDate(f *testing.F) {
	f.Add("Mon, 23 Nov 2026 12:13:00 UTC")
	f.Add("lun., 23 nov. 2026 12:13:00 UTC")
	f.Add("Monday, 23-Nov-26 12:13:00 GMT")
	f.Fuzz(func(t *testing.T, s string) {
		t1, ok := parseHTTPDate(s)
		if !ok {
			return
		}
		// Whatever parses must survive a round trip through the canonical form.
		t2, ok := parseHTTPDate(t1.Format("Mon, 02 Jan 2006 15:04:05 GMT"))
		if !ok || !t1.Equal(t2) {
			t.Fatalf("round trip of %q: %v, %v", s, t1, t2)
		}
	})
}
