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
	"github.com/mxos-linux/mxos-update/internal/sysroot/ostreeadmin"
	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// genKeys makes a key directory for trusted_keys.
func genKeys(t *testing.T) string {
	t.Helper()
	keys := filepath.Join(t.TempDir(), "keys")
	if err := sign.GenerateKeys(keys, sign.GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	return keys
}

// writeConfig writes the configuration of a device whose server is
// unreachable; extra lines are appended.
func writeConfig(t *testing.T, keys, sysroot, extra string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	body := "server: http://127.0.0.1:1\ndevice_id: lab-pc-01\nchannel: stable\narch: x86_64\ntrusted_keys: " + keys +
		"\ntrusted_root: " + filepath.Join(keys, "root.json") + "\nsysroot: " + sysroot + "\n" + extra
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestStatusOnEmptySysroot(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, genKeys(t), filepath.Join(dir, "root"), "")
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
	cfg := writeConfig(t, genKeys(t), filepath.Join(t.TempDir(), "root"), "interval: 1m\njitter: 1s\n")
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

// `backend: ostree` opens a sysroot made by stock ostree admin: status on
// an empty stateroot works, and a directory that is not an ostree sysroot
// is refused with an error rather than treated as empty.
func TestOstreeBackendSelected(t *testing.T) {
	testtool.Require(t, "ostree")
	dir := t.TempDir()
	keys := genKeys(t)
	root := filepath.Join(dir, "sysroot")
	if err := ostreeadmin.Init(context.Background(), root, ostreeadmin.Options{}); err != nil {
		t.Fatal(err)
	}
	write := func(sysroot string) string { return writeConfig(t, keys, sysroot, "backend: ostree\n") }
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--config", write(root), "status"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Current:  none") {
		t.Fatalf("status output:\n%s", out.String())
	}
	if _, err := os.Stat(filepath.Join(root, "ostree", "mxos-updater", "repo", "config")); err != nil {
		t.Fatalf("the ostree backend's staging repository was not made: %v", err)
	}
	cmd = newRootCmd()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--config", write(t.TempDir()), "status"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "sysroot") {
		t.Fatalf("a plain directory as an ostree sysroot: %v", err)
	}
}

// Signed channel metadata is the default: a configuration without
// trusted_root is refused, and one that turns the metadata off says so on
// every check.
func TestTrustSettings(t *testing.T) {
	keys, online := genKeys(t), genKeys(t)
	root := filepath.Join(t.TempDir(), "root")
	cfg := func(trust string) string {
		p := filepath.Join(t.TempDir(), "config.yaml")
		body := "server: http://127.0.0.1:1\ndevice_id: lab-pc-01\nchannel: stable\narch: x86_64\ntrusted_keys: " + keys +
			"\nsysroot: " + root + "\n" + trust
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(config, sub string) (string, error) {
		cmd := newRootCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs([]string{"--config", config, sub})
		err := cmd.Execute()
		return out.String(), err
	}
	if _, err := run(cfg(""), "status"); err == nil || !strings.Contains(err.Error(), "trusted_root is required") {
		t.Fatalf("no trusted_root: %v", err)
	}
	if _, err := run(cfg("insecure_no_metadata: true\n"), "status"); err == nil || !strings.Contains(err.Error(), "needs online_keys") {
		t.Fatalf("insecure_no_metadata without online_keys: %v", err)
	}
	insecure := cfg("insecure_no_metadata: true\nonline_keys: " + online + "\n")
	for i := range 2 {
		out, err := run(insecure, "check")
		if err == nil { // the server is unreachable
			t.Fatal("check succeeded")
		}
		if !strings.Contains(out, "Warning: signed channel metadata is off (insecure_no_metadata)") {
			t.Fatalf("check %d: no warning:\n%s", i+1, out)
		}
	}
}
