package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/sign"
)

func TestStatusOnEmptySysroot(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if err := sign.GenerateKeys(keys, sign.GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.yaml")
	body := "server: http://127.0.0.1:1\ndevice_id: lab-pc-01\nchannel: stable\narch: x86_64\ntrusted_keys: " + keys +
		"\nsysroot: " + filepath.Join(dir, "root") + "\n"
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--config", cfg, "status"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Current:  none") {
		t.Fatalf("status output:\n%s", out.String())
	}
	cmd = newRootCmd()
	cmd.SetArgs([]string{"--config", filepath.Join(dir, "missing.yaml"), "status"})
	if err := cmd.Execute(); err == nil {
		t.Fatal("missing config accepted")
	}
}
