package ostreeadmin

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// snapshot captures what a failed operation must leave unchanged: ostree's
// deployment order, the deployment directories, the boot loader link, the
// sysroot repository's refs and the state file.
func snapshot(t testing.TB, s *Sysroot) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(strings.Join(order(t, s), ",") + "\n")
	ents, _ := os.ReadDir(s.deployDir())
	for _, e := range ents {
		b.WriteString(e.Name() + "\n")
	}
	l, _ := os.Readlink(filepath.Join(s.Path(), "boot", "loader"))
	b.WriteString(l + "\n")
	refs, err := s.run(context.Background(), "refs", "--repo="+s.SysrootRepoPath())
	if err != nil {
		t.Fatal(err)
	}
	b.WriteString(refs)
	st, _ := os.ReadFile(filepath.Join(s.Root(), "state.json"))
	b.Write(st)
	return b.String()
}

func TestOpenRefusesWhatIsNotASysroot(t *testing.T) {
	testtool.Require(t, "ostree")
	requireRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	initFS := filepath.Join(dir, "init-fs-only")
	if err := os.MkdirAll(initFS, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Sysroot{bin: "ostree"}
	if _, err := s.run(ctx, "admin", "init-fs", initFS); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "archive")
	if _, err := ostree.Create(filepath.Join(archive, "ostree", "repo")); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good")
	if err := Init(ctx, good, Options{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		opts       Options
		want       error
		msg        string
	}{
		{"missing", filepath.Join(dir, "nope"), Options{}, ErrNotSysroot, "init-fs"},
		{"empty dir", t.TempDir(), Options{}, ErrNotSysroot, "init-fs"},
		{"no stateroot", initFS, Options{}, ErrNotSysroot, "os-init mxos"},
		{"other stateroot", good, Options{Stateroot: "debian"}, ErrNotSysroot, "os-init debian"},
		{"archive repo", archive, Options{}, ErrNotSysroot, "not bare"},
		{"bad stateroot", good, Options{Stateroot: "../x"}, nil, "bad stateroot"},
		{"bad karg", good, Options{Kargs: []string{"a b"}}, nil, "bad kernel argument"},
		{"no ostree", good, Options{Bin: filepath.Join(dir, "no-such-ostree")}, nil, "no-such-ostree"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(ctx, tc.path, tc.opts)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Open: %v, want %v containing %q", err, tc.want, tc.msg)
			}
			if exists(filepath.Join(tc.path, StateDir)) {
				t.Fatal("Open created its directory in something that is not a sysroot")
			}
		})
	}
	if exists(filepath.Join(dir, "nope")) {
		t.Fatal("Open created the missing sysroot")
	}
}

func TestDeployBadInputsChangeNothing(t *testing.T) {
	ctx := context.Background()
	s := newSysroot(t, Options{})
	c1, d1 := switched(t, s, "1.0")
	noKernel := commitTree(t, s, "2.0-nokernel", false)
	// /etc defaults at the top, not in usr/etc: the pure-Go backend deploys
	// it as-is, ostree 2022.7 refuses it.
	etcDir := t.TempDir()
	writeTree(t, etcDir, "2.0-etc", true)
	if err := os.Rename(filepath.Join(etcDir, "usr/etc"), filepath.Join(etcDir, "etc")); err != nil {
		t.Fatal(err)
	}
	topEtc := commitDir(t, s, etcDir, "2.0-etc")
	broken := commitTree(t, s, "2.0-broken", true)
	// Remove one content object of the broken commit from the staging repository.
	repo := stagingRepo(t, s)
	cm, err := repo.ReadCommit(broken)
	if err != nil {
		t.Fatal(err)
	}
	root, err := repo.ReadDirTree(cm.RootTree)
	if err != nil {
		t.Fatal(err)
	}
	usr, _ := repo.ReadDirTree(subdir(t, root, "usr"))
	bin, _ := repo.ReadDirTree(subdir(t, usr, "bin"))
	if err := os.Remove(repo.ObjectFile(bin.Files[0].Checksum, ostree.ObjFile)); err != nil {
		t.Fatal(err)
	}
	var unknown ostree.Checksum
	unknown[0] = 0xab

	before := snapshot(t, s)
	for _, tc := range []struct {
		name   string
		repo   *ostree.Repo
		commit ostree.Checksum
		msg    string
		ostree bool // refused by ostree rather than before it runs
	}{
		{"unknown commit", repo, unknown, "not in", false},
		{"no kernel", repo, noKernel, "ostree admin deploy: Failed to find kernel", true},
		{"etc at the top", repo, topEtc, "/usr/etc", true},
		{"incomplete commit", repo, broken, "incomplete", false},
		{"no repository", nil, c1, "no repository", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Deploy(ctx, tc.repo, tc.commit, sysroot.Origin{Version: "2.0"})
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Deploy: %v, want an error containing %q", err, tc.msg)
			}
			if tc.ostree != errors.Is(err, ErrOstree) {
				t.Fatalf("Deploy: %v: errors.Is(err, ErrOstree) = %v", err, !tc.ostree)
			}
			t.Log(err)
			if after := snapshot(t, s); after != before {
				t.Fatalf("a failed deploy changed the sysroot:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
	if mustCurrent(t, s).Name != d1.Name {
		t.Fatal("current changed")
	}
}

func subdir(t testing.TB, dt *ostree.DirTree, name string) ostree.Checksum {
	t.Helper()
	for _, d := range dt.Dirs {
		if d.Name == name {
			return d.Tree
		}
	}
	t.Fatalf("no %s in tree", name)
	return ostree.Checksum{}
}

func TestSwitchAndRollbackBadInputs(t *testing.T) {
	ctx := context.Background()
	s := newSysroot(t, Options{})
	for name, f := range map[string]func() error{
		"current":  func() error { _, err := s.Current(); return err },
		"previous": func() error { _, err := s.Previous(); return err },
		"booted":   func() error { _, err := s.Booted(); return err },
		"rollback": func() error { return s.Rollback(ctx, "x") },
	} {
		if err := f(); !isErr(err, sysroot.ErrNoDeployment) {
			t.Fatalf("%s on an empty sysroot: %v", name, err)
		}
	}
	if l, err := s.List(); err != nil || len(l) != 0 {
		t.Fatalf("list on an empty sysroot: %v %v", l, err)
	}
	if err := s.GC(ctx, 0); err != nil {
		t.Fatalf("gc on an empty sysroot: %v", err)
	}
	c1, d1 := switched(t, s, "1.0")
	before := snapshot(t, s)
	ghost := d1
	ghost.Name = strings.Replace(d1.Name, ".0", ".7", 1)
	if err := s.Switch(ctx, ghost); !isErr(err, sysroot.ErrNoDeployment) {
		t.Fatalf("switch to an unknown deployment: %v", err)
	}
	if err := s.Rollback(ctx, "x"); !isErr(err, sysroot.ErrNoDeployment) {
		t.Fatalf("rollback with no previous deployment: %v", err)
	}
	if bad, _ := s.BadCommits(); len(bad) != 0 {
		t.Fatalf("a refused rollback marked commits bad: %v", bad)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Deploy(cancelled, stagingRepo(t, s), c1, sysroot.Origin{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("deploy with a cancelled context: %v", err)
	}
	if after := snapshot(t, s); after != before {
		t.Fatalf("refused operations changed the sysroot:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestCorruptStateIsReported(t *testing.T) {
	ctx := context.Background()
	s := newSysroot(t, Options{})
	c1, _ := switched(t, s, "1.0")
	if err := s.MarkGood(); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(s.Root(), "state.json")
	good, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(state, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, s.Path(), Options{Env: testEnv}); !isErr(err, sysroot.ErrCorrupt) {
		t.Fatalf("open with a corrupt state file: %v", err)
	}
	if _, err := s.IsBad(c1); !isErr(err, sysroot.ErrCorrupt) {
		t.Fatalf("IsBad with a corrupt state file: %v", err)
	}
	if err := os.WriteFile(state, good, 0o644); err != nil {
		t.Fatal(err)
	}
	entries, _ := filepath.Glob(filepath.Join(s.Path(), "boot", "loader", "entries", "*.conf"))
	if len(entries) != 1 {
		t.Fatalf("boot entries: %v", entries)
	}
	if err := os.WriteFile(entries[0], []byte("title x\nversion 1\noptions ostree=/ostree/boot.1/../../etc/0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Current(); !isErr(err, sysroot.ErrCorrupt) {
		t.Fatalf("current with a hostile boot entry: %v", err)
	}
}

// A deploy killed half-way leaves a deployment directory with no boot
// entry; Open has ostree clean it up.
func TestOpenCleansInterruptedDeploy(t *testing.T) {
	s := newSysroot(t, Options{})
	_, d1 := switched(t, s, "1.0")
	c2 := commitTree(t, s, "2.0", true)
	half := filepath.Join(s.deployDir(), c2.String()+".0")
	if err := os.MkdirAll(filepath.Join(half, "usr"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(half+".origin", []byte("[origin]\nrefspec="+c2.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, Options{})
	if exists(half) || exists(half+".origin") {
		t.Fatal("the interrupted deployment is still there")
	}
	if got := order(t, s); !equal(got, []string{d1.Name}) {
		t.Fatalf("after cleanup: %v", got)
	}
	d2 := deploy(t, s, c2, "2.0")
	if d2.Name != c2.String()+".0" {
		t.Fatalf("new deployment %s", d2.Name)
	}
}
