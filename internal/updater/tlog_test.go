package updater

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/testserver"
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
