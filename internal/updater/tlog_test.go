package updater

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/testserver"
	"github.com/mxos-linux/mxos-update/internal/testtool"
	"github.com/mxos-linux/mxos-update/internal/tlogstore"
)

// logEnv is startAgentEnv with the transparency log on; data, when set,
// is the server's data directory (to share a log key).
func logEnv(t *testing.T, data string) (*agentEnv, *testserver.Server) {
	t.Helper()
	ts := testserver.Start(t, testserver.Options{DataDir: data, Metadata: true, OnlineSummaryKey: true, Serve: true, TransparencyLog: true,
		Roles: []auth.Role{auth.RoleRelease, auth.RoleDevice}})
	return &agentEnv{f: newFixture(t, ts), srv: ts.Srv, url: ts.URL, keys: ts.Release.Dir, root: rootJSON(t, ts),
		online: publicDir(t, ts.Online.Dir), verifiers: ts.Release.Verifiers, tokens: ts.Tokens}, ts
}

// TestAgentChecksTransparencyLog: with log_key, an offered release is
// installed only with a valid proof from the log, and the checkpoint is
// remembered; a server whose log does not have the release, and a server
// showing this device another log under the same key (a split view), are
// refused before any download.
func TestAgentChecksTransparencyLog(t *testing.T) {
	ctx := context.Background()
	env, ts := logEnv(t, "")
	keyFile := filepath.Join(t.TempDir(), "log.pub")
	if err := os.WriteFile(keyFile, []byte(ts.LogKey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, out := newTestAgent(t, env.url, env.tokens[auth.RoleDevice], env.keys, env.root, env.verifiers, "lab-1", "log_key: "+keyFile+"\n")
	t.Cleanup(func() { t.Log(out.String()) })
	env.f.publish(t, "10.0.0")
	installByHand(t, a, stableRef, "10.0.0")
	env.f.publish(t, "10.0.1")
	if changed, err := a.Upgrade(ctx); err != nil || !changed {
		t.Fatalf("upgrade with a logged release: %v %v", changed, err)
	}
	remembered, err := os.ReadFile(filepath.Join(a.Sys.Root(), LogCheckpointFile))
	if err != nil || !strings.HasPrefix(string(remembered), "test.mxos.example/releases\n") {
		t.Fatalf("remembered checkpoint %q %v", remembered, err)
	}

	// A server without the log (or hiding the release): refused.
	plain := startAgentEnv(t, false)
	b, _ := newTestAgent(t, plain.url, plain.tokens[auth.RoleDevice], plain.keys, plain.root, plain.verifiers, "lab-2", "log_key: "+ts.LogKey+"\n")
	plain.f.publish(t, "10.0.0")
	installByHand(t, b, stableRef, "10.0.0")
	plain.f.publish(t, "10.0.1")
	if _, err := b.Upgrade(ctx); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "not in the public transparency log") {
		t.Fatalf("release absent from the log: %v", err)
	}
	if st, _ := b.Status(ctx); st.Current == nil || st.Current.Version != "10.0.0" {
		t.Fatalf("refused release installed: %+v", st)
	}

	// A split view: another log under the same key, other releases.
	data := t.TempDir()
	for _, n := range []string{"log-key", "log-key.pub"} {
		k, err := os.ReadFile(filepath.Join(ts.Data, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, n), k, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	split, sts := logEnv(t, data)
	if sts.LogKey != ts.LogKey {
		t.Fatal("the split log has another key")
	}
	c, _ := newTestAgent(t, split.url, split.tokens[auth.RoleDevice], split.keys, split.root, split.verifiers, "lab-3", "log_key: "+ts.LogKey+"\n")
	split.f.publish(t, "10.0.0")
	installByHand(t, c, stableRef, "10.0.0")
	for _, v := range []string{"10.0.1", "10.0.2", "10.0.3"} {
		split.f.publish(t, v)
	}
	// This device had seen the real log.
	if err := os.WriteFile(filepath.Join(c.Sys.Root(), LogCheckpointFile), remembered, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = c.Upgrade(ctx)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "forked") {
		t.Fatalf("split view: %v", err)
	}
	if _, err := os.Stat(filepath.Join(c.Sys.Root(), LogCheckpointFile+".fork")); err != nil {
		t.Fatalf("no evidence kept: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(c.Sys.Root(), LogCheckpointFile)); string(after) != string(remembered) {
		t.Fatal("the remembered checkpoint moved to the forked log")
	}
}

// TestAgentRequiresWitnesses: with log_witnesses, an offered release's
// log checkpoint must carry cosignatures of real witnesses (litewitness,
// C2SP tlog-witness). A server whose policy needs both witnesses
// publishes while both answer, and a device requiring both installs;
// with one gone, the server publishes nothing new: the release fails for
// the release team instead of going out unwitnessed. A log that only one
// witness cosigns is refused by a device requiring two, with nothing
// installed, and accepted by one requiring one.
func TestAgentRequiresWitnesses(t *testing.T) {
	ctx := context.Background()
	w1, w2 := testtool.StartWitness(t, "witness.unam.example"), testtool.StartWitness(t, "witness.gob.example")
	witnessEnv := func(origin, policy string) (*agentEnv, *testserver.Server) {
		keyFile := filepath.Join(t.TempDir(), "log-key")
		_, vkey, err := tlogstore.LoadOrCreateKey(keyFile, origin)
		if err != nil {
			t.Fatal(err)
		}
		w1.AddLog(t, origin, vkey)
		w2.AddLog(t, origin, vkey)
		ts := testserver.Start(t, testserver.Options{Metadata: true, OnlineSummaryKey: true, Serve: true, TransparencyLog: true,
			LogKeyFile: keyFile, LogWitnessPolicy: []byte(policy), Roles: []auth.Role{auth.RoleRelease, auth.RoleDevice}})
		return &agentEnv{f: newFixture(t, ts), srv: ts.Srv, url: ts.URL, keys: ts.Release.Dir, root: rootJSON(t, ts),
			online: publicDir(t, ts.Online.Dir), verifiers: ts.Release.Verifiers, tokens: ts.Tokens}, ts
	}
	agent := func(env *agentEnv, ts *testserver.Server, id string, threshold int) *Agent {
		a, out := newTestAgent(t, env.url, ts.DeviceToken(t, id), env.keys, env.root, env.verifiers, id,
			fmt.Sprintf("log_key: %s\nlog_witnesses: [%q, %q]\nlog_witness_threshold: %d\n", ts.LogKey, w1.VKey, w2.VKey, threshold))
		t.Cleanup(func() {
			if t.Failed() {
				t.Log(out.String())
			}
		})
		return a
	}

	both := fmt.Sprintf("witness w1 %s %s\nwitness w2 %s %s\ngroup both all w1 w2\nquorum both\n", w1.VKey, w1.URL, w2.VKey, w2.URL)
	env, ts := witnessEnv("a.mxos.example/releases", both)
	a := agent(env, ts, "lab-1", 0)
	env.f.publish(t, "10.0.0")
	installByHand(t, a, stableRef, "10.0.0")
	env.f.publish(t, "10.0.1")
	if changed, err := a.Upgrade(ctx); err != nil || !changed {
		t.Fatalf("upgrade with both witnesses' cosignatures: %v %v", changed, err)
	}
	remembered, err := os.ReadFile(filepath.Join(a.Sys.Root(), LogCheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []*testtool.Witness{w1, w2} {
		if !strings.Contains(string(remembered), "— "+w.Name+" ") {
			t.Fatalf("the remembered checkpoint has no cosignature of %s:\n%s", w.Name, remembered)
		}
	}
	w2.Stop()
	src := filepath.Join(t.TempDir(), "tree")
	if err := os.MkdirAll(filepath.Join(src, "usr/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "usr/bin/hello"), []byte("#!/bin/sh\necho 10.0.2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	u0 := uint32(0)
	_, _, err = env.f.rem.Publish(ctx, release.RemoteRequest{Channel: "testing", Arch: "x86_64", Ref: "mxos/10/x86_64/testing",
		Version: "10.0.2", Source: src, Ramp: "none", Options: ostree.CommitOptions{OwnerUID: &u0, OwnerGID: &u0, NoXattrs: true}})
	if err == nil || !strings.Contains(err.Error(), "witnesses") {
		t.Fatalf("publish with a witness gone: %v, want a refusal naming the witnesses", err)
	}

	// Another log, which only w1 cosigns.
	one := fmt.Sprintf("witness w1 %s %s\nquorum w1\n", w1.VKey, w1.URL)
	env2, ts2 := witnessEnv("b.mxos.example/releases", one)
	b, c := agent(env2, ts2, "lab-2", 2), agent(env2, ts2, "lab-3", 1)
	env2.f.publish(t, "10.0.0")
	installByHand(t, b, stableRef, "10.0.0")
	installByHand(t, c, stableRef, "10.0.0")
	env2.f.publish(t, "10.0.1")
	if _, err := b.Upgrade(ctx); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "1 of the 2 required") {
		t.Fatalf("one cosignature where two are required: %v", err)
	}
	if st, _ := b.Status(ctx); st.Current == nil || st.Current.Version != "10.0.0" {
		t.Fatalf("refused release installed: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(b.Sys.Root(), LogCheckpointFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused checkpoint was remembered: %v", err)
	}
	if changed, err := c.Upgrade(ctx); err != nil || !changed {
		t.Fatalf("one cosignature where one is required: %v %v", changed, err)
	}
}
