package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/mxos-linux/mxos-update/internal/testtool"
)

var envName = regexp.MustCompile(`MXOS_[A-Z_]+`)

// TestShippedServerUnit: every MXOS_ variable the shipped unit sets or
// suggests is one the server reads, systemd accepts the unit, and the
// sysusers file makes the user it runs as, with the data directory as
// home.
func TestShippedServerUnit(t *testing.T) {
	unit, err := os.ReadFile("../../deploy/systemd/mxos-server.service")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	root := newRootCmd()
	for _, fs := range []*pflag.FlagSet{root.Flags(), root.PersistentFlags()} {
		fs.VisitAll(func(f *pflag.Flag) {
			for _, n := range envName.FindAllString(f.Usage, -1) {
				known[n] = true
			}
		})
	}
	for _, n := range envName.FindAllString(string(unit), -1) {
		if !known[n] {
			t.Errorf("the unit names %s, which no mxos-server flag reads", n)
		}
	}

	testtool.Require(t, "systemd-analyze")
	dir := t.TempDir()
	copyUnit := strings.ReplaceAll(string(unit), "ExecStart=/usr/bin/mxos-server", "ExecStart=/bin/true")
	if err := os.WriteFile(filepath.Join(dir, "mxos-server.service"), []byte(copyUnit), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("systemd-analyze", "verify", filepath.Join(dir, "mxos-server.service")).CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	testtool.Require(t, "systemd-sysusers")
	sysroot := filepath.Join(dir, "root")
	if err := os.MkdirAll(filepath.Join(sysroot, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	conf, err := filepath.Abs("../../deploy/systemd/mxos-update.sysusers.conf")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("systemd-sysusers", "--root="+sysroot, conf).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	passwd, err := os.ReadFile(filepath.Join(sysroot, "etc", "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^mxos:x:\d+:\d+:[^:]*:/var/lib/mxos-update:/usr/sbin/nologin$`).Match(passwd) ||
		!strings.Contains(string(unit), "Environment=MXOS_DATA=/var/lib/mxos-update\n") || !strings.Contains(string(unit), "User=mxos\n") {
		t.Fatalf("the sysusers user and the unit disagree:\n%s", passwd)
	}
}
