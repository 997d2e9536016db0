package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/testserver"
)

// TestLogShowVerify: releases published and promoted with mxosctl appear
// in "log show"; "log verify" passes, remembers the checkpoint, and after
// the stable ref is moved on the server's disk outside the log, reports
// it and fails.
func TestLogShowVerify(t *testing.T) {
	ts := testserver.Start(t, testserver.Options{Serve: true, TransparencyLog: true, OnlineSummaryKey: true, Roles: []auth.Role{auth.RoleRelease}})
	t.Setenv("MXOS_TOKEN", ts.Tokens[auth.RoleRelease])
	t.Setenv("MXOS_LOG_KEY", "")
	srv := []string{"--server", ts.URL}
	mx := func(args ...string) (string, error) {
		t.Helper()
		return run(t, append(args, srv...)...)
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := mx(args...)
		if err != nil {
			t.Fatalf("mxosctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	tree := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc/os-release"), []byte("NAME=MxOS\n"), 0o644)
	work := filepath.Join(t.TempDir(), "work")
	must("publish", "-q", "--keys", ts.Release.Dir, "--channel", "testing", "--arch", "x86_64", "--version", "10.0.1", "--work", work, tree)
	must("promote", "--keys", ts.Release.Dir, "--from", "testing", "--to", "stable", "--arch", "x86_64", "--version", "10.0.1", "--work", work)

	if out, err := mx("log", "show"); err == nil || !strings.Contains(err.Error(), "--log-key") {
		t.Fatalf("show without a key: %v\n%s", err, out)
	}
	pub := filepath.Join(ts.Data, "log-key.pub") // as the server writes it
	out := must("log", "show", "--log-key", pub)
	for _, want := range []string{"entries (checkpoint signature verified)", "rotated the release keys to key set", "released testing 10.0.1 for x86_64", "promoted 10.0.1 for x86_64 from testing to stable", "started the rollout of stable 10.0.1"} {
		if !strings.Contains(out, want) {
			t.Fatalf("log show lacks %q:\n%s", want, out)
		}
	}

	state := filepath.Join(t.TempDir(), "state", "checkpoint")
	out = must("log", "verify", "--log-key", ts.LogKey, "--state", state, "--channels", testserver.ChannelsDir())
	if !strings.Contains(out, "every commit on a channel is in the log") {
		t.Fatalf("verify:\n%s", out)
	}
	if b, err := os.ReadFile(state); err != nil || !strings.HasPrefix(string(b), "test.mxos.example/releases\n") {
		t.Fatalf("remembered checkpoint %q %v", b, err)
	}

	// stable moved to another commit behind the log's back.
	next, err := ts.Repo.ResolveRef("mxos/10/x86_64/testing")
	if err != nil {
		t.Fatal(err)
	}
	txn, err := ts.Repo.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.SetRef("mxos/10/x86_64/stable", next); err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	txn.Close()
	out, err = mx("log", "verify", "--log-key", ts.LogKey, "--state", state, "--channels", testserver.ChannelsDir())
	if err == nil || !strings.Contains(out, "NOT IN THE LOG: mxos/10/x86_64/stable (channel stable, x86_64) is at commit "+next.String()[:12]) {
		t.Fatalf("moved ref not reported: %v\n%s", err, out)
	}
}
