package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// `run` is the service's command: it starts, and a stop signal (the
// context) ends it cleanly even while the server is unreachable.
func TestRunStopsCleanly(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if err := sign.GenerateKeys(keys, sign.GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config.yaml")
	body := "server: http://127.0.0.1:1\ndevice_id: lab-pc-01\nchannel: stable\narch: x86_64\ntrusted_keys: " + keys +
		"\nsysroot: " + filepath.Join(dir, "root") + "\ninterval: 1m\njitter: 1s\n"
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--config", cfg, "run"})
	start := time.Now()
	if err := cmd.ExecuteContext(ctx); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if time.Since(start) > 30*time.Second {
		t.Fatal("run did not stop when asked")
	}
	if !strings.Contains(out.String(), "Checking for updates every 1m0s") || !strings.Contains(out.String(), "Stopping.") {
		t.Fatalf("output:\n%s", out.String())
	}
}

// The shipped systemd units call commands that exist: `run` for the
// service, `boot` (a oneshot, before the login screen) for the boot step.
func TestSystemdUnitsCallRealCommands(t *testing.T) {
	for unit, want := range map[string][]string{
		"mxos-updater.service":      {"ExecStart=/usr/bin/mxos-updater run ", "Type=simple"},
		"mxos-updater-boot.service": {"ExecStart=/usr/bin/mxos-updater boot ", "Type=oneshot", "Before=display-manager.service multi-user.target"},
	} {
		b, err := os.ReadFile(filepath.Join("../../deploy/systemd", unit))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s lacks %q", unit, w)
			}
		}
		for _, line := range strings.Split(string(b), "\n") {
			exec, ok := strings.CutPrefix(line, "ExecStart=")
			if !ok {
				continue
			}
			args := strings.Fields(exec)[1:]
			sub, _, err := newRootCmd().Find(args)
			if err != nil || sub.Name() != args[0] {
				t.Errorf("%s: %q is not an mxos-updater command (%v)", unit, args[0], err)
			}
		}
	}
}
