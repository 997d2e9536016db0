package updater

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/api"
)

func TestCheckTarget(t *testing.T) {
	a := &Agent{Cfg: &Config{Channel: "stable", Arch: "x86_64", AllowedChannels: []string{"edu"}}}
	good := api.Target{Channel: "stable", Arch: "x86_64", Version: "10.0.3", Ref: "mxos/10/x86_64/stable"}
	for _, tc := range []struct {
		name string
		mut  func(*api.Target)
		want string // "" = accepted
	}{
		{"offer of the followed channel", func(*api.Target) {}, ""},
		{"allowed other channel (a pin)", func(t *api.Target) { t.Channel, t.Ref = "edu", "mxos/10/x86_64/edu" }, ""},
		{"next major", func(t *api.Target) { t.Ref = "mxos/11/x86_64/stable" }, ""},
		{"channel not allowed", func(t *api.Target) { t.Channel, t.Ref = "testing", "mxos/10/x86_64/testing" }, "follows stable, edu"},
		{"other arch", func(t *api.Target) { t.Arch = "aarch64" }, "this machine is x86_64"},
		{"ref of other arch", func(t *api.Target) { t.Ref = "mxos/10/aarch64/stable" }, "not mxos/<major>/x86_64/stable"},
		{"ref of other channel", func(t *api.Target) { t.Ref = "mxos/10/x86_64/testing" }, "not mxos/<major>/x86_64/stable"},
		{"ref of other distribution", func(t *api.Target) { t.Ref = "fedora/10/x86_64/stable" }, "not mxos/<major>"},
		{"empty major", func(t *api.Target) { t.Ref = "mxos//x86_64/stable" }, "not mxos/<major>"},
		{"extra segment", func(t *api.Target) { t.Ref = "mxos/10/x86_64/stable/x" }, "not mxos/<major>"},
		{"bad ref characters", func(t *api.Target) { t.Ref = "mxos/1 0/x86_64/stable" }, "bad branch name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := good
			tc.mut(&tg)
			err := a.checkTarget(tg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want ErrRefused saying %q", err, tc.want)
			}
		})
	}
}

// TestCheckVersion: no older version, and no other commit carrying the
// installed version (a same-version swap), whatever the version strings.
func TestCheckVersion(t *testing.T) {
	const cur, other = "c0ffee", "badc0de"
	for _, tc := range []struct {
		offered, commit, installed string
		want                       string // "" = accepted
	}{
		{"10.0.3", other, "10.0.2", ""}, {"10.1", other, "10.0.9", ""},
		{"10.0.2", cur, "10.0.2", ""},  // the installed commit itself
		{"10.0.1", other, "", ""},      // nothing installed
		{"weird", other, "10.0.2", ""}, // unparsable: left to the pull's timestamp check
		{"10.0.1", other, "10.0.2", "older than the installed"},
		{"10.0.2-rc.1", other, "10.0.2", "older than the installed"},
		{"9.9", other, "10.0", "older than the installed"},
		{"10.0.2", other, "10.0.2", "another build of the installed version"},
		{"weird", other, "weird", "another build of the installed version"},
	} {
		err := checkVersion(api.Target{Version: tc.offered, Commit: tc.commit}, tc.installed, cur)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("offered %s (%s) over %s: refused: %v", tc.offered, tc.commit, tc.installed, err)
		case tc.want != "" && (!errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("offered %s (%s) over %s: %v, want ErrRefused saying %q", tc.offered, tc.commit, tc.installed, err, tc.want)
		}
	}
}

func TestMetadataURLs(t *testing.T) {
	a := &Agent{Cfg: &Config{Server: "https://updates.example.mx/",
		Mirrors: []string{"http://mirror.escuela.lan/repo", "https://cdn.example.mx/mxos/repo/", "https://odd.example.mx/ostree",
			"https://updates.example.mx/repo"}}}
	want := []string{"http://mirror.escuela.lan/metadata/", "https://cdn.example.mx/mxos/metadata/", "https://updates.example.mx/metadata/"}
	if got := a.metadataURLs(); !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
