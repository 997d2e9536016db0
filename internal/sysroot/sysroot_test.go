package sysroot

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/gvariant"
	"github.com/mxos-linux/mxos-update/internal/ostree"
)

var ctx = context.Background()

type env struct {
	t    *testing.T
	repo *ostree.Repo
	s    *Sysroot
	n    int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "sysroot"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := ostree.Create(s.RepoPath())
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, repo: r, s: s}
}

// tree writes files (path -> content; "->x" makes a symlink to x, a
// trailing "/" an empty dir) into a fresh directory.
func (e *env) tree(files map[string]string) string {
	e.t.Helper()
	dir := e.t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if strings.HasSuffix(p, "/") {
			must(e.t, os.MkdirAll(full, 0o755))
			continue
		}
		must(e.t, os.MkdirAll(filepath.Dir(full), 0o755))
		if t, ok := strings.CutPrefix(c, "->"); ok {
			must(e.t, os.Symlink(t, full))
			continue
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(p, "usr/bin/") {
			mode = 0o755
		}
		must(e.t, os.WriteFile(full, []byte(c), mode))
	}
	return dir
}

func (e *env) commit(dir string, opts ostree.CommitOptions) ostree.Checksum {
	e.t.Helper()
	opts.NoXattrs = true
	txn, err := e.repo.Begin()
	must(e.t, err)
	defer txn.Close()
	tree, meta, err := txn.WriteTreeFromDir(ctx, dir, opts)
	must(e.t, err)
	e.n++
	c, err := txn.WriteCommit(&ostree.Commit{Subject: "test", Timestamp: uint64(e.n), RootTree: tree, RootMeta: meta})
	must(e.t, err)
	must(e.t, txn.Commit())
	return c
}

func (e *env) deploy(c ostree.Checksum) Deployment {
	e.t.Helper()
	d, err := e.s.Deploy(ctx, e.repo, c, Origin{Ref: "mxos/stable", Version: fmt.Sprint(e.n)})
	must(e.t, err)
	return d
}

func (e *env) deploySwitch(files map[string]string) Deployment {
	e.t.Helper()
	d := e.deploy(e.commit(e.tree(files), ostree.CommitOptions{}))
	must(e.t, e.s.Switch(ctx, d))
	return d
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// listing describes a tree: type, permission bits, content or target.
func listing(t *testing.T, root string) string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s %v", rel, st.Mode())
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			tg, _ := os.Readlink(p)
			line += " -> " + tg
		case st.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			line += fmt.Sprintf(" %q", b)
		}
		out = append(out, line)
		return nil
	})
	must(t, err)
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	st, err := os.Lstat(p)
	must(t, err)
	return st.Sys().(*syscall.Stat_t).Ino
}

var base = map[string]string{
	"usr/bin/tool":         "#!/bin/sh\necho tool\n",
	"usr/lib/data":         "data v1",
	"usr/lib/link":         "->data",
	"usr/lib/abs":          "->/usr/lib/data",
	"usr/share/empty/":     "",
	"usr/etc/a.conf":       "a=1",
	"usr/etc/b.conf":       "b=1",
	"usr/etc/c.conf":       "c=1",
	"usr/etc/sub/d.conf":   "d=1",
	"usr/etc/os-release":   "->../usr/lib/os-release",
	"usr/lib/os-release":   "ID=mxos",
	"var/":                 "",
	"usr/share/doc/README": "readme",
}

func with(m map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "<delete>" {
			delete(out, kv[i])
		} else {
			out[kv[i]] = kv[i+1]
		}
	}
	return out
}

func TestDeploySwitchContents(t *testing.T) {
	e := newEnv(t)
	src := e.tree(base)
	must(t, os.Chmod(filepath.Join(src, "usr/share/doc"), 0o700))
	c := e.commit(src, ostree.CommitOptions{})
	d := e.deploy(c)
	if d.Name != c.String()+".0" || d.Origin.Commit != c.String() || d.Origin.Ref != "mxos/stable" {
		t.Fatalf("deployment %+v", d)
	}
	if _, err := e.s.Current(); !errors.Is(err, ErrNoDeployment) {
		t.Fatalf("current before switch: %v", err)
	}
	must(t, e.s.Switch(ctx, d))
	cur, err := e.s.Current()
	must(t, err)
	if cur.Name != d.Name || cur.Origin.Version != d.Origin.Version {
		t.Fatalf("current %+v, want %+v", cur, d)
	}
	if got, want := listing(t, filepath.Join(d.Path, "usr")), listing(t, filepath.Join(src, "usr")); got != want {
		t.Fatalf("usr differs:\n%s\nwant\n%s", got, want)
	}
	if got, want := listing(t, filepath.Join(d.Path, "etc")), listing(t, filepath.Join(src, "usr/etc")); got != want {
		t.Fatalf("etc differs:\n%s\nwant\n%s", got, want)
	}
	// etc is a copy, usr is hardlinked from the cache.
	if inode(t, filepath.Join(d.Path, "etc/a.conf")) == inode(t, filepath.Join(d.Path, "usr/etc/a.conf")) {
		t.Error("etc/a.conf shares its inode with usr/etc/a.conf")
	}
	ls, _ := os.Lstat(filepath.Join(d.Path, "usr/lib/data"))
	if n := ls.Sys().(*syscall.Stat_t).Nlink; n != 2 {
		t.Errorf("usr/lib/data has %d links, want 2 (cache + deployment)", n)
	}
	if rem, err := e.s.BootAttempt(); err != nil || rem != DefaultBootTries-1 {
		t.Fatalf("BootAttempt = %d, %v", rem, err)
	}
	b, err := e.s.Booted()
	must(t, err)
	if b.Name != d.Name {
		t.Errorf("booted %s", b.Name)
	}
	must(t, e.s.MarkGood())
	if rem, err := e.s.BootAttempt(); err != nil || rem != 0 {
		t.Fatalf("BootAttempt after MarkGood = %d, %v", rem, err)
	}
	// A second deployment of the same commit gets the next serial.
	d2 := e.deploy(c)
	if d2.Name != c.String()+".1" {
		t.Errorf("second deployment named %s", d2.Name)
	}
	list, err := e.s.List()
	must(t, err)
	if len(list) != 2 || list[0].Name != d.Name || list[1].Name != d2.Name {
		t.Errorf("List = %+v", list)
	}
}

func TestSharedInodes(t *testing.T) {
	e := newEnv(t)
	d1 := e.deploySwitch(base)
	d2 := e.deploySwitch(with(base, "usr/lib/data", "data v2"))
	for _, p := range []string{"usr/bin/tool", "usr/etc/a.conf", "usr/share/doc/README"} {
		if inode(t, filepath.Join(d1.Path, p)) != inode(t, filepath.Join(d2.Path, p)) {
			t.Errorf("%s not shared", p)
		}
	}
	if inode(t, filepath.Join(d1.Path, "usr/lib/data")) == inode(t, filepath.Join(d2.Path, "usr/lib/data")) {
		t.Error("changed file shares an inode")
	}
	if b, _ := os.ReadFile(filepath.Join(d2.Path, "usr/lib/data")); string(b) != "data v2" {
		t.Errorf("data = %q", b)
	}
	prev, err := e.s.Previous()
	must(t, err)
	if prev.Name != d1.Name {
		t.Errorf("previous = %s", prev.Name)
	}
}

func TestEtcMerge(t *testing.T) {
	e := newEnv(t)
	d1 := e.deploySwitch(base)
	etc := filepath.Join(d1.Path, "etc")
	must(t, os.WriteFile(filepath.Join(etc, "a.conf"), []byte("a=local"), 0o644))
	must(t, os.WriteFile(filepath.Join(etc, "local.conf"), []byte("mine"), 0o600))
	must(t, os.Remove(filepath.Join(etc, "b.conf")))
	must(t, os.MkdirAll(filepath.Join(etc, "newdir"), 0o750))
	must(t, os.WriteFile(filepath.Join(etc, "newdir/x"), []byte("x"), 0o644))
	must(t, os.Chmod(filepath.Join(etc, "sub/d.conf"), 0o600))
	d2 := e.deploy(e.commit(e.tree(with(base,
		"usr/etc/a.conf", "a=2", "usr/etc/b.conf", "b=2", "usr/etc/c.conf", "c=2", "usr/etc/e.conf", "e=1",
		"usr/etc/sub/d.conf", "d=2")), ostree.CommitOptions{}))
	got := listing(t, filepath.Join(d2.Path, "etc"))
	want := strings.Join([]string{
		`. drwxr-xr-x`,
		`a.conf -rw-r--r-- "a=local"`, // modified locally: kept
		`c.conf -rw-r--r-- "c=2"`,     // untouched: new default
		`e.conf -rw-r--r-- "e=1"`,     // new default: added
		`local.conf -rw------- "mine"`,
		`newdir drwxr-x---`,
		`newdir/x -rw-r--r-- "x"`,
		`os-release Lrwxrwxrwx -> ../usr/lib/os-release`,
		`sub drwxr-xr-x`,
		`sub/d.conf -rw------- "d=1"`, // mode changed locally: local copy wins
	}, "\n")
	if got != want {
		t.Fatalf("merged etc:\n%s\nwant\n%s", got, want)
	}
	if b, _ := os.ReadFile(filepath.Join(d2.Path, "usr/etc/b.conf")); string(b) != "b=2" {
		t.Errorf("usr/etc/b.conf = %q", b)
	}
}

func TestRollbackMarksBad(t *testing.T) {
	e := newEnv(t)
	d1 := e.deploySwitch(base)
	d2 := e.deploySwitch(with(base, "usr/lib/data", "v2"))
	must(t, e.s.Rollback(ctx, "health check failed"))
	cur, err := e.s.Current()
	must(t, err)
	prev, err := e.s.Previous()
	must(t, err)
	if cur.Name != d1.Name || prev.Name != d2.Name {
		t.Fatalf("after rollback current=%s previous=%s", cur.Name, prev.Name)
	}
	if bad, _ := e.s.IsBad(d2.Commit); !bad {
		t.Error("rolled-back commit not marked bad")
	}
	if bad, _ := e.s.IsBad(d1.Commit); bad {
		t.Error("good commit marked bad")
	}
	bc, err := e.s.BadCommits()
	must(t, err)
	if bc[d2.Commit.String()].Reason != "health check failed" {
		t.Errorf("bad commits %+v", bc)
	}
	if _, err := e.s.Deploy(ctx, e.repo, d2.Commit, Origin{}); !errors.Is(err, ErrBadCommit) {
		t.Errorf("Deploy of bad commit: %v", err)
	}
	if err := e.s.Switch(ctx, d2); !errors.Is(err, ErrBadCommit) {
		t.Errorf("Switch to bad commit: %v", err)
	}
	// Survives reopening.
	s2, err := Open(e.s.Root())
	must(t, err)
	if bad, _ := s2.IsBad(d2.Commit); !bad {
		t.Error("bad mark lost on reopen")
	}
}

func TestRollbackWithoutPrevious(t *testing.T) {
	e := newEnv(t)
	e.deploySwitch(base)
	if err := e.s.Rollback(ctx, "x"); !errors.Is(err, ErrNoDeployment) {
		t.Fatalf("Rollback with no previous: %v", err)
	}
}

func TestBootCounterExhaustion(t *testing.T) {
	e := newEnv(t)
	d1 := e.deploySwitch(base)
	_, err := e.s.BootAttempt()
	must(t, err)
	must(t, e.s.MarkGood())
	d2 := e.deploySwitch(with(base, "usr/lib/data", "v2"))
	for want := DefaultBootTries - 1; want >= 0; want-- {
		rem, err := e.s.BootAttempt()
		if err != nil || rem != want {
			t.Fatalf("BootAttempt = %d, %v; want %d", rem, err, want)
		}
	}
	if _, err := e.s.BootAttempt(); !errors.Is(err, ErrCounterExhausted) {
		t.Fatalf("exhausted BootAttempt: %v", err)
	}
	cur, err := e.s.Current()
	must(t, err)
	if cur.Name != d1.Name {
		t.Fatalf("current after exhaustion = %s", cur.Name)
	}
	if bad, _ := e.s.IsBad(d2.Commit); !bad {
		t.Error("exhausted commit not marked bad")
	}
	if rem, err := e.s.BootAttempt(); err != nil || rem != 0 {
		t.Errorf("boot of the rolled-back-to deployment: %d, %v", rem, err)
	}
}

func cacheFiles(t *testing.T, s *Sysroot) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	filepath.WalkDir(s.cacheDir(), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out[filepath.Base(filepath.Dir(p))+filepath.Base(p)] = true
		}
		return nil
	})
	return out
}

func TestGC(t *testing.T) {
	e := newEnv(t)
	var ds []Deployment
	for i := range 4 {
		ds = append(ds, e.deploySwitch(with(base, "usr/lib/data", fmt.Sprintf("v%d", i))))
	}
	before := cacheFiles(t, e.s)
	must(t, e.s.GC(ctx, 1))
	list, err := e.s.List()
	must(t, err)
	if len(list) != 3 || list[0].Name != ds[1].Name {
		t.Fatalf("GC keep=1 left %v", list)
	}
	must(t, e.s.GC(ctx, 0))
	list, err = e.s.List()
	must(t, err)
	if len(list) != 2 || list[0].Name != ds[2].Name || list[1].Name != ds[3].Name {
		t.Fatalf("GC left %v", list)
	}
	for _, d := range ds[:2] {
		if _, err := os.Lstat(d.Path + ".origin"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s.origin left", d.Name)
		}
	}
	after := cacheFiles(t, e.s)
	if len(before)-len(after) != 2 {
		t.Errorf("cache went from %d to %d files, want 2 removed", len(before), len(after))
	}
	for _, p := range []string{"usr/bin/tool", "usr/lib/data"} {
		if _, err := os.ReadFile(filepath.Join(ds[3].Path, p)); err != nil {
			t.Error(err)
		}
	}
	cur, _ := e.s.Current()
	if cur.Name != ds[3].Name {
		t.Error("current changed by GC")
	}
	// The local repository keeps the commits of the deployments left and
	// nothing of the collected ones, and still fscks clean.
	for i, d := range ds {
		kept := i >= 2
		if has := e.repo.HasObject(d.Commit, ostree.ObjCommit); has != kept {
			t.Errorf("deployment %d: commit in the repository = %v, want %v", i, has, kept)
		}
		if kept {
			must(t, e.repo.CheckComplete(d.Commit))
		}
	}
	rep, err := e.repo.Fsck(ctx, ostree.FsckOptions{})
	if err != nil || len(rep.Errors) != 0 {
		t.Fatalf("fsck of the local repository after GC: %v %v", err, rep.Errors)
	}
}

func TestCrashLeftoversCleaned(t *testing.T) {
	e := newEnv(t)
	d := e.deploySwitch(base)
	root := e.s.Root()
	junk := filepath.Join(root, "deploy", strings.Repeat("ab", 32)+".0.tmp-123456")
	must(t, os.MkdirAll(filepath.Join(junk, "usr/ro"), 0o755))
	must(t, os.WriteFile(filepath.Join(junk, "usr/ro/f"), []byte("x"), 0o644))
	must(t, os.Chmod(filepath.Join(junk, "usr/ro"), 0o555))
	orphan := filepath.Join(root, "deploy", strings.Repeat("cd", 32)+".0.origin")
	must(t, os.WriteFile(orphan, []byte("{}"), 0o644))
	must(t, os.Symlink("deploy/nonexistent", filepath.Join(root, "current.tmp")))
	must(t, os.MkdirAll(filepath.Join(root, "objects-cache/zz"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "objects-cache/zz/.tmp-1"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(root, "state.json.tmp"), []byte("{"), 0o644))

	s, err := Open(root)
	must(t, err)
	for _, p := range []string{junk, orphan, filepath.Join(root, "current.tmp"), filepath.Join(root, "objects-cache/zz/.tmp-1"), filepath.Join(root, "state.json.tmp")} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s survived Open", p)
		}
	}
	cur, err := s.Current()
	must(t, err)
	if cur.Name != d.Name {
		t.Errorf("current = %s", cur.Name)
	}
	if _, err := os.ReadFile(filepath.Join(cur.Path, "usr/lib/data")); err != nil {
		t.Error(err)
	}
	// A Switch interrupted after recording the pending boot: the pending
	// deployment is not current, so BootAttempt ignores it.
	d2 := e.deploy(e.commit(e.tree(with(base, "usr/lib/data", "v2")), ostree.CommitOptions{}))
	st, _ := s.loadState()
	st.Pending, st.TriesLeft = d2.Name, 0
	must(t, s.saveState(st))
	if rem, err := s.BootAttempt(); err != nil || rem != 0 {
		t.Errorf("BootAttempt with stale pending: %d, %v", rem, err)
	}
	if cur, _ := s.Current(); cur.Name != d.Name {
		t.Error("stale pending changed current")
	}
}

func TestEscapingSymlinkRefused(t *testing.T) {
	e := newEnv(t)
	src := e.tree(with(base, "usr/lib/evil", "->../../../etc/shadow"))
	c := e.commit(src, ostree.CommitOptions{AllowEscapingSymlinks: true})
	if _, err := e.s.Deploy(ctx, e.repo, c, Origin{}); !errors.Is(err, ErrBadTree) {
		t.Fatalf("Deploy of escaping symlink: %v", err)
	}
	assertNoDeployments(t, e.s)
}

func TestEtcAndUsrEtcRefused(t *testing.T) {
	e := newEnv(t)
	c := e.commit(e.tree(with(base, "etc/x", "1")), ostree.CommitOptions{})
	if _, err := e.s.Deploy(ctx, e.repo, c, Origin{}); !errors.Is(err, ErrBadTree) {
		t.Fatalf("Deploy of tree with etc and usr/etc: %v", err)
	}
	assertNoDeployments(t, e.s)
}

func assertNoDeployments(t *testing.T, s *Sysroot) {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(s.Root(), "deploy"))
	if len(ents) != 0 {
		t.Errorf("refused deploy left %v", ents)
	}
}

func TestHostileNamesRefused(t *testing.T) {
	for _, name := range []string{"..", "../x", "a/b", "."} {
		t.Run(strings.ReplaceAll(name, "/", "_"), func(t *testing.T) {
			e := newEnv(t)
			good := e.commit(e.tree(base), ostree.CommitOptions{})
			gc, err := e.repo.ReadCommit(good)
			must(t, err)
			gt, err := e.repo.ReadDirTree(gc.RootTree)
			must(t, err)
			// usr's subtree reused under a hostile name, bypassing our writer.
			usr := gt.Dirs[len(gt.Dirs)-2]
			if usr.Name != "usr" {
				t.Fatalf("dirs %+v", gt.Dirs)
			}
			b, err := gvariant.Marshal(ostree.DirTreeType, []any{[]any{}, []any{[]any{name, usr.Tree[:], usr.Meta[:]}}})
			must(t, err)
			bad := ostree.Checksum(sha256.Sum256(b))
			p := e.repo.ObjectFile(bad, ostree.ObjDirTree)
			must(t, os.MkdirAll(filepath.Dir(p), 0o755))
			must(t, os.WriteFile(p, b, 0o644))
			txn, err := e.repo.Begin()
			must(t, err)
			c, err := txn.WriteCommit(&ostree.Commit{Timestamp: 9, RootTree: bad, RootMeta: gc.RootMeta})
			must(t, err)
			must(t, txn.Commit())
			txn.Close()
			if _, err := e.s.Deploy(ctx, e.repo, c, Origin{}); !errors.Is(err, ostree.ErrBadName) {
				t.Fatalf("Deploy of hostile name: %v", err)
			}
			assertNoDeployments(t, e.s)
		})
	}
}
