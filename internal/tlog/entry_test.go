package tlog

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 7, 5, 51, 3, 0, time.UTC)

const commitA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestEntryRoundTrip(t *testing.T) {
	for _, e := range []Entry{
		{Kind: KindRelease, Channel: "testing", Arch: "x86_64", Version: "10.2.1", Commit: commitA,
			Image: "sha256:" + commitA, Key: "00112233aabbccdd", Time: t0},
		{Kind: KindPromotion, Channel: "stable", Arch: "aarch64", Version: "10.2.1", Commit: commitA, From: "testing", Time: t0},
		{Kind: KindRolloutStart, Channel: "stable", Arch: "x86_64", Version: "10.2.1", Ramp: "5%,25%@48h,100%@120h", Time: t0},
		{Kind: KindRolloutHalt, Channel: "stable", Arch: "x86_64", Version: "10.2.1", Time: t0},
		{Kind: KindGroupPin, Group: "lab-3", Channel: "edu", Arch: "x86_64", Version: "10.1", Time: t0},
		{Kind: KindGroupUnpin, Group: "lab-3", Channel: "edu", Time: t0},
		{Kind: KindKeyRotation, Key: "00112233aabbccdd", Time: t0},
		{Kind: KindMetadataRotation, Time: t0},
	} {
		t.Run(string(e.Kind), func(t *testing.T) {
			b, err := e.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			got, err := Parse(b)
			if err != nil {
				t.Fatalf("Parse(%q): %v", b, err)
			}
			if got != e {
				t.Fatalf("round trip: got %+v, want %+v", got, e)
			}
			if e.Describe() == "" || strings.Contains(e.Describe(), "%!") {
				t.Fatalf("Describe: %q", e.Describe())
			}
		})
	}
}

func TestEntryGolden(t *testing.T) {
	e := Entry{Kind: KindPromotion, Channel: "stable", Arch: "x86_64", Version: "10.2", Commit: commitA, From: "testing", Key: "00112233aabbccdd", Time: t0}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := "mxos-release-log/v1\nkind promotion\nchannel stable\narch x86_64\nversion 10.2\ncommit " + commitA +
		"\nkey 00112233aabbccdd\nfrom testing\ntime 2026-12-07T05:51:03Z\n"
	if string(b) != want {
		t.Fatalf("got\n%s\nwant\n%s", b, want)
	}
	if d := e.Describe(); d != "2026-12-07 05:51:03Z  promoted 10.2 for x86_64 from testing to stable, commit 0123456789ab, release keys 00112233aabbccdd" {
		t.Fatalf("Describe: %q", d)
	}
}

func TestEntryRefused(t *testing.T) {
	good := "mxos-release-log/v1\nkind release\nchannel stable\narch x86_64\nversion 1\ncommit " + commitA + "\ntime 2026-12-07T05:51:03Z\n"
	if _, err := Parse([]byte(good)); err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]string{
		"schema":         strings.Replace(good, "v1", "v2", 1),
		"no newline":     strings.TrimSuffix(good, "\n"),
		"crlf":           strings.ReplaceAll(good, "\n", "\r\n"),
		"unknown kind":   strings.Replace(good, "kind release", "kind bogus", 1),
		"order":          strings.Replace(good, "channel stable\narch x86_64", "arch x86_64\nchannel stable", 1),
		"repeat":         strings.Replace(good, "arch x86_64", "arch x86_64\narch x86_64", 1),
		"unknown field":  strings.Replace(good, "arch x86_64", "arch x86_64\ndevice abc", 1),
		"missing":        strings.Replace(good, "arch x86_64\n", "", 1),
		"extra for kind": strings.Replace(good, "time", "group g\ntime", 1),
		"not allowed":    strings.Replace(good, "time", "ramp 5%\ntime", 1),
		"bad commit":     strings.Replace(good, commitA, strings.ToUpper(commitA), 1),
		"space":          strings.Replace(good, "version 1", "version 1 2", 1),
		"empty value":    strings.Replace(good, "version 1", "version ", 1),
		"local time":     strings.Replace(good, "05:51:03Z", "05:51:03+01:00", 1),
		"fraction":       strings.Replace(good, "05:51:03Z", "05:51:03.5Z", 1),
		"no time":        strings.Replace(good, "time 2026-12-07T05:51:03Z\n", "", 1),
		"too big":        strings.Replace(good, "version 1", "version "+strings.Repeat("9", 600), 1),
		"long value":     strings.Replace(good, "version 1", "version "+strings.Repeat("9", 129), 1),
		"non-ascii":      strings.Replace(good, "version 1", "version 1é", 1),
		"empty":          "",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse([]byte(in)); !errors.Is(err, ErrInvalidEntry) {
				t.Fatalf("Parse: %v, want ErrInvalidEntry", err)
			}
		})
	}
}

func TestKeySetID(t *testing.T) {
	a, b := KeySetID([]string{"k1", "k2"}), KeySetID([]string{"k2", "k1"})
	if a != b || len(a) != 16 || !isHex(a, 16) {
		t.Fatalf("KeySetID: %q %q", a, b)
	}
	if KeySetID([]string{"k1"}) == a {
		t.Fatal("different sets, same id")
	}
}

// FuzzParse: Parse never panics, and whatever it accepts is canonical.
func FuzzParse(f *testing.F) {
	f.Add([]byte("mxos-release-log/v1\nkind release\nchannel stable\narch x86_64\nversion 1\ncommit " + commitA + "\ntime 2026-12-07T05:51:03Z\n"))
	f.Add([]byte("mxos-release-log/v1\nkind metadata-rotation\ntime 2026-12-07T05:51:03Z\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidEntry) {
				t.Fatalf("error not ErrInvalidEntry: %v", err)
			}
			return
		}
		out, err := e.Marshal()
		if err != nil {
			t.Fatalf("accepted entry does not marshal: %v", err)
		}
		if string(out) != string(b) {
			t.Fatalf("not canonical: %q re-encodes as %q", b, out)
		}
	})
}
