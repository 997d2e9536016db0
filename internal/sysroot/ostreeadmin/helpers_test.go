package ostreeadmin

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// testEnv is what ostree's own tests set (tests/libtest.sh): t.TempDir's
// file system may not support the immutable bit.
var testEnv = []string{"OSTREE_SYSROOT_DEBUG=mutable-deployments"}

// requireRoot: ostree admin deploy writes files owned by the commit's
// owners, so it needs root, as in CI.
func requireRoot(t testing.TB) {
	t.Helper()
	testtool.RequireRoot(t, "ostree admin deploy writes files owned by the commit's owners")
}

// newSysroot makes a throw-away sysroot with ostree admin init-fs and
// os-init, and opens it.
func newSysroot(t testing.TB, opts Options) *Sysroot {
	t.Helper()
	testtool.Require(t, "ostree")
	requireRoot(t)
	path := filepath.Join(t.TempDir(), "sysroot")
	opts.Env = append(opts.Env, testEnv...)
	if err := Init(context.Background(), path, opts); err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// reopen opens the same sysroot with other options.
func reopen(t testing.TB, s *Sysroot, opts Options) *Sysroot {
	t.Helper()
	opts.Env = append(opts.Env, testEnv...)
	n, err := Open(context.Background(), s.Path(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// writeTree writes a minimal bootable OS tree: a kernel and initramfs
// where ostree admin deploy looks for them, an os-release, /etc defaults
// and a program that prints the version.
func writeTree(t testing.TB, dir, version string, kernel bool) {
	t.Helper()
	files := map[string]string{
		"usr/etc/os-release": "ID=mxos\nPRETTY_NAME=\"MxOS " + version + "\"\nVERSION=" + version + "\n",
		"usr/etc/motd":       "MxOS " + version + "\n",
		"usr/bin/hello":      "#!/bin/sh\necho " + version + "\n",
	}
	if kernel {
		files["usr/lib/modules/6.1.0/vmlinuz"] = "a kernel\n"
		files["usr/lib/modules/6.1.0/initramfs.img"] = "an initramfs\n"
	}
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// commitTree commits a tree of version into the staging repository with
// stock ostree and returns the commit.
func commitTree(t testing.TB, s *Sysroot, version string, kernel bool) ostree.Checksum {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, version, kernel)
	return commitDir(t, s, dir, version)
}

func commitDir(t testing.TB, s *Sysroot, dir, version string) ostree.Checksum {
	t.Helper()
	out, err := exec.Command("ostree", "commit", "--repo="+s.RepoPath(), "-b", "mxos/test",
		"--owner-uid=0", "--owner-gid=0", "--add-metadata-string=version="+version, "-s", version, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("ostree commit: %v: %s", err, out)
	}
	c, err := ostree.ParseChecksum(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func stagingRepo(t testing.TB, s *Sysroot) *ostree.Repo {
	t.Helper()
	r, err := ostree.Open(s.RepoPath())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func deploy(t testing.TB, s *Sysroot, c ostree.Checksum, version string) sysroot.Deployment {
	t.Helper()
	d, err := s.Deploy(context.Background(), stagingRepo(t, s), c, sysroot.Origin{Ref: "mxos/test", Version: version})
	if err != nil {
		t.Fatalf("deploy %s: %v", version, err)
	}
	return d
}

// switched commits a tree of version, deploys it and makes it the default.
func switched(t testing.TB, s *Sysroot, version string) (ostree.Checksum, sysroot.Deployment) {
	t.Helper()
	c := commitTree(t, s, version, true)
	d := deploy(t, s, c, version)
	if err := s.Switch(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	return c, d
}

func mustCurrent(t testing.TB, s *Sysroot) sysroot.Deployment {
	t.Helper()
	d, err := s.Current()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// order returns the deployment names in ostree's own order, as
// `ostree admin status` prints them, and checks that this package reads
// the same order, commits and versions from the boot entries.
func order(t testing.TB, s *Sysroot) []string {
	t.Helper()
	st, err := s.AdminStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	all, err := s.readAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != len(all) {
		t.Fatalf("ostree admin status lists %d deployments, the boot entries %d", len(st), len(all))
	}
	var names []string
	for i, e := range st {
		if e.Name != all[i].name || e.Stateroot != all[i].stateroot {
			t.Fatalf("deployment %d: ostree says %s %s, boot entries say %s %s", i, e.Stateroot, e.Name, all[i].stateroot, all[i].name)
		}
		d, err := s.load(e.Name)
		if err != nil {
			t.Fatal(err)
		}
		if d.Commit != e.Commit || d.Origin.Version != e.Version {
			t.Fatalf("deployment %s: ostree says commit %s version %q, we read %s %q", e.Name, e.Commit, e.Version, d.Commit, d.Origin.Version)
		}
		names = append(names, e.Name)
	}
	return names
}

func equal(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

func isErr(err, target error) bool { return err != nil && errors.Is(err, target) }

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
