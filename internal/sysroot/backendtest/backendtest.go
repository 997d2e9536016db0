// Package backendtest is the shared contract suite of the device's
// deployment backends (updater.Backend): the pure-Go *sysroot.Sysroot and
// the stock `ostree admin` driver *ostreeadmin.Sysroot. Run drives one
// backend through what the agent does (deploy, switch, boot attempts, mark
// good, roll back, garbage-collect, reopen after a restart) and checks the
// results the agent relies on, so the two backends cannot drift apart. It
// is imported only from _test.go files.
//
// Where the backends legitimately differ, the contract names what both
// satisfy:
//   - the first Deploy on an empty `ostree admin` stateroot is the default
//     at once (ostree has nothing else to boot); the suite always
//     switches to its first deployment, after which Deploy never changes
//     the default;
//   - after Rollback, Previous is either no deployment (ostree undeploys
//     the abandoned one) or the abandoned deployment, whose commit is
//     marked bad; either way no later Rollback or Switch returns to it.
package backendtest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
)

// Backend is the method set of updater.Backend (an updater test checks the
// two stay equal); it is repeated here so the sysroot packages' tests can
// run the suite without importing the updater.
type Backend interface {
	Root() string
	RepoPath() string
	Deploy(ctx context.Context, repo *ostree.Repo, commit ostree.Checksum, origin sysroot.Origin) (sysroot.Deployment, error)
	Switch(ctx context.Context, d sysroot.Deployment) error
	Rollback(ctx context.Context, reason string) error
	MarkGood() error
	BootAttempt() (int, error)
	PendingBoot() (string, error)
	Current() (sysroot.Deployment, error)
	Previous() (sysroot.Deployment, error)
	Booted() (sysroot.Deployment, error)
	List() ([]sysroot.Deployment, error)
	IsBad(ostree.Checksum) (bool, error)
	BadCommits() (map[string]sysroot.BadCommit, error)
	Unmark(ostree.Checksum) (bool, error)
	GC(ctx context.Context, keep int) error
}

// Opener makes a new, empty backend whose RepoPath is an archive
// repository; reopen opens the same one again, as the agent does after a
// restart or a reboot. Tries must be sysroot.DefaultBootTries.
type Opener func(t *testing.T) (b Backend, reopen func() Backend)

// Run runs the contract; each subtest gets a new backend from open.
func Run(t *testing.T, open Opener) {
	t.Helper()
	for _, tc := range []struct {
		name string
		f    func(*testing.T, *env)
	}{
		{"Empty", testEmpty},
		{"DeploySwitchRollback", testDeploySwitchRollback},
		{"BootCounter", testBootCounter},
		{"EtcMerge", testEtcMerge},
		{"GC", testGC},
		{"BadInput", testBadInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, reopen := open(t)
			repo, err := ostree.Open(b.RepoPath())
			if err != nil {
				t.Fatalf("the backend's RepoPath: %v", err)
			}
			tc.f(t, &env{t: t, b: b, reopen: reopen, repo: repo})
		})
	}
}

var ctx = context.Background()

type env struct {
	t      *testing.T
	b      Backend
	reopen func() Backend
	repo   *ostree.Repo
	n      uint64
}

// commit stores a bootable tree of version (a kernel and initramfs where
// ostree admin looks, /usr/etc defaults, a program printing the version)
// in the backend's repository, with extra files on top.
func (e *env) commit(version string, extra map[string]string) ostree.Checksum {
	e.t.Helper()
	files := map[string]string{
		"usr/etc/os-release":                  "ID=mxos\nVERSION=" + version + "\n",
		"usr/etc/motd":                        "MxOS " + version + "\n",
		"usr/etc/removed.conf":                "a default the admin deletes\n",
		"usr/bin/hello":                       "#!/bin/sh\necho " + version + "\n",
		"usr/lib/modules/6.1.0/vmlinuz":       "a kernel\n",
		"usr/lib/modules/6.1.0/initramfs.img": "an initramfs\n",
	}
	for k, v := range extra {
		files[k] = v
	}
	dir := e.t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			e.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o755); err != nil {
			e.t.Fatal(err)
		}
	}
	root := uint32(0)
	txn, err := e.repo.Begin()
	if err != nil {
		e.t.Fatal(err)
	}
	defer txn.Close()
	tree, meta, err := txn.WriteTreeFromDir(ctx, dir, ostree.CommitOptions{OwnerUID: &root, OwnerGID: &root, NoXattrs: true})
	if err != nil {
		e.t.Fatal(err)
	}
	e.n++
	c, err := txn.WriteCommit(&ostree.Commit{Subject: version, Timestamp: uint64(time.Now().Unix()) + e.n, RootTree: tree, RootMeta: meta})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) deploy(c ostree.Checksum, version string) sysroot.Deployment {
	e.t.Helper()
	d, err := e.b.Deploy(ctx, e.repo, c, sysroot.Origin{Ref: "mxos/10/x86_64/stable", Version: version})
	if err != nil {
		e.t.Fatalf("deploy %s: %v", version, err)
	}
	return d
}

// switched commits version, deploys it and makes it the default.
func (e *env) switched(version string) (ostree.Checksum, sysroot.Deployment) {
	e.t.Helper()
	c := e.commit(version, nil)
	d := e.deploy(c, version)
	if err := e.b.Switch(ctx, d); err != nil {
		e.t.Fatalf("switch to %s: %v", version, err)
	}
	return c, e.current(c)
}

// current checks that the default deployment is of commit c and returns it.
func (e *env) current(c ostree.Checksum) sysroot.Deployment {
	e.t.Helper()
	d, err := e.b.Current()
	if err != nil {
		e.t.Fatalf("current: %v", err)
	}
	if d.Commit != c {
		e.t.Fatalf("current is %s (%s), want commit %s", d.Name, d.Origin.Version, c)
	}
	return d
}

func (e *env) pending() string {
	e.t.Helper()
	p, err := e.b.PendingBoot()
	if err != nil {
		e.t.Fatalf("pending boot: %v", err)
	}
	return p
}

func (e *env) bad(c ostree.Checksum) bool {
	e.t.Helper()
	bad, err := e.b.IsBad(c)
	if err != nil {
		e.t.Fatalf("is bad: %v", err)
	}
	return bad
}

func (e *env) names() []string {
	e.t.Helper()
	ds, err := e.b.List()
	if err != nil {
		e.t.Fatalf("list: %v", err)
	}
	var out []string
	for _, d := range ds {
		out = append(out, d.Origin.Version)
	}
	return out
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: %v, want an error wrapping %q", what, err, target)
	}
}

func testEmpty(t *testing.T, e *env) {
	_, err := e.b.Current()
	wantErr(t, "current", err, sysroot.ErrNoDeployment)
	_, err = e.b.Previous()
	wantErr(t, "previous", err, sysroot.ErrNoDeployment)
	_, err = e.b.Booted()
	wantErr(t, "booted", err, sysroot.ErrNoDeployment)
	if names := e.names(); len(names) != 0 {
		t.Errorf("list: %v", names)
	}
	if p := e.pending(); p != "" {
		t.Errorf("pending boot %q", p)
	}
	if bc, err := e.b.BadCommits(); err != nil || len(bc) != 0 {
		t.Errorf("bad commits: %v %v", bc, err)
	}
	wantErr(t, "rollback", e.b.Rollback(ctx, "nothing to roll back to"), sysroot.ErrNoDeployment)
	if err := e.b.GC(ctx, 0); err != nil {
		t.Errorf("gc: %v", err)
	}
}

func testDeploySwitchRollback(t *testing.T, e *env) {
	c1, d1 := e.switched("1.0")
	if d1.Origin.Ref != "mxos/10/x86_64/stable" || d1.Origin.Version != "1.0" || d1.Origin.Commit != c1.String() || d1.Origin.Created.IsZero() {
		t.Errorf("origin of v1: %+v", d1.Origin)
	}
	if got := read(t, filepath.Join(d1.Path, "usr/bin/hello")); !strings.Contains(got, "1.0") {
		t.Errorf("v1 deployment's usr/bin/hello: %q", got)
	}
	if got := read(t, filepath.Join(d1.Path, "etc/motd")); got != "MxOS 1.0\n" {
		t.Errorf("v1 deployment's etc/motd (from usr/etc): %q", got)
	}
	if err := e.b.MarkGood(); err != nil {
		t.Fatal(err)
	}

	// Deploy prepares; the default stays.
	c2 := e.commit("2.0", nil)
	d2 := e.deploy(c2, "2.0")
	if d2.Commit != c2 || d2.Origin.Version != "2.0" {
		t.Fatalf("deployed %+v", d2)
	}
	e.current(c1)
	if got := strings.Join(e.names(), " "); got != "1.0 2.0" {
		t.Errorf("list after deploying v2: %s, want 1.0 2.0 (oldest first)", got)
	}
	if p := e.pending(); p != "" {
		t.Errorf("deploy left a pending boot %q", p)
	}

	// Switch makes it the default, pending its first good boot.
	if err := e.b.Switch(ctx, d2); err != nil {
		t.Fatal(err)
	}
	cur := e.current(c2)
	if prev, err := e.b.Previous(); err != nil || prev.Commit != c1 {
		t.Fatalf("previous after switch: %+v %v, want v1", prev, err)
	}
	if p := e.pending(); p != cur.Name {
		t.Errorf("pending boot %q, want %s", p, cur.Name)
	}
	if err := e.b.Switch(ctx, cur); err != nil {
		t.Errorf("switch to the default again: %v", err)
	}

	// A restart keeps all of it.
	e.b = e.reopen()
	e.current(c2)
	if prev, err := e.b.Previous(); err != nil || prev.Commit != c1 {
		t.Fatalf("previous after reopen: %+v %v", prev, err)
	}
	if p := e.pending(); p != cur.Name {
		t.Errorf("pending boot after reopen %q, want %s", p, cur.Name)
	}

	// Rollback returns to v1 and never again to v2.
	if err := e.b.Rollback(ctx, "health check failed"); err != nil {
		t.Fatal(err)
	}
	e.current(c1)
	if !e.bad(c2) || e.bad(c1) {
		t.Errorf("after rollback: v2 bad %v, v1 bad %v", e.bad(c2), e.bad(c1))
	}
	if bc, err := e.b.BadCommits(); err != nil || bc[c2.String()].Reason != "health check failed" || bc[c2.String()].Time.IsZero() {
		t.Errorf("bad commits: %+v %v", bc, err)
	}
	if p := e.pending(); p != "" {
		t.Errorf("pending boot after rollback %q", p)
	}
	if prev, err := e.b.Previous(); err == nil && !e.bad(prev.Commit) {
		t.Errorf("previous after rollback is %s, a rollback target that is not the abandoned commit", prev.Name)
	} else if err != nil {
		wantErr(t, "previous after rollback", err, sysroot.ErrNoDeployment)
	}
	_, err := e.b.Deploy(ctx, e.repo, c2, sysroot.Origin{Version: "2.0"})
	wantErr(t, "deploy of the abandoned commit", err, sysroot.ErrBadCommit)
	if err := e.b.Switch(ctx, d2); !errors.Is(err, sysroot.ErrBadCommit) && !errors.Is(err, sysroot.ErrNoDeployment) {
		t.Errorf("switch to the abandoned deployment: %v, want ErrBadCommit or ErrNoDeployment", err)
	}
	if err := e.b.Rollback(ctx, "again"); err == nil {
		t.Error("a second rollback succeeded")
	}
	e.current(c1)

	e.b = e.reopen()
	e.current(c1)
	if !e.bad(c2) {
		t.Error("the bad mark did not survive a restart")
	}

	// Unmark (after a rollback by hand) forgets the mark, for good, and
	// changes no deployment; a commit not marked reports false.
	if ok, err := e.b.Unmark(c2); !ok || err != nil {
		t.Fatalf("unmark: %v %v", ok, err)
	}
	if ok, err := e.b.Unmark(c2); ok || err != nil {
		t.Errorf("second unmark: %v %v", ok, err)
	}
	e.current(c1)
	if e.bad(c2) {
		t.Error("still marked after unmark")
	}
	if bad, err := e.reopen().IsBad(c2); bad || err != nil {
		t.Errorf("marked again after a restart: %v %v", bad, err)
	}
}

func testBootCounter(t *testing.T, e *env) {
	c1, _ := e.switched("1.0")
	if err := e.b.MarkGood(); err != nil {
		t.Fatal(err)
	}
	if n, err := e.b.BootAttempt(); n != 0 || err != nil {
		t.Errorf("boot attempt with nothing pending: %d %v", n, err)
	}
	if b, err := e.b.Booted(); err != nil || b.Commit != c1 {
		t.Errorf("booted: %+v %v", b, err)
	}

	// A good boot of v2 ends its trial.
	c2, d2 := e.switched("2.0")
	if n, err := e.b.BootAttempt(); n != sysroot.DefaultBootTries-1 || err != nil {
		t.Fatalf("first boot of v2: %d %v", n, err)
	}
	if b, err := e.b.Booted(); err != nil || b.Name != d2.Name {
		t.Errorf("booted: %+v %v, want %s", b, err, d2.Name)
	}
	if err := e.b.MarkGood(); err != nil {
		t.Fatal(err)
	}
	if p := e.pending(); p != "" {
		t.Errorf("pending after mark good: %q", p)
	}
	if n, err := e.b.BootAttempt(); n != 0 || err != nil {
		t.Errorf("boot after mark good: %d %v", n, err)
	}
	e.current(c2)

	// v3 never boots well: the counter runs out and v2 is the default again.
	c3, _ := e.switched("3.0")
	for want := sysroot.DefaultBootTries - 1; want >= 0; want-- {
		n, err := e.b.BootAttempt()
		if err != nil || n != want {
			t.Fatalf("boot attempt: %d %v, want %d left", n, err, want)
		}
		e.b = e.reopen() // a reboot
	}
	_, err := e.b.BootAttempt()
	wantErr(t, "boot with no attempts left", err, sysroot.ErrCounterExhausted)
	e.current(c2)
	if !e.bad(c3) {
		t.Error("v3 not marked bad after its boot counter ran out")
	}
	if p := e.pending(); p != "" {
		t.Errorf("pending after the counter ran out: %q", p)
	}
}

func testEtcMerge(t *testing.T, e *env) {
	_, d1 := e.switched("1.0")
	etc := filepath.Join(d1.Path, "etc")
	for p, c := range map[string]string{"motd": "edited by the admin\n", "local.conf": "added by the admin\n"} {
		if err := os.WriteFile(filepath.Join(etc, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(etc, "removed.conf")); err != nil {
		t.Fatal(err)
	}
	d2 := e.deploy(e.commit("2.0", map[string]string{"usr/etc/new.conf": "new in 2.0\n"}), "2.0")
	etc2 := filepath.Join(d2.Path, "etc")
	for p, want := range map[string]string{
		"motd":       "edited by the admin\n",  // modified locally: kept
		"local.conf": "added by the admin\n",   // added locally: kept
		"os-release": "ID=mxos\nVERSION=2.0\n", // untouched: the new default
		"new.conf":   "new in 2.0\n",           // new default
	} {
		if got, err := os.ReadFile(filepath.Join(etc2, p)); err != nil || string(got) != want {
			t.Errorf("v2 etc/%s: %q %v, want %q", p, got, err, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(etc2, "removed.conf")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("etc/removed.conf, deleted by the admin, is back in v2: %v", err)
	}
	if got := read(t, filepath.Join(d2.Path, "usr/etc/motd")); got != "MxOS 2.0\n" {
		t.Errorf("v2 usr/etc/motd: %q", got)
	}
}

func testGC(t *testing.T, e *env) {
	_, d1 := e.switched("1.0")
	e.switched("2.0")
	c3, _ := e.switched("3.0")
	if err := e.b.MarkGood(); err != nil {
		t.Fatal(err)
	}
	d4 := e.deploy(e.commit("4.0", nil), "4.0") // staged for a later switch
	if got := strings.Join(e.names(), " "); got != "1.0 2.0 3.0 4.0" {
		t.Fatalf("before gc: %s", got)
	}
	if err := e.b.GC(ctx, 0); err != nil {
		t.Fatal(err)
	}
	// The default (3.0), its rollback target (2.0) and the staged 4.0 stay.
	if got := strings.Join(e.names(), " "); got != "2.0 3.0 4.0" {
		t.Errorf("after gc: %s, want 2.0 3.0 4.0", got)
	}
	if _, err := os.Lstat(d1.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("v1's directory is still there after gc: %v", err)
	}
	e.current(c3)
	if prev, err := e.b.Previous(); err != nil || prev.Origin.Version != "2.0" {
		t.Errorf("previous after gc: %+v %v", prev, err)
	}
	if err := e.b.Switch(ctx, d4); err != nil {
		t.Fatalf("switch to the staged deployment after gc: %v", err)
	}
	if got := read(t, filepath.Join(e.current(d4.Commit).Path, "usr/bin/hello")); !strings.Contains(got, "4.0") {
		t.Errorf("v4 after gc: %q", got)
	}
}

func testBadInput(t *testing.T, e *env) {
	c1, d1 := e.switched("1.0")
	err := e.b.Switch(ctx, sysroot.Deployment{Name: c1.String() + ".99", Commit: c1, Serial: 99, Path: d1.Path + "9"})
	wantErr(t, "switch to an unknown deployment", err, sysroot.ErrNoDeployment)
	missing, _ := ostree.ParseChecksum(strings.Repeat("ab", 32))
	if _, err := e.b.Deploy(ctx, e.repo, missing, sysroot.Origin{Version: "missing"}); err == nil {
		t.Error("deploy of a commit not in the repository succeeded")
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	c2 := e.commit("2.0", nil)
	if _, err := e.b.Deploy(cancelled, e.repo, c2, sysroot.Origin{Version: "2.0"}); err == nil {
		t.Error("deploy with a cancelled context succeeded")
	}
	if got := strings.Join(e.names(), " "); got != "1.0" {
		t.Errorf("failed deploys left deployments: %s", got)
	}
	e.current(c1)
	d2 := e.deploy(c2, "2.0")
	if err := e.b.Switch(cancelled, d2); err == nil {
		t.Error("switch with a cancelled context succeeded")
	}
	e.current(c1)
	if err := e.b.Rollback(cancelled, "cancelled"); err == nil {
		t.Error("rollback with a cancelled context succeeded")
	}
	if e.bad(c1) {
		t.Error("a cancelled rollback marked the default bad")
	}
}
