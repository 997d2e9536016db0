package main

import (
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/buildinfo"
)

func TestVersionFlag(t *testing.T) {
	out, err := run(t, "--version")
	if want := "mxosctl version " + buildinfo.Version(); err != nil || !strings.Contains(out, want) {
		t.Fatalf("--version: %v %q, want %q", err, out, want)
	}
}

// LANG=es_MX.UTF-8 runs of mxosctl speak Spanish: help, messages and
// errors; LC_ALL outranks LANG; C is English.
func TestSpanishUnderLANG(t *testing.T) {
	t.Setenv("LC_ALL", "")
	t.Setenv("LC_MESSAGES", "")
	t.Setenv("LANG", "es_MX.UTF-8")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--help"}, "Administra las versiones de MxOS"},
		{[]string{"--help"}, "Comandos disponibles:"},
		{[]string{"devices", "show", "--help"}, "Muestra un equipo"},
		{[]string{"--version"}, "mxosctl versión "},
	} {
		out, err := run(t, tc.args...)
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("LANG=es_MX.UTF-8 mxosctl %s: %v, output lacks %q:\n%s", strings.Join(tc.args, " "), err, tc.want, out)
		}
	}
	_, err := run(t, "devices", "--limit", "-1")
	if err == nil || msg.Error(err) != "--limit debe ser 0 (el tamaño de página del servidor) o más" {
		t.Errorf("Spanish error: %v / %q", err, msg.Error(err))
	}
	t.Setenv("LC_ALL", "C")
	if out, _ := run(t, "--help"); !strings.Contains(out, "Manage MxOS releases") {
		t.Errorf("LC_ALL=C did not win over LANG:\n%s", out)
	}
}
