package ostreeadmin

import (
	"errors"
	"os"
	"strings"
	"testing"
)

const (
	cA = "9bf08b95b1df9483276b8ae0a67abb0f01b7309b6e64a35f8de169867146b363"
	cB = "811b5ddb5b4b4941578bd98c7bb1cbfdffb8366047ec6399f6243d992132b338"
	cC = "a60cf2a88afd81c3369376c15f7859223ae8b8ead66180085996fcdd548c64f7"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseStatus(t *testing.T) {
	type row struct {
		root, name, version, refspec      string
		booted, pending, rollback, pinned bool
	}
	for _, tc := range []struct {
		file string
		want []row
	}{
		// Captured from Debian 12's ostree 2022.7 on a test sysroot.
		{"status-2022.7.txt", []row{
			{"mxos", cA + ".0", "3.0", cA, false, false, false, false},
			{"mxos", cB + ".1", "2.0", cB, false, false, false, false},
			{"mxos", cB + ".0", "2.0", cB, false, false, false, false},
			{"mxos", cC + ".0", "1.0", cC, false, false, false, false},
		}},
		// The markers of a booted system, as ot-admin-builtin-status.c prints them.
		{"status-booted.txt", []row{
			{"mxos", cB + ".1", "2.0", cB, false, true, false, false},
			{"mxos", cA + ".0", "3.0", "origin:mxos/x86_64/stable", true, false, false, true},
			{"debian", cC + ".0", "", "", false, false, true, false},
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			got, err := parseStatus(readTestdata(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d entries, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				g := got[i]
				r := row{g.Stateroot, g.Name, g.Version, g.Refspec, g.Booted, g.Pending, g.Rollback, g.Pinned}
				if r != w {
					t.Errorf("entry %d: got %+v, want %+v", i, r, w)
				}
				if g.Commit.String() != strings.Split(w.name, ".")[0] {
					t.Errorf("entry %d: commit %s", i, g.Commit)
				}
			}
		})
	}
	if got, err := parseStatus([]byte("No deployments.\n")); err != nil || len(got) != 0 {
		t.Fatalf("no deployments: %v %v", got, err)
	}
	for _, bad := range []string{
		"    Version: 1.0\n",             // detail before any deployment
		"  mxos nothex.0\n",              // bad name
		"  mxos " + cA + ".x\n",          // bad serial
		"  mxos " + cA + ".0 (broken)\n", // unknown marker
		"  ../x " + cA + ".0\n",          // bad stateroot
		"error: something went wrong\n",  // not status output
		"  mxos\n",                       // truncated
		"* mxos " + cA + ".01\n",         // serial not canonical
		"\tmxos " + cA + ".0\n",          // tab indentation
		"  mxos " + cA + ".0 (pending\n", // broken marker
	} {
		if _, err := parseStatus([]byte(bad)); !errors.Is(err, errSyntax) {
			t.Errorf("parseStatus(%q): %v, want a syntax error", bad, err)
		}
	}
}

func TestParseBLSAndKarg(t *testing.T) {
	e, err := parseBLS(readTestdata(t, "ostree-4-mxos.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if e.Version != "4" || e.Title != "MxOS 3.0 (ostree:0)" {
		t.Fatalf("entry %+v", e)
	}
	l, err := parseOstreeKarg(e.Options)
	if err != nil {
		t.Fatal(err)
	}
	want := "ostree/boot.0/mxos/7bd091ad6955c0e7ef41bab65adb016275664b55efc0d10a0c8cb263da3c1e4e/0"
	if l.Rel() != want || l.Stateroot != "mxos" {
		t.Fatalf("link %+v", l)
	}
	if _, err := parseBLS([]byte("title x\noptions ostree=/ostree/boot.0/mxos/" + cA + "/0\n")); !errors.Is(err, errSyntax) {
		t.Fatalf("entry without version: %v", err)
	}
	for _, bad := range []string{
		"root=/dev/sda1 quiet",                    // no ostree=
		"ostree=/ostree/boot.2/mxos/" + cA + "/0", // boot version
		"ostree=/ostree/boot.0/../" + cA + "/0",   // stateroot escapes
		"ostree=/ostree/boot.0/mxos/" + cA + "/../../etc",
		"ostree=/ostree/boot.0/mxos/nothex/0",
		"ostree=/ostree/boot.0/mxos/" + cA + "/-1",
		"ostree=/ostree/boot.0/mxos/" + cA,
		"ostree=/etc/boot.0/mxos/" + cA + "/0",
	} {
		if _, err := parseOstreeKarg(bad); !errors.Is(err, errSyntax) {
			t.Errorf("parseOstreeKarg(%q): %v, want a syntax error", bad, err)
		}
	}
}

func TestParseDeployLink(t *testing.T) {
	root, name, err := parseDeployLink("../../../deploy/mxos/deploy/" + cA + ".3")
	if err != nil || root != "mxos" || name != cA+".3" {
		t.Fatalf("%q %q %v", root, name, err)
	}
	for _, bad := range []string{
		"/ostree/deploy/mxos/deploy/" + cA + ".0",
		"../../../deploy/mxos/deploy/" + cA,
		"../../../deploy/../deploy/" + cA + ".0",
		"../../../deploy/mxos/deploy/" + cA + ".0/..",
		"../../../deploy/mxos/var/" + cA + ".0",
	} {
		if _, _, err := parseDeployLink(bad); !errors.Is(err, errSyntax) {
			t.Errorf("parseDeployLink(%q): %v, want a syntax error", bad, err)
		}
	}
}

func TestKeyFile(t *testing.T) {
	kf, err := parseKeyFile([]byte("# comment\n[origin]\nrefspec=" + cA + "\n\n[mxos-updater]\nref = mxos/stable\nversion=\\s10.0 beta\\nx\\\\y\n"))
	if err != nil {
		t.Fatal(err)
	}
	if kf.get("origin", "refspec") != cA || kf.get("mxos-updater", "ref") != "mxos/stable" || kf.get("mxos-updater", "version") != " 10.0 beta\nx\\y" {
		t.Fatalf("%+v", kf)
	}
	for _, v := range []string{"", "plain", " leading space", "tab\there", "new\nline", `back\slash`, "\\s literal", "trailing "} {
		kf, err := parseKeyFile([]byte("[g]\nk=" + escapeKeyFile(v) + "\n"))
		if err != nil || kf.get("g", "k") != v {
			t.Errorf("round trip of %q: %q %v", v, kf.get("g", "k"), err)
		}
	}
	for _, bad := range []string{"k=v\n", "[g\nk=v\n", "[g]\nnovalue\n", "[g]\nk=a\\\n", "[g]\nk=\\q\n", "[]\n"} {
		if _, err := parseKeyFile([]byte(bad)); !errors.Is(err, errSyntax) {
			t.Errorf("parseKeyFile(%q): %v, want a syntax error", bad, err)
		}
	}
}

func FuzzParseStatus(f *testing.F) {
	for _, name := range []string{"status-2022.7.txt", "status-booted.txt"} {
		f.Add(readTestdata(f, name))
	}
	f.Add([]byte("No deployments.\n"))
	f.Add([]byte("* mxos " + cA + ".0 (staged)\n    Version: 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		list, err := parseStatus(b)
		if err != nil {
			return
		}
		for _, e := range list {
			c, n, err := parseName(e.Name)
			if err != nil || c != e.Commit || n != e.Serial || !validStateroot(e.Stateroot) {
				t.Fatalf("accepted an invalid entry %+v", e)
			}
		}
	})
}

func FuzzParseBootEntry(f *testing.F) {
	f.Add(readTestdata(f, "ostree-4-mxos.conf"))
	f.Add([]byte("version 1\noptions root=x ostree=/ostree/boot.1/mxos/" + cA + "/0 quiet\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseBLS(b)
		if err != nil {
			return
		}
		l, err := parseOstreeKarg(e.Options)
		if err != nil {
			return
		}
		for _, part := range strings.Split(l.Rel(), "/") {
			if part == ".." || part == "." || part == "" {
				t.Fatalf("accepted a link path that leaves the sysroot: %q", l.Rel())
			}
		}
	})
}

func FuzzParseKeyFile(f *testing.F) {
	f.Add([]byte("[origin]\nrefspec=" + cA + "\n\n[mxos-updater]\nversion=\\s1\\n\n"))
	f.Add([]byte("# c\n[g]\nk = v\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		kf, err := parseKeyFile(b)
		if err != nil {
			return
		}
		for g, keys := range kf {
			for k, v := range keys {
				if g == "" || strings.ContainsAny(g, "\n") || strings.ContainsAny(k, "=\n") {
					t.Fatalf("bad group or key %q %q", g, k)
				}
				// Values written back read the same.
				again, err := parseKeyFile([]byte("[g]\nk=" + escapeKeyFile(v) + "\n"))
				if err != nil || again.get("g", "k") != v {
					t.Fatalf("value %q does not round-trip: %q %v", v, again.get("g", "k"), err)
				}
			}
		}
	})
}
