package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/sign"
)

// TestMirrorFlags: a mirror that cannot start says which flag is wrong,
// before touching the network or the data directory.
func TestMirrorFlags(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if err := sign.GenerateKeys(keys, sign.GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root.json")
	if err := os.WriteFile(root, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	ok := []string{"--upstream", "http://127.0.0.1:1", "--trusted-root", root, "--trusted-keys", keys}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no upstream", []string{"--trusted-root", root, "--trusted-keys", keys}, "--upstream is required"},
		{"bad upstream", []string{"--upstream", "updates.example.mx", "--trusted-root", root, "--trusted-keys", keys}, "--upstream"},
		{"no root", []string{"--upstream", "http://127.0.0.1:1", "--trusted-keys", keys}, "--trusted-root is required"},
		{"no keys", []string{"--upstream", "http://127.0.0.1:1", "--trusted-root", root}, "--trusted-keys is required"},
		{"bad channel", append(append([]string{}, ok...), "--channel", "mxos/10/x86_64/edu"), "not a channel name"},
		{"zero interval", append(append([]string{}, ok...), "--interval", "0s"), "--interval"},
		{"plain HTTP on the LAN", append(append([]string{}, ok...), "--listen", "0.0.0.0:8080"), "refusing plain HTTP"},
		{"not a root", ok, "--trusted-root"},
		{"missing root file", []string{"--upstream", "http://127.0.0.1:1", "--trusted-root", root + ".missing", "--trusted-keys", keys}, "--trusted-root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := newRootCmd()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			cmd.SetArgs(append([]string{"mirror", "--data", data}, tc.args...))
			err := cmd.ExecuteContext(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			if _, err := os.Stat(data); err == nil {
				t.Fatalf("the data directory was made by a mirror that did not start")
			}
		})
	}
}

// TestShippedMirrorUnit: the shipped unit's command line parses, names
// everything a mirror needs and may listen where it says.
func TestShippedMirrorUnit(t *testing.T) {
	b, err := os.ReadFile("../../deploy/systemd/mxos-mirror.service")
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart=/usr/bin/mxos-server "); ok {
			args = strings.Fields(v)
		}
	}
	if len(args) == 0 || args[0] != "mirror" {
		t.Fatalf("the unit does not run mxos-server mirror: %q", args)
	}
	cmd, rest, err := newRootCmd().Find(args)
	if err != nil || cmd.Name() != "mirror" {
		t.Fatalf("find: %v %v", cmd, err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatalf("the unit's flags: %v", err)
	}
	for _, f := range []string{"upstream", "trusted-root", "trusted-keys", "data"} {
		if v, _ := cmd.Flags().GetString(f); v == "" || !cmd.Flags().Changed(f) {
			t.Errorf("the unit gives no --%s", f)
		}
	}
	listen, _ := cmd.Flags().GetString("listen")
	insecure, _ := cmd.Flags().GetBool("insecure-http")
	if err := (tlsOptions{insecureHTTP: insecure}).checkListen(listen); err != nil {
		t.Fatalf("the shipped unit would not start: %v", err)
	}
}
