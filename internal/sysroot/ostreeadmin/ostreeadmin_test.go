package ostreeadmin

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
)

func TestDeploySwitchRollback(t *testing.T) {
	ctx := context.Background()
	s := newSysroot(t, Options{})
	c1 := commitTree(t, s, "1.0", true)
	c2 := commitTree(t, s, "2.0", true)

	d1 := deploy(t, s, c1, "1.0")
	if err := s.Switch(ctx, d1); err != nil {
		t.Fatal(err)
	}
	if got := order(t, s); !equal(got, []string{d1.Name}) {
		t.Fatalf("after v1: %v", got)
	}

	// Deploy stages: the default stays v1, v2 follows it in the boot menu.
	d2 := deploy(t, s, c2, "2.0")
	if got := order(t, s); !equal(got, []string{d1.Name, d2.Name}) {
		t.Fatalf("after staging v2: %v", got)
	}
	if cur := mustCurrent(t, s); cur.Name != d1.Name {
		t.Fatalf("staging changed the default to %s", cur.Name)
	}
	if b, err := os.ReadFile(filepath.Join(d2.Path, "usr/bin/hello")); err != nil || !strings.Contains(string(b), "2.0") {
		t.Fatalf("v2 deployment content: %q %v", b, err)
	}

	if err := s.Switch(ctx, d2); err != nil {
		t.Fatal(err)
	}
	if got := order(t, s); !equal(got, []string{d2.Name, d1.Name}) {
		t.Fatalf("after switching to v2: %v (want the staged name %s kept)", got, d2.Name)
	}
	cur, prev := mustCurrent(t, s), mustPrevious(t, s)
	if cur.Commit != c2 || cur.Origin.Version != "2.0" || cur.Origin.Ref != "mxos/test" || prev.Commit != c1 || prev.Origin.Version != "1.0" {
		t.Fatalf("current %+v previous %+v", cur, prev)
	}
	if p, _ := s.PendingBoot(); p != d2.Name {
		t.Fatalf("pending boot %q, want %s", p, d2.Name)
	}
	if refs, _ := s.keepRefs(ctx, s.SysrootRepoPath()); len(refs) != 0 {
		t.Fatalf("keep refs left in ostree/repo: %v", refs)
	}

	if err := s.Rollback(ctx, "health check failed"); err != nil {
		t.Fatal(err)
	}
	if got := order(t, s); !equal(got, []string{d1.Name}) {
		t.Fatalf("after rollback: %v", got)
	}
	if exists(d2.Path) {
		t.Fatal("rolled-back deployment still on disk")
	}
	if bad, _ := s.IsBad(c2); !bad {
		t.Fatal("v2 not marked bad")
	}
	if bc, _ := s.BadCommits(); bc[c2.String()].Reason != "health check failed" {
		t.Fatalf("bad commits: %+v", bc)
	}
	if _, err := s.Previous(); !isErr(err, sysroot.ErrNoDeployment) {
		t.Fatalf("previous after rollback: %v", err)
	}
	if p, _ := s.PendingBoot(); p != "" {
		t.Fatalf("pending after rollback: %q", p)
	}
	// The abandoned commit is never deployed or switched to again.
	if _, err := s.Deploy(ctx, stagingRepo(t, s), c2, sysroot.Origin{}); !isErr(err, sysroot.ErrBadCommit) {
		t.Fatalf("deploy of a bad commit: %v", err)
	}
	if err := s.Switch(ctx, d2); !isErr(err, sysroot.ErrNoDeployment) {
		t.Fatalf("switch to the undeployed v2: %v", err)
	}
}

func mustPrevious(t testing.TB, s *Sysroot) sysroot.Deployment {
	t.Helper()
	d, err := s.Previous()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// A deployment staged while v2 is the default sits between v2 and v1 in
// ostree's order; rolling back must not make it the default.
func TestRollbackSkipsStaged(t *testing.T) {
	ctx := context.Background()
	s := newSysroot(t, Options{})
	c1, c2, c3 := commitTree(t, s, "1.0", true), commitTree(t, s, "2.0", true), commitTree(t, s, "3.0", true)
	d1 := deploy(t, s, c1, "1.0")
	d2 := deploy(t, s, c2, "2.0")
	if err := s.Switch(ctx, d2); err != nil {
		t.Fatal(err)
	}
	d3 := deploy(t, s, c3, "3.0")
	if got := order(t, s); !equal(got, []string{d2.Name, d3.Name, d1.Name}) {
		t.Fatalf("before rollback: %v", got)
	}
	if p := mustPrevious(t, s); p.Name != d1.Name {
		t.Fatalf("previous is %s, want %s (the staged v3 is not a rollback target)", p.Name, d1.Name)
	}
	if err := s.Rollback(ctx, "by hand"); err != nil {
		t.Fatal(err)
	}
	if got := order(t, s); !equal(got, []string{d1.Name}) {
		t.Fatalf("after rollback: %v", got)
	}
	if bad, _ := s.IsBad(c3); bad {
		t.Fatal("the staged v3 was marked bad; only the abandoned default is")
	}
}

func TestBootCounterRollsBack(t *testing.T) {
	ctx := context.Background()
	s := newSysroot(t, Options{})
	s.Tries = 2
	c1, c2 := commitTree(t, s, "1.0", true), commitTree(t, s, "2.0", true)
	d1 := deploy(t, s, c1, "1.0")
	if err := s.Switch(ctx, d1); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkGood(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.BootAttempt(); err != nil || n != 0 {
		t.Fatalf("boot with nothing pending: %d %v", n, err)
	}
	d2 := deploy(t, s, c2, "2.0")
	if err := s.Switch(ctx, d2); err != nil {
		t.Fatal(err)
	}
	for want := 1; want >= 0; want-- {
		n, err := s.BootAttempt()
		if err != nil || n != want {
			t.Fatalf("boot attempt: %d %v, want %d", n, err, want)
		}
		if b, err := s.Booted(); err != nil || b.Name != d2.Name {
			t.Fatalf("booted: %+v %v", b, err)
		}
	}
	if _, err := s.BootAttempt(); !isErr(err, sysroot.ErrCounterExhausted) {
		t.Fatalf("third boot: %v", err)
	}
	if got := order(t, s); !equal(got, []string{d1.Name}) {
		t.Fatalf("after exhausted counter: %v", got)
	}
	if bad, _ := s.IsBad(c2); !bad {
		t.Fatal("v2 not marked bad")
	}

	// A good boot clears the counter.
	c3 := commitTree(t, s, "3.0", true)
	d3 := deploy(t, s, c3, "3.0")
	if err := s.Switch(ctx, d3); err != nil {
		t.Fatal(err)
	}
	if n, err := s.BootAttempt(); err != nil || n != 1 {
		t.Fatalf("boot of v3: %d %v", n, err)
	}
	if err := s.MarkGood(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.BootAttempt(); err != nil || n != 0 {
		t.Fatalf("boot after mark good: %d %v", n, err)
	}
	if cur := mustCurrent(t, s); cur.Name != d3.Name {
		t.Fatalf("current %s", cur.Name)
	}
}

// On the running system ostree refuses to undeploy the booted
// deployment: rollback re-deploys the previous commit as the default and
// the abandoned deployment stays until a GC after the next boot.
func TestRollbackOfBootedDeployment(t *testing.T) {
	ctx := context.Background()
	s := newSysroot(t, Options{})
	c1, c2 := commitTree(t, s, "1.0", true), commitTree(t, s, "2.0", true)
	d1 := deploy(t, s, c1, "1.0")
	d2 := deploy(t, s, c2, "2.0")
	if err := s.Switch(ctx, d2); err != nil {
		t.Fatal(err)
	}
	// "Boot" v2: its directory is the running root.
	s = reopen(t, s, Options{BootedRoot: d2.Path})
	if b, err := s.Booted(); err != nil || b.Name != d2.Name {
		t.Fatalf("booted: %+v %v", b, err)
	}
	if err := s.undeploy(ctx, d2.Name); err == nil {
		t.Fatal("undeploy of the running deployment was allowed")
	}
	if err := s.Rollback(ctx, "health check failed"); err != nil {
		t.Fatal(err)
	}
	got := order(t, s)
	cur := mustCurrent(t, s)
	if len(got) != 2 || cur.Commit != c1 || got[1] != d2.Name || exists(d1.Path) {
		t.Fatalf("after rollback of the booted v2: %v (current %s)", got, cur.Name)
	}
	if cur.Origin.Version != "1.0" || cur.Origin.Ref != "mxos/test" {
		t.Fatalf("re-deployed v1 lost its origin: %+v", cur.Origin)
	}
	if p := mustPrevious(t, s); p.Name != d2.Name {
		t.Fatalf("previous %s, want the abandoned %s", p.Name, d2.Name)
	}
	if bad, _ := s.IsBad(c2); !bad {
		t.Fatal("v2 not marked bad")
	}
	// After rebooting into v1, GC removes the abandoned deployment.
	s = reopen(t, s, Options{BootedRoot: cur.Path})
	if err := s.GC(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if got := order(t, s); !equal(got, []string{cur.Name}) {
		t.Fatalf("after gc: %v", got)
	}
}

func TestGC(t *testing.T) {
	ctx := context.Background()
	s := newSysroot(t, Options{})
	var cs []ostree.Checksum
	var ds []sysroot.Deployment
	for _, v := range []string{"1.0", "2.0", "3.0"} {
		c := commitTree(t, s, v, true)
		d := deploy(t, s, c, v)
		if err := s.Switch(ctx, d); err != nil {
			t.Fatal(err)
		}
		cs, ds = append(cs, c), append(ds, d)
	}
	c4 := commitTree(t, s, "4.0", true)
	d4 := deploy(t, s, c4, "4.0") // staged for a later switch
	if got := order(t, s); len(got) != 4 {
		t.Fatalf("before gc: %v", got)
	}
	if err := s.GC(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if got := order(t, s); !equal(got, []string{ds[2].Name, d4.Name, ds[1].Name}) {
		t.Fatalf("after gc: %v (want current, staged, previous)", got)
	}
	if exists(ds[0].Path) {
		t.Fatal("v1 deployment still on disk")
	}
	repo := stagingRepo(t, s)
	if repo.HasObject(cs[0], ostree.ObjCommit) {
		t.Fatal("staging repository still holds v1")
	}
	for _, c := range append(cs[1:], c4) {
		if !repo.HasObject(c, ostree.ObjCommit) {
			t.Fatalf("staging repository lost deployed commit %s", c)
		}
		if err := repo.CheckComplete(c); err != nil {
			t.Fatalf("staging repository: %v", err)
		}
	}
	// The v1 objects are gone from the sysroot's repository too.
	if _, err := s.sysrootCommit(cs[0]); err == nil {
		t.Fatal("ostree/repo still holds v1")
	}
	// keep=1 keeps one more.
	if err := s.Switch(ctx, d4); err != nil {
		t.Fatal(err)
	}
	if err := s.GC(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got := order(t, s); !equal(got, []string{d4.Name, ds[2].Name, ds[1].Name}) {
		t.Fatalf("after gc keep=1: %v", got)
	}
}

// A sysroot deployed by an image builder with stock ostree: the backend
// reads its deployment and copies the commit into the staging repository.
func TestOpenSeedsForeignDeployment(t *testing.T) {
	ctx := context.Background()
	s := newSysroot(t, Options{})
	src := filepath.Join(t.TempDir(), "src")
	tree := t.TempDir()
	writeTree(t, tree, "0.9", true)
	for _, args := range [][]string{
		{"init", "--repo=" + src, "--mode=archive"},
		{"commit", "--repo=" + src, "-b", "mxos/x86_64/stable", "--add-metadata-string=version=0.9", tree},
		{"remote", "add", "--repo=" + s.SysrootRepoPath(), "--no-gpg-verify", "origin", "file://" + src},
		{"pull", "--repo=" + s.SysrootRepoPath(), "origin", "mxos/x86_64/stable"},
		{"admin", "deploy", "--sysroot=" + s.Path(), "--os=mxos", "origin:mxos/x86_64/stable"},
	} {
		if _, err := s.run(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	s = reopen(t, s, Options{})
	cur := mustCurrent(t, s)
	if cur.Origin.Version != "0.9" || cur.Origin.Ref != "mxos/x86_64/stable" {
		t.Fatalf("foreign deployment origin: %+v", cur.Origin)
	}
	repo := stagingRepo(t, s)
	if err := repo.CheckComplete(cur.Commit); err != nil {
		t.Fatalf("staging repository not seeded: %v", err)
	}
	if c, err := repo.ReadCommit(cur.Commit); err != nil || c.Version() != "0.9" {
		t.Fatalf("seeded commit: %v", err)
	}
	// It updates from there like any other.
	c1 := commitTree(t, s, "1.0", true)
	d1 := deploy(t, s, c1, "1.0")
	if err := s.Switch(ctx, d1); err != nil {
		t.Fatal(err)
	}
	if p := mustPrevious(t, s); p.Name != cur.Name {
		t.Fatalf("previous %s, want %s", p.Name, cur.Name)
	}
}
