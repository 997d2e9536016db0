package updater

import (
	"bytes"

	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

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
	pub     *release.Publisher // on the server's repository (OCI images)
	admin   *client.Client
	rem     *release.Remote // the release team's publish, through the server
	rollout string          // id of the newest rollout
	commits map[string]string
}

// newFixture is the fixture of a testserver started with Metadata,
// OnlineSummaryKey and Serve: releases are published as the README says
// (release key on the release team's side, the server signing the summary
// and metadata freshness with its online key).
func newFixture(t *testing.T, ts *testserver.Server) *fixture {
	t.Helper()
	waitReady(t, ts.URL)
	work, err := ostree.Create(filepath.Join(t.TempDir(), "work"))
	if err != nil {
		t.Fatal(err)
	}
	rc := ts.Client(t, auth.RoleRelease)
	return &fixture{store: ts.Store, pub: ts.Publisher, admin: rc, commits: map[string]string{},
		rem: &release.Remote{Server: rc, Work: work, Signers: ts.Release.Signers, MetaSigners: ts.MetaSigners}}
}

// rootJSON copies the server's first TUF root where a device keeps it
// (trusted_root) and returns its path.
func rootJSON(t *testing.T, ts *testserver.Server) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(ts.MetaDir, "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "root.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// publish makes a signed release on testing, promotes it to stable and
// rolls it out to everyone there, completing the previous rollout.
func (f *fixture) publish(t *testing.T, version string) {
	t.Helper()
	f.publishTree(t, version, map[string]string{
		"usr/etc/os-release": "VERSION=" + version + "\n",
		"usr/bin/hello":      "#!/bin/sh\necho " + version + "\n",
	})
}

// publishTree publishes a tree of files (path → content, mode 0755) as
// version, as publish does.
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
	u0 := uint32(0)
	if _, _, err := f.rem.Publish(ctx, release.RemoteRequest{Channel: "testing", Arch: "x86_64", Ref: "mxos/10/x86_64/testing",
		Version: version, Source: src, Ramp: "none", Options: ostree.CommitOptions{OwnerUID: &u0, OwnerGID: &u0, NoXattrs: true}}); err != nil {
		t.Fatalf("publish %s: %v", version, err)
	}
	if f.rollout != "" {
		if _, err := f.admin.RolloutAction(ctx, f.rollout, client.ActionComplete, "next release"); err != nil {
			t.Fatal(err)
		}
	}
	_, sum, err := f.rem.Promote(ctx, "testing", "stable", "x86_64", stableRef, version, "100%")
	if err != nil {
		t.Fatalf("promote %s: %v", version, err)
	}
	ros, err := f.admin.Rollouts(ctx, "stable")
	if err != nil {
		t.Fatal(err)
	}
	for _, ro := range ros {
		if ro.Version == version {
			f.rollout = ro.ID
		}
	}
	if f.rollout == "" {
		t.Fatalf("no rollout of %s on stable: %+v", version, ros)
	}
	f.commits[version] = sum.String()
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

// agentEnv is an in-process server with the update API, release and
// online keys, signed channel metadata and release and device tokens.
type agentEnv struct {
	f         *fixture
	srv       *server.Server
	url       string
	keys      string
	root      string // the device's trusted_root
	online    string // the online public keys (insecure_no_metadata)
	verifiers []sign.Verifier
	tokens    map[auth.Role]string
}

func startAgentEnv(t *testing.T, registry bool) *agentEnv {
	t.Helper()
	ts := testserver.Start(t, testserver.Options{Registry: registry, Metadata: true, OnlineSummaryKey: true, Serve: true,
		Roles: []auth.Role{auth.RoleRelease, auth.RoleDevice}})
	return &agentEnv{f: newFixture(t, ts), srv: ts.Srv, url: ts.URL, keys: ts.Release.Dir, root: rootJSON(t, ts),
		online: publicDir(t, ts.Online.Dir), verifiers: ts.Release.Verifiers, tokens: ts.Tokens}
}

// publicDir copies the public keys of a key directory, as a device gets
// them (online_keys never holds a secret).
func publicDir(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "pub")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{sign.Ed25519PublicFile, sign.OpenPGPPublicFile} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// newTestAgent makes a device agent with its own sysroot and a passing
// health check, talking to url with token and trusting the release key
// directory keys and the TUF root rootJSON (as the README sets a device
// up); extra is appended to its configuration. With rootJSON empty, extra
// must say how the device runs without metadata.
func newTestAgent(t *testing.T, url, token, keys, rootJSON string, verifiers []sign.Verifier, id, extra string) (*Agent, *bytes.Buffer) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "sysroot")
	healthDir := filepath.Join(t.TempDir(), "health")
	writeCheck(t, healthDir, 0)
	trust := ""
	if rootJSON != "" {
		trust = "trusted_root: " + rootJSON + "\n"
	}
	cfg, err := ParseConfig([]byte("server: " + url + "\ndevice_id: " + id + "\nchannel: stable\narch: x86_64\ntrusted_keys: " + keys +
		"\n" + trust + "sysroot: " + root + "\nhealth_dir: " + healthDir + "\n" + extra))
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

// installByHand pulls ref (version) with the agent's puller and keys
// and makes it the current, good deployment, as an installer would.
func installByHand(t *testing.T, a *Agent, ref, version string) {
	t.Helper()
	ctx := context.Background()
	st, err := a.channelState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	online, err := a.summaryKeys(st)
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Puller.Pull(ctx, a.Repo, ref, pull.Options{SummaryKeys: online, CommitKeys: a.Puller.Verifiers})
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
	a, out := newTestAgent(t, env.url, env.tokens[auth.RoleDevice], env.keys, env.root, env.verifiers, "lab-pc-01", "")
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
