package updater

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/rollout"
	"github.com/mxos-linux/mxos-update/internal/server"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
	"github.com/mxos-linux/mxos-update/internal/sysroot/ostreeadmin"
	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// requireAdminRoot: ostree admin deploy writes files owned by the
// commit's owners, so it needs root.
func requireAdminRoot(t *testing.T) {
	t.Helper()
	testtool.RequireRoot(t, "ostree admin deploy writes files owned by the commit's owners")
}

// publishBootable is fixture.publish with a tree stock `ostree admin
// deploy` accepts: a kernel and initramfs under usr/lib/modules, the /etc
// defaults in usr/etc and an os-release with ID.
func (f *fixture) publishBootable(t *testing.T, version string) {
	t.Helper()
	f.publishTree(t, version, map[string]string{
		"usr/etc/os-release":                  "ID=mxos\nPRETTY_NAME=\"MxOS " + version + "\"\nVERSION=" + version + "\n",
		"usr/bin/hello":                       "#!/bin/sh\necho " + version + "\n",
		"usr/lib/modules/6.1.0/vmlinuz":       "a kernel\n",
		"usr/lib/modules/6.1.0/initramfs.img": "an initramfs\n",
	})
}

// newOstreeAgent makes a device agent on the `ostree` backend: a
// throw-away sysroot made by stock `ostree admin init-fs` and `os-init`,
// driven through ostreeadmin, with a passing health check.
func newOstreeAgent(t *testing.T, env *agentEnv, id string) (*Agent, *ostreeadmin.Sysroot) {
	t.Helper()
	testtool.Require(t, "ostree")
	requireAdminRoot(t)
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "sysroot")
	// t.TempDir's file system may not support the immutable bit.
	opts := ostreeadmin.Options{Env: []string{"OSTREE_SYSROOT_DEBUG=mutable-deployments"}}
	if err := ostreeadmin.Init(ctx, root, opts); err != nil {
		t.Fatal(err)
	}
	sys, err := ostreeadmin.Open(ctx, root, opts)
	if err != nil {
		t.Fatal(err)
	}
	healthDir := filepath.Join(t.TempDir(), "health")
	writeCheck(t, healthDir, 0)
	cfg, err := ParseConfig([]byte("server: " + env.url + "\ndevice_id: " + id + "\nchannel: stable\narch: x86_64\ntrusted_keys: " +
		env.keys + "\ntrusted_root: " + env.root + "\nsysroot: " + root + "\nbackend: ostree\nhealth_dir: " + healthDir + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	local, err := ostree.Create(sys.RepoPath())
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(env.url, env.tokens[auth.RoleDevice])
	if err != nil {
		t.Fatal(err)
	}
	return &Agent{Cfg: cfg, Client: c, Puller: &pull.Puller{URLs: cfg.Mirrors, Verifiers: env.verifiers},
		Sys: sys, Repo: local, Out: &strings.Builder{}}, sys
}

// adminCommits returns the commits `ostree admin status` lists, default
// first, with their versions.
func adminCommits(t *testing.T, sys *ostreeadmin.Sysroot) (commits, versions []string) {
	t.Helper()
	st, err := sys.AdminStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range st {
		if e.Stateroot != sys.Stateroot() {
			t.Fatalf("ostree admin status lists a deployment of stateroot %q: %+v", e.Stateroot, e)
		}
		commits = append(commits, e.Commit.String())
		versions = append(versions, e.Version)
	}
	return commits, versions
}

// TestAgentEndToEndOstreeAdmin is TestAgentEndToEnd on the `ostree`
// backend: releases published by mxos-server, pulled and verified by the
// agent, deployed, switched and rolled back by stock `ostree admin`, with
// ostree's own status agreeing at every step and the server counting the
// verdicts.
func TestAgentEndToEndOstreeAdmin(t *testing.T) {
	ctx := context.Background()
	env := startAgentEnv(t, false)
	f, store := env.f, env.f.store
	a, sys := newOstreeAgent(t, env, "lab-pc-02")
	t.Cleanup(func() { t.Log(a.Out.(*strings.Builder).String()) })
	stats := func(rolloutID string) rollout.Stats {
		t.Helper()
		s, err := store.RolloutStats(ctx, rolloutID, time.Now().Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	// 1. A fresh machine (empty stateroot) takes the current release; on
	// an empty stateroot ostree makes it the default at once.
	f.publishBootable(t, "10.0.0")
	if changed, err := a.Upgrade(ctx); err != nil || !changed {
		t.Fatalf("upgrade of a fresh machine: changed=%v err=%v", changed, err)
	}
	if commits, _ := adminCommits(t, sys); len(commits) != 1 || commits[0] != f.commits["10.0.0"] {
		t.Fatalf("ostree admin status after the first install: %v, want [%s]", commits, f.commits["10.0.0"])
	}
	if err := a.Boot(ctx); err != nil {
		t.Fatalf("first boot: %v", err)
	}
	if s := stats(f.rollout); s.Successes != 1 {
		t.Fatalf("rollout of 10.0.0 after its first boot: %+v", s)
	}
	first := mustCur(t, a)

	// 2. Upgrade to the newest of two releases: ostree's default is the
	// new commit, the old deployment next in line (ostree prints
	// "(rollback)" only beside a booted deployment, which a throw-away
	// sysroot has none of) and the backend's rollback target.
	f.publishBootable(t, "10.0.1")
	f.publishBootable(t, "10.0.2")
	if changed, err := a.Upgrade(ctx); err != nil || !changed {
		t.Fatalf("upgrade to 10.0.2: changed=%v err=%v", changed, err)
	}
	commits, versions := adminCommits(t, sys)
	if len(commits) != 2 || commits[0] != f.commits["10.0.2"] || versions[0] != "10.0.2" ||
		commits[1] != f.commits["10.0.0"] || versions[1] != "10.0.0" {
		t.Fatalf("ostree admin status after the upgrade: %v %v, want 10.0.2 then 10.0.0", commits, versions)
	}
	cur := mustCur(t, a)
	if cur.Commit.String() != f.commits["10.0.2"] || cur.Origin.Version != "10.0.2" {
		t.Fatalf("current after the upgrade: %+v", cur)
	}
	if b, err := os.ReadFile(filepath.Join(cur.Path, "usr/bin/hello")); err != nil || !strings.Contains(string(b), "10.0.2") {
		t.Fatalf("deployed tree: %q %v", b, err)
	}
	if prev, err := a.Sys.Previous(); err != nil || prev.Name != first.Name || prev.Commit.String() != f.commits["10.0.0"] {
		t.Fatalf("previous after the upgrade: %+v %v, want %s", prev, err, first.Name)
	}

	// 3. Healthy boot: committed and counted; the rollback target stays.
	if err := a.Boot(ctx); err != nil {
		t.Fatalf("boot of 10.0.2: %v", err)
	}
	goodRollout := f.rollout
	if s := stats(goodRollout); s.Successes != 1 || s.Failures != 0 {
		t.Fatalf("rollout of 10.0.2 after a healthy boot: %+v", s)
	}
	if p, err := a.Sys.PendingBoot(); err != nil || p != "" {
		t.Fatalf("pending boot after the healthy boot: %q %v", p, err)
	}
	if commits, _ := adminCommits(t, sys); len(commits) != 2 || commits[0] != f.commits["10.0.2"] {
		t.Fatalf("ostree admin status after the healthy boot: %v", commits)
	}
	if resp, err := a.Check(ctx); err != nil || resp.Update || resp.Reason != "up-to-date" {
		t.Fatalf("check when up to date: %+v %v", resp, err)
	}

	// 4. A release whose required check fails: ostree's default goes back
	// to 10.0.2, the failure is reported and 10.0.3 marked bad.
	f.publishBootable(t, "10.0.3")
	writeCheck(t, a.Cfg.HealthDir, 1)
	if changed, err := a.Upgrade(ctx); err != nil || !changed {
		t.Fatalf("upgrade to 10.0.3: changed=%v err=%v", changed, err)
	}
	if commits, _ := adminCommits(t, sys); len(commits) < 2 || commits[0] != f.commits["10.0.3"] || commits[1] != f.commits["10.0.2"] {
		t.Fatalf("ostree admin status after the upgrade to 10.0.3: %v", commits)
	}
	if err := a.Boot(ctx); err != nil {
		t.Fatalf("boot of 10.0.3: %v", err)
	}
	commits, versions = adminCommits(t, sys)
	if len(commits) == 0 || commits[0] != f.commits["10.0.2"] || versions[0] != "10.0.2" {
		t.Fatalf("ostree admin status after the rollback: %v %v, want 10.0.2 the default", commits, versions)
	}
	for _, c := range commits {
		if c == f.commits["10.0.3"] {
			t.Fatalf("10.0.3 still deployed after the rollback: %v", commits)
		}
	}
	if after := mustCur(t, a); after.Name != cur.Name {
		t.Fatalf("current after the rollback: %s, want %s", after.Name, cur.Name)
	}
	st, err := a.Status(ctx)
	if err != nil || st.Current == nil || st.Current.Version != "10.0.2" || st.Current.Commit != f.commits["10.0.2"] {
		t.Fatalf("status after the rollback: %+v %v", st, err)
	}
	// ostree admin undeploys the abandoned deployment, so there is no
	// previous one to show (the pure-Go backend keeps it as previous).
	if st.Previous != nil {
		t.Fatalf("previous after the rollback: %+v", st.Previous)
	}
	if prev, err := a.Sys.Previous(); !errors.Is(err, sysroot.ErrNoDeployment) {
		t.Fatalf("previous after the rollback: %+v %v, want ErrNoDeployment", prev, err)
	}
	if _, bad := st.Bad[f.commits["10.0.3"]]; !bad {
		t.Fatalf("10.0.3 not marked bad: %+v", st.Bad)
	}
	if s := stats(f.rollout); s.Failures != 1 || s.Successes != 0 {
		t.Fatalf("rollout of 10.0.3 after the rollback: %+v", s)
	}
	if s := stats(goodRollout); s.Successes != 1 || s.Failures != 0 {
		t.Fatalf("rollout of 10.0.2 after 10.0.3's rollback: %+v", s)
	}

	// 5. 10.0.3 is not installed again.
	before, err := a.Sys.List()
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := a.Check(ctx); err != nil || resp.Update || resp.Reason != string(rollout.ReasonRolledBack) {
		t.Fatalf("check after the rollback: %+v %v", resp, err)
	}
	if changed, err := a.Upgrade(ctx); err != nil || changed {
		t.Fatalf("upgrade after the rollback: changed=%v err=%v", changed, err)
	}
	after, err := a.Sys.List()
	if err != nil || len(after) != len(before) {
		t.Fatalf("deployments after the refused upgrade: %v %v (before %v)", after, err, before)
	}
	if commits, _ := adminCommits(t, sys); len(commits) == 0 || commits[0] != f.commits["10.0.2"] {
		t.Fatalf("ostree admin status after the refused upgrade: %v", commits)
	}
	// A server that no longer knows this machine (say, re-registered
	// under a new id) offers 10.0.3 again: the local bad mark refuses it.
	a.Cfg.DeviceID = "lab-pc-02-new"
	newID, err := server.CreateTokenWith(ctx, env.f.store, server.TokenOptions{Name: "new-id", Role: auth.RoleDevice, By: "test", Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if a.Client, err = a.Client.WithToken(newID.Token); err != nil { // one device token speaks for one id
		t.Fatal(err)
	}
	if resp, err := a.Check(ctx); err != nil || !resp.Update || resp.Target == nil || resp.Target.Commit != f.commits["10.0.3"] {
		t.Fatalf("check under a new id: %+v %v", resp, err)
	}
	if changed, err := a.Upgrade(ctx); err != nil || changed {
		t.Fatalf("upgrade to the locally bad 10.0.3: changed=%v err=%v", changed, err)
	}
	if after, err := a.Sys.List(); err != nil || len(after) != len(before) {
		t.Fatalf("deployments after refusing the bad commit: %v %v (before %v)", after, err, before)
	}
	if c := mustCur(t, a); c.Commit.String() != f.commits["10.0.2"] {
		t.Fatalf("current after refusing the bad commit: %+v", c)
	}

	// An accepted version is not rolled back by a later failing check.
	if err := a.Boot(ctx); err != nil {
		t.Fatalf("boot on the accepted version: %v", err)
	}
	if c := mustCur(t, a); c.Commit.String() != f.commits["10.0.2"] {
		t.Fatalf("accepted version changed: %+v", c)
	}
}

func mustCur(t *testing.T, a *Agent) sysroot.Deployment {
	t.Helper()
	d, err := a.Sys.Current()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestAgentOstreeAdminBootCounter: an update on the `ostree` backend that
// never lives to its health verdict (each boot counted, none judged) is
// rolled back by the boot counter through ostree admin once its tries are
// used up, reported to the server and marked bad.
func TestAgentOstreeAdminBootCounter(t *testing.T) {
	ctx := context.Background()
	env := startAgentEnv(t, false)
	f, store := env.f, env.f.store
	a, sys := newOstreeAgent(t, env, "kiosk-03")
	t.Cleanup(func() { t.Log(a.Out.(*strings.Builder).String()) })

	f.publishBootable(t, "10.0.0")
	if changed, err := a.Upgrade(ctx); err != nil || !changed {
		t.Fatalf("first install: changed=%v err=%v", changed, err)
	}
	if err := a.Boot(ctx); err != nil {
		t.Fatal(err)
	}
	f.publishBootable(t, "10.0.1")
	if changed, err := a.Upgrade(ctx); err != nil || !changed {
		t.Fatalf("upgrade to 10.0.1: changed=%v err=%v", changed, err)
	}
	// Boots that died before the agent's health step.
	for i := 0; i < sysroot.DefaultBootTries; i++ {
		if _, err := a.Sys.BootAttempt(); err != nil {
			t.Fatalf("boot attempt %d: %v", i+1, err)
		}
	}
	if commits, _ := adminCommits(t, sys); len(commits) != 2 || commits[0] != f.commits["10.0.1"] {
		t.Fatalf("ostree admin status before the counter runs out: %v", commits)
	}
	if err := a.Boot(ctx); err != nil {
		t.Fatalf("boot with the counter used up: %v", err)
	}
	commits, _ := adminCommits(t, sys)
	if len(commits) != 1 || commits[0] != f.commits["10.0.0"] {
		t.Fatalf("ostree admin status after the counter ran out: %v, want [%s]", commits, f.commits["10.0.0"])
	}
	if bad, err := a.Sys.BadCommits(); err != nil || len(bad) != 1 || bad[f.commits["10.0.1"]].Reason == "" {
		t.Fatalf("bad commits after the counter ran out: %+v %v, want 10.0.1", bad, err)
	}
	s, err := store.RolloutStats(ctx, f.rollout, time.Now().Add(-time.Hour))
	if err != nil || s.Failures != 1 || s.Successes != 0 {
		t.Fatalf("rollout of 10.0.1 after the counter ran out: %+v %v", s, err)
	}
	if changed, err := a.Upgrade(ctx); err != nil || changed {
		t.Fatalf("upgrade after the counter ran out: changed=%v err=%v", changed, err)
	}
	// The next boot, on 10.0.0, is healthy and judges nothing.
	if err := a.Boot(ctx); err != nil {
		t.Fatal(err)
	}
	if c := mustCur(t, a); c.Commit.String() != f.commits["10.0.0"] {
		t.Fatalf("current after the next boot: %+v", c)
	}
}
