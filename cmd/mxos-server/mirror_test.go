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
