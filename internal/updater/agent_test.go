package updater

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/rollout"
	"github.com/mxos-linux/mxos-update/internal/server"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
	"github.com/mxos-linux/mxos-update/internal/testserver"
)

const stableRef = "mxos/10/x86_64/stable"

type fixture struct {
	store   *db.Store
	pub     *release.Publisher
	admin   *client.Client
	rollout string // id of the newest rollout
	commits map[string]string
}

// publish makes a signed release on stable, records it and rolls it out
// to everyone, completing the previous rollout.
func (f *fixture) publish(t *testing.T, version string) {
	t.Helper()
	f.publishTree(t, version, map[string]string{
		"usr/etc/os-release": "VERSION=" + version + "\n",
		"usr/bin/hello":      "#!/bin/sh\necho " + version + "\n",
	})
}

// publishTree publishes a tree of files (path → content, mode 0755) as
// version, records it and rolls it out to everyone, completing the
// previous rollout.
func (f *fixture) publishTree(t *testing.T, version string, files map[string]string) {
	t.Helper()
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "tree")
	for p, c := range files {
		full := filepath.Join(src, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	res, err := f.pub.Publish(ctx, release.Request{Ref: stableRef, Version: version, Source: src})
	if err != nil {
		t.Fatalf("publish %s: %v", version, err)
	}
	now := time.Now()
	if err := f.store.AddRelease(ctx, db.Release{Channel: "stable", Arch: "x86_64", Version: version, Ref: stableRef,
		Commit: res.Commit.String(), PublishedAt: now, PublishedBy: "test"}); err != nil {
		t.Fatal(err)
	}
	if f.rollout != "" {
		if err := f.store.SetRolloutState(ctx, f.rollout, rollout.StateActive, rollout.StateComplete, "", now); err != nil {
			t.Fatal(err)
		}
	}
	// Through the API, so the server's caches are cleared.
	ros, err := f.admin.StartRollout(ctx, api.RolloutStartRequest{Channel: "stable", Arch: "x86_64", Version: version, Ramp: "100%"})
	if err != nil || len(ros) != 1 {
		t.Fatalf("start rollout %s: %v %+v", version, err, ros)
	}
	f.rollout = ros[0].ID
	f.commits[version] = res.Commit.String()
}

func writeCheck(t *testing.T, dir string, exit int) {
	t.Helper()
	req := filepath.Join(dir, "required.d")
	if err := os.MkdirAll(req, 0o755); err != nil {
		t.Fatal(err)
	}
	script := []byte("#!/bin/sh\necho checking\nexit " + string(rune('0'+exit)) + "\n")
	if err := os.WriteFile(filepath.Join(req, "10-app"), script, 0o755); err != nil {
		t.Fatal(err)
	}
}

// agentEnv is an in-process server with the update API, release keys and
// release and device tokens.
type agentEnv struct {
	f         *fixture
	srv       *server.Server
	url       string
	keys      string
	verifiers []sign.Verifier
	tokens    map[auth.Role]string
}

func startAgentEnv(t *testing.T, registry bool) *agentEnv {
	t.Helper()
	ts := testserver.Start(t, testserver.Options{Registry: registry, Roles: []auth.Role{auth.RoleRelease, auth.RoleDevice}})
	f := &fixture{store: ts.Store, pub: ts.Publisher, admin: ts.Client(t, auth.RoleRelease), commits: map[string]string{}}
	return &agentEnv{f: f, srv: ts.Srv, url: ts.URL, keys: ts.Release.Dir, verifiers: ts.Release.Verifiers, tokens: ts.Tokens}
}

// newTestAgent makes a device agent with its own sysroot and a passing
// health check, talking to url with token and trusting the key directory
// keys; extra is appended to its configuration.
func newTestAgent(t *testing.T, url, token, keys string, verifiers []sign.Verifier, id, extra string) (*Agent, *bytes.Buffer) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "sysroot")
	healthDir := filepath.Join(t.TempDir(), "health")
	writeCheck(t, healthDir, 0)
	cfg, err := ParseConfig([]byte("server: " + url + "\ndevice_id: " + id + "\nchannel: stable\narch: x86_64\ntrusted_keys: " + keys +
		"\nsysroot: " + root + "\nhealth_dir: " + healthDir + "\n" + extra))
	if err != nil {
		t.Fatal(err)
	}
	sys, err := sysroot.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	local, err := ostree.Create(sys.RepoPath())
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(url, token)
	if err != nil {
		t.Fatal(err)
	}
	out := &bytes.Buffer{}
	return &Agent{Cfg: cfg, Client: c, Puller: &pull.Puller{URLs: cfg.Mirrors, Verifiers: verifiers}, Sys: sys, Repo: local, Out: out}, out
}

// installByHand pulls ref (version) with the agent's puller and makes it
// the current, good deployment, as an installer would.
func installByHand(t *testing.T, a *Agent, ref, version string) {
	t.Helper()
	ctx := context.Background()
	got, err := a.Puller.Pull(ctx, a.Repo, ref, pull.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := a.Sys.Deploy(ctx, a.Repo, got, sysroot.Origin{Ref: ref, Version: version, Commit: got.String()})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Sys.Switch(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := a.Sys.MarkGood(); err != nil {
		t.Fatal(err)
	}
}

func TestAgentEndToEnd(t *testing.T) {
	ctx := context.Background()
	env := startAgentEnv(t, false)
	f, store := env.f, env.f.store
	a, out := newTestAgent(t, env.url, env.tokens[auth.RoleDevice], env.keys, env.verifiers, "lab-pc-01", "")
	healthDir := a.Cfg.HealthDir
	t.Cleanup(func() { t.Log(out.String()) })

	// The machine was installed with 10.0.0 (a fresh device with nothing
	// deployed sends no version, which the server does not answer).
	f.publish(t, "10.0.0")
	installByHand(t, a, stableRef, "10.0.0")
	for _, v := range []string{"10.0.1", "10.0.2", "10.0.3"} {
		f.publish(t, v)
	}

	// 1. Upgrade to the newest, boot healthy.
	changed, err := a.Upgrade(ctx)
	if err != nil || !changed {
		t.Fatalf("first upgrade: changed=%v err=%v", changed, err)
	}
	st, err := a.Status(ctx)
	if err != nil || st.Current == nil || st.Current.Version != "10.0.3" || st.Current.Commit != f.commits["10.0.3"] {
		t.Fatalf("status after first upgrade: %+v %v", st, err)
	}
	if err := a.Boot(ctx); err != nil {
		t.Fatalf("boot: %v", err)
	}
	goodRollout := f.rollout
	stats, err := store.RolloutStats(ctx, goodRollout, time.Now().Add(-time.Hour))
	if err != nil || stats.Successes != 1 {
		t.Fatalf("after health-ok: %+v %v", stats, err)
	}
	if resp, err := a.Check(ctx); err != nil || resp.Update || resp.Reason != "up-to-date" {
		t.Fatalf("check when up to date: %+v %v", resp, err)
	}

	// 2. A newer release that fails its health check: rolled back.
	f.publish(t, "10.0.4")
	writeCheck(t, healthDir, 1)
	changed, err = a.Upgrade(ctx)
	if err != nil || !changed {
		t.Fatalf("second upgrade: changed=%v err=%v", changed, err)
	}
	if err := a.Boot(ctx); err != nil {
		t.Fatalf("boot after bad upgrade: %v", err)
	}
	st, err = a.Status(ctx)
	if err != nil || st.Current == nil || st.Current.Version != "10.0.3" || st.Previous == nil || st.Previous.Version != "10.0.4" {
		t.Fatalf("status after rollback: %+v %v", st, err)
	}
	if _, bad := st.Bad[f.commits["10.0.4"]]; !bad {
		t.Fatalf("10.0.4 not marked bad: %+v", st.Bad)
	}
	stats, err = store.RolloutStats(ctx, f.rollout, time.Now().Add(-time.Hour))
	if err != nil || stats.Failures != 1 {
		t.Fatalf("failures after rollback: %+v %v", stats, err)
	}

	// 3. The rolled-back release is not offered again.
	resp, err := a.Check(ctx)
	if err != nil || resp.Update || resp.Reason != string(rollout.ReasonRolledBack) {
		t.Fatalf("check after rollback: %+v %v", resp, err)
	}
	changed, err = a.Upgrade(ctx)
	if err != nil || changed {
		t.Fatalf("upgrade after rollback: changed=%v err=%v", changed, err)
	}
	if err := a.Boot(ctx); err != nil { // an accepted version is not rolled back by a later failing check
		t.Fatalf("boot on accepted version: %v", err)
	}
	if st, _ := a.Status(ctx); st.Current == nil || st.Current.Version != "10.0.3" {
		t.Fatalf("accepted version changed: %+v", st)
	}
}

func TestWindowStrategy(t *testing.T) {
	s := Strategy{Kind: "window", Start: "22:00", End: "05:00", TimeZone: "UTC"}
	if s.InWindow(time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)) || !s.InWindow(time.Date(2025, 1, 1, 23, 0, 0, 0, time.UTC)) {
		t.Fatal("window")
	}
}
