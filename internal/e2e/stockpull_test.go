package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
)

// TestStockPullGPGVerified publishes a tree that uses every feature OSTree
// stores (modes, setuid, empty files and directories, symlinks of every
// kind, non-ASCII names, hardlinks, a file over 50 MB) with the release
// pipeline, serves it, and has the stock ostree client pull it with GPG
// verification of commits and summary: by ref, again (a no-op), by
// checksum, commit metadata only with full history, and as a mirror. The
// client's fsck and a checkout compared with the source prove the bytes
// and metadata arrived intact.
func TestStockPullGPGVerified(t *testing.T) {
	requireOstreeGPG(t)
	requireTool(t, "diff")
	keys := newKeys(t)
	s := newSite(t, keys)
	src := filepath.Join(t.TempDir(), "src")
	owners := os.Geteuid() == 0
	info := makeRichTree(t, src, treeSpec{bigSize: 50<<20 + 12345, owners: true, seed: 1})

	v1 := s.publish(t, "10.0.1", src)
	url, counter := serve(t, s.data)
	env := toolEnv(t)
	c := newClient(t, env, url, gpgRemote(keys.pgpPub)...)
	remoteRef := "origin:" + testRef

	t.Run("published tree", func(t *testing.T) {
		// The hardlinked pair is one content object.
		cm, err := s.repo.ReadCommit(v1.Commit)
		if err != nil {
			t.Fatal(err)
		}
		objs := treeObjects(t, s.repo, cm.RootTree, cm.RootMeta)
		a, b := objs[info.hardlinks[0]], objs[info.hardlinks[1]]
		if a == "" || a != b {
			t.Errorf("hardlinked files %s and %s have checksums %q and %q, want one object", info.hardlinks[0], info.hardlinks[1], a, b)
		}
		if cm.Version() != "10.0.1" {
			t.Errorf("commit version %q, want 10.0.1", cm.Version())
		}
		if got := cm.RefBindings(); len(got) != 1 || got[0] != testRef {
			t.Errorf("ref binding %q, want [%s]", got, testRef)
		}
	})

	t.Run("pull", func(t *testing.T) {
		out := c.mustRun("pull", "origin", testRef)
		t.Logf("ostree pull: %s", strings.TrimSpace(out))
		if got := c.revParse(remoteRef); got != v1.Commit.String() {
			t.Fatalf("client has %s at %s, server published %s", remoteRef, got, v1.Commit)
		}
	})

	t.Run("second pull fetches nothing", func(t *testing.T) {
		counter.reset()
		out := c.mustRun("pull", "origin", testRef)
		if n := counter.objects.Load(); n != 0 {
			t.Errorf("second pull fetched %d objects (besides .commitmeta), want 0", n)
		}
		if !regexp.MustCompile(`(^|\D)0 content objects fetched`).MatchString(out) && strings.TrimSpace(out) != "" {
			t.Errorf("second pull output does not say 0 content objects were fetched:\n%s", out)
		}
		if counter.total.Load() == 0 {
			t.Errorf("second pull made no request at all: was the server asked?")
		}
	})

	t.Run("pull by checksum", func(t *testing.T) {
		c2 := newClient(t, toolEnv(t), url, gpgRemote(keys.pgpPub)...)
		c2.mustRun("pull", "origin", v1.Commit.String())
		out := c2.mustRun("show", v1.Commit.String())
		if !strings.Contains(out, "10.0.1") {
			t.Errorf("ostree show of the pulled commit does not mention its version:\n%s", out)
		}
		c2.mustRun("fsck")
	})

	t.Run("remote refs", func(t *testing.T) {
		out := c.mustRun("remote", "refs", "origin")
		if strings.TrimSpace(out) != remoteRef {
			t.Errorf("ostree remote refs origin = %q, want %q", strings.TrimSpace(out), remoteRef)
		}
	})

	t.Run("remote summary", func(t *testing.T) {
		out := c.mustRun("remote", "summary", "origin")
		for _, want := range []string{testRef, v1.Commit.String(), "10.0.1", "Good signature"} {
			if !strings.Contains(out, want) {
				t.Errorf("ostree remote summary does not mention %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "BAD signature") {
			t.Errorf("ostree remote summary reports a bad signature:\n%s", out)
		}
	})

	t.Run("fsck", func(t *testing.T) {
		out := c.mustRun("fsck")
		if !strings.Contains(out, "no errors found") {
			t.Errorf("ostree fsck:\n%s", out)
		}
	})

	t.Run("checkout matches source", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "checkout")
		args := []string{"checkout"}
		if !owners {
			args = append(args, "-U")
		}
		c.mustRun(append(args, remoteRef, dst)...)
		if out, err := runCmd(env, "diff", "-r", "--no-dereference", src, dst); err != nil || out != "" {
			t.Errorf("diff -r --no-dereference source checkout: %v\n%s", err, out)
		}
		compareTrees(t, src, dst, owners)
		for _, d := range info.emptyDirs {
			ents, err := os.ReadDir(filepath.Join(dst, filepath.FromSlash(d)))
			if err != nil || len(ents) != 0 {
				t.Errorf("empty directory %s in the checkout: %d entries, %v", d, len(ents), err)
			}
		}
		if owners { // user-mode checkouts drop setuid by design
			fi, err := os.Lstat(filepath.Join(dst, setuidFile))
			if err != nil || fi.Mode()&os.ModeSetuid == 0 || fi.Mode().Perm() != 0o755 {
				t.Errorf("%s in the checkout: %v, %v; want setuid 0755", setuidFile, fi, err)
			}
		}
		for rel, want := range map[string]string{
			relSymlink:   "../../etc/os-release",
			absSymlink:   "/usr/share/zoneinfo/America/Mexico_City",
			danglingLink: "does-not-exist",
		} {
			if got, err := os.Readlink(filepath.Join(dst, filepath.FromSlash(rel))); err != nil || got != want {
				t.Errorf("symlink %s in the checkout -> %q (%v), want %q", rel, got, err, want)
			}
		}
		big, err := os.Stat(filepath.Join(dst, filepath.FromSlash(info.bigFile)))
		if err != nil || big.Size() <= 50<<20 {
			t.Errorf("big file in the checkout: %v, %v", big, err)
		}
	})

	// A second version, then history and mirroring.
	if err := os.WriteFile(filepath.Join(src, "etc/motd"), []byte("Bienvenido a MxOS 10.0.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	v2 := s.publish(t, "10.0.2", src)
	if v2.Parent != v1.Commit {
		t.Fatalf("second publish has parent %s, want %s", v2.Parent, v1.Commit)
	}

	t.Run("commit metadata only with full depth", func(t *testing.T) {
		c3 := newClient(t, toolEnv(t), url, gpgRemote(keys.pgpPub)...)
		counter.reset()
		c3.mustRun("pull", "--commit-metadata-only", "--depth=-1", "origin", testRef)
		if n := counter.objects.Load(); n != 2 {
			t.Errorf("metadata-only pull fetched %d objects, want the 2 commits", n)
		}
		cr, err := ostree.Open(c3.repo)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []struct {
			c      ostree.Checksum
			parent ostree.Checksum
			ver    string
		}{{v2.Commit, v1.Commit, "10.0.2"}, {v1.Commit, ostree.Checksum{}, "10.0.1"}} {
			cm, err := cr.ReadCommit(want.c)
			if err != nil {
				t.Errorf("commit %s not in the client repository: %v", want.c, err)
				continue
			}
			if cm.Parent != want.parent || cm.Version() != want.ver {
				t.Errorf("commit %s: parent %s version %q, want parent %s version %q", want.c, cm.Parent, cm.Version(), want.parent, want.ver)
			}
			md, err := cr.ReadCommitMeta(want.c)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := cr.ReadMetadata(want.c, ostree.ObjCommit)
			if err := release.CommitVerifier(keys.verifiers)(want.c, b, md); err != nil {
				t.Errorf("client copy of commit %s: signatures: %v", want.c, err)
			}
		}
		log := c3.mustRun("log", remoteRef)
		if !strings.Contains(log, "10.0.2") || !strings.Contains(log, "10.0.1") || !strings.Contains(log, "Parent:  "+v1.Commit.String()) {
			t.Errorf("ostree log does not show the history v1 <- v2:\n%s", log)
		}
	})

	t.Run("mirror", func(t *testing.T) {
		m := newClient(t, toolEnv(t), url, gpgRemote(keys.pgpPub)...)
		m.mustRun("pull", "--mirror", "origin")
		ref, err := os.ReadFile(filepath.Join(m.repo, "refs", "heads", filepath.FromSlash(testRef)))
		if err != nil || strings.TrimSpace(string(ref)) != v2.Commit.String() {
			t.Errorf("mirror refs/heads/%s = %q (%v), want %s", testRef, ref, err, v2.Commit)
		}
		if out := m.mustRun("fsck"); !strings.Contains(out, "no errors found") {
			t.Errorf("ostree fsck of the mirror:\n%s", out)
		}
		for _, name := range []string{"summary", "summary.sig"} {
			a, _ := os.ReadFile(filepath.Join(s.repoDir(), name))
			b, err := os.ReadFile(filepath.Join(m.repo, name))
			if err != nil || !bytes.Equal(a, b) {
				t.Errorf("mirror's %s differs from the server's (%v)", name, err)
			}
		}
		// Our own code reads the mirror too: same commit, intact objects.
		mr, err := ostree.Open(m.repo)
		if err != nil {
			t.Fatal(err)
		}
		if err := mr.CheckComplete(v2.Commit); err != nil {
			t.Errorf("mirror: %v", err)
		}
	})
}
