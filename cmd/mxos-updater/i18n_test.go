package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/i18n"
)

// Under LANG=es_MX.UTF-8 the technician reads Spanish: status, help and
// the configuration's problems, one a line; the exit status is the same.
func TestSpanishUnderLANG(t *testing.T) {
	t.Setenv("LC_ALL", "")
	t.Setenv("LC_MESSAGES", "")
	t.Setenv("LANG", "es_MX.UTF-8")
	dir := t.TempDir()
	cfg := writeConfig(t, genKeys(t), filepath.Join(dir, "root"), "")
	run := func(args ...string) (string, string, int) {
		cmd := newRootCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(args)
		var stderr bytes.Buffer
		code := report(&stderr, i18n.FromEnv(os.Getenv), cmd.Execute())
		return out.String(), stderr.String(), code
	}
	if out, _, code := run("--config", cfg, "status"); code != 0 || !strings.Contains(out, "Actual:   ninguna") {
		t.Errorf("status: exit %d\n%s", code, out)
	}
	if out, _, _ := run("--help"); !strings.Contains(out, "Mantiene actualizado este equipo MxOS") || !strings.Contains(out, "Comandos disponibles:") ||
		!strings.Contains(out, "archivo de configuración") {
		t.Errorf("help:\n%s", out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("server: ftp://x\nchannel: stable\narch: x86_64\ntrusted_keys: /k\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := run("--config", bad, "status")
	for _, want := range []string{"configuración del actualizador inválida", "\n  falta trusted_root", "\n  device_id debe tener", `server "ftp://x" debe ser una URL`} {
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("bad config: exit %d, lacks %q:\n%s", code, want, stderr)
		}
	}
}
