package ostreeadmin

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// bootOnLoop makes a throw-away sysroot whose /boot is its own file
// system on a loop device, made by mkfs (a command line whose last
// argument, the image file, is added), with a GRUB environment block; it
// returns the sysroot and the image file behind /boot.
func bootOnLoop(t *testing.T, mkfs ...string) (*Sysroot, string) {
	t.Helper()
	testtool.Require(t, "ostree")
	requireRoot(t)
	for _, tool := range []string{"mkfs.ext4", "losetup", "mount", "umount", "debugfs"} {
		testtool.Require(t, tool)
	}
	dir := t.TempDir()
	img, path := filepath.Join(dir, "boot.img"), filepath.Join(dir, "sysroot")
	if err := os.MkdirAll(filepath.Join(path, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	run(mkfs[0], append(mkfs[1:], img)...)
	loop, err := exec.Command("losetup", "-f", "--show", img).Output()
	if err != nil {
		testtool.Skip(t, "no loop device: "+err.Error())
	}
	dev := strings.TrimSpace(string(loop))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	run("mount", dev, filepath.Join(path, "boot"))
	t.Cleanup(func() { exec.Command("umount", filepath.Join(path, "boot")).Run() })

	opts := Options{Env: testEnv}
	if err := Init(context.Background(), path, opts); err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatal(err)
	}
	withGrubEnv(t, s)
	if !isMountPoint(filepath.Join(path, "boot")) {
		t.Fatal("the loop file system is not seen as a mount point")
	}
	return s, img
}

var fastLink = regexp.MustCompile(`Fast link dest: "([^"]*)"`)

// grubView returns what a reader that does not replay the journal (GRUB,
// and debugfs, which reads the image the same way) sees on the boot file
// system: where /loader points and the environment block.
func grubView(t *testing.T, img string) (loader, env string) {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "stat /loader", img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs stat /loader: %v: %s", err, out)
	}
	m := fastLink.FindSubmatch(out)
	if m == nil && strings.Contains(string(out), "File not found") {
		m = [][]byte{nil, []byte("(nothing)")}
	}
	if m == nil {
		t.Fatalf("debugfs: /loader is not a symlink:\n%s", out)
	}
	env1, err := exec.Command("debugfs", "-R", "cat /grub/grubenv", img).Output()
	if err != nil {
		t.Fatalf("debugfs cat /grub/grubenv: %v", err)
	}
	return string(m[1]), string(env1)
}

// TestBootLoaderSeesChangesWithoutJournal: after every switch, blessing
// and rollback, GRUB's view of /boot (no journal replay) is the one Linux
// sees. The VM's power-cut step found the opposite: a fall-back's
// undeploy lived only in the ext4 journal, and after the cut GRUB booted
// the abandoned release again with the counter disarmed.
//
// The /boot here has a journal (ext4's default, as many images have);
// the MxOS image's has none (TestImageBootFSShowsStockDeploy).
func TestBootLoaderSeesChangesWithoutJournal(t *testing.T) {
	ctx := context.Background()
	s, img := bootOnLoop(t, "mkfs.ext4", "-q", "-L", "boot")
	check := func(when string) {
		t.Helper()
		want, err := os.Readlink(filepath.Join(s.Path(), "boot", "loader"))
		if err != nil {
			t.Fatal(err)
		}
		wantEnv, err := os.ReadFile(s.grubEnvPath())
		if err != nil {
			t.Fatal(err)
		}
		got, env := grubView(t, img)
		if got != want {
			t.Fatalf("%s: without the journal /boot/loader points to %s, Linux sees %s: after a power cut GRUB boots the old entries", when, got, want)
		}
		if env != string(wantEnv) {
			t.Fatalf("%s: without the journal the grubenv reads\n%.120q\nLinux sees\n%.120q", when, env, wantEnv)
		}
	}

	switched(t, s, "1.0")
	check("switch to 1.0")
	if err := s.MarkGood(); err != nil {
		t.Fatal(err)
	}
	check("blessing 1.0")
	_, d2 := switched(t, s, "2.0")
	check("switch to 2.0")
	if c, _ := grubVars(t, s); c != "3" {
		t.Fatalf("boot_counter=%q after the switch, want 3", c)
	}
	if err := s.Rollback(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	check("rollback from 2.0")
	if cur := mustCurrent(t, s); cur.Name == d2.Name {
		t.Fatalf("2.0 is still the default after the rollback")
	}
}

// TestImageBootFSShowsStockDeploy: on the boot file system the MxOS image
// makes (deploy/image/mkfs-boot.sh), GRUB sees what stock `ostree admin
// deploy` did as soon as it returns, before this package freezes /boot.
// The VM's power-cut step found the window this closes: Debian 12's
// ostree renames /boot/loader with only an fsync, then removes the old
// /ostree/boot.N links on the root; on a journaled /boot a cut there left
// GRUB on entries whose links were gone and the machine in the emergency
// shell. With mkfs-boot.sh's journal turned back on this test fails.
func TestImageBootFSShowsStockDeploy(t *testing.T) {
	ctx := context.Background()
	s, img := bootOnLoop(t, filepath.Join(testtool.ModuleRoot(t), "deploy", "image", "mkfs-boot.sh"))
	for _, version := range []string{"1.0", "2.0", "3.0"} {
		c := commitTree(t, s, version, true)
		if _, err := s.run(ctx, "pull-local", "--untrusted", "--repo="+s.SysrootRepoPath(), s.RepoPath(), c.String()); err != nil {
			t.Fatal(err)
		}
		// Stock ostree, not s.admin: nothing of ours runs after it.
		if _, err := s.run(ctx, "admin", "deploy", "--sysroot="+s.Path(), "--os="+s.stateroot, "--retain", c.String()); err != nil {
			t.Fatalf("ostree admin deploy %s: %v", version, err)
		}
		want, err := os.Readlink(filepath.Join(s.Path(), "boot", "loader"))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := grubView(t, img)
		if got != want {
			t.Fatalf("deploy of %s: without the journal /boot/loader points to %s, Linux sees %s: a power cut now boots entries whose /ostree/boot links are gone", version, got, want)
		}
		// Every entry GRUB would offer names a boot link the root has.
		entries, err := filepath.Glob(filepath.Join(s.Path(), "boot", want, "entries", "*.conf"))
		if err != nil || len(entries) == 0 {
			t.Fatalf("deploy of %s: no boot entries in %s (%v)", version, want, err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(e)
			if err != nil {
				t.Fatal(err)
			}
			link := bootLinkOf(t, string(b))
			if _, err := os.Stat(filepath.Join(s.Path(), link)); err != nil {
				t.Fatalf("deploy of %s: entry %s names %s: %v", version, filepath.Base(e), link, err)
			}
		}
	}
}

var ostreeKarg = regexp.MustCompile(`(?m)^options .*\bostree=(\S+)`)

// bootLinkOf returns the ostree= argument of a BLS entry.
func bootLinkOf(t *testing.T, entry string) string {
	t.Helper()
	m := ostreeKarg.FindStringSubmatch(entry)
	if m == nil {
		t.Fatalf("no ostree= argument in the boot entry:\n%s", entry)
	}
	return m[1]
}

// TestImageBootFSRepairsAfterPowerCut: the VM's fifth power cut left the
// image's journal-less /boot with an unattached inode, which e2fsck's
// preen mode (systemd-fsck's default) refuses to fix: /boot was not
// mounted and the machine stopped in the emergency shell. This makes the
// same damage on a file system made by deploy/image/mkfs-boot.sh, shows
// that preen refuses it and that the mode the image's kernel line selects
// (fsck.repair=yes in deploy/image/mkdisk.sh, e2fsck -y) repairs it.
func TestImageBootFSRepairsAfterPowerCut(t *testing.T) {
	for _, tool := range []string{"e2fsck", "debugfs"} {
		testtool.Require(t, tool)
	}
	root := testtool.ModuleRoot(t)
	mkdisk, err := os.ReadFile(filepath.Join(root, "deploy", "image", "mkdisk.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mkdisk), "--karg=fsck.repair=yes") {
		t.Fatal("deploy/image/mkdisk.sh does not give the kernel fsck.repair=yes: after a power cut the boot stops at /boot's check")
	}
	dir := t.TempDir()
	img, file := filepath.Join(dir, "boot.img"), filepath.Join(dir, "f")
	if err := os.WriteFile(file, []byte("a kernel\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) (string, int) {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return string(out), code
	}
	if out, code := run(filepath.Join(root, "deploy", "image", "mkfs-boot.sh"), img); code != 0 {
		t.Fatalf("mkfs-boot.sh: %s", out)
	}
	// A file written, its name gone, the file system not cleanly
	// unmounted: what a cut between ostree's writes can leave.
	for _, req := range []string{"write " + file + " f", "unlink /f", "ssv state 0"} {
		if out, code := run("debugfs", "-w", "-R", req, img); code != 0 {
			t.Fatalf("debugfs %s: %s", req, out)
		}
	}
	if out, code := run("e2fsck", "-p", img); code&4 == 0 {
		t.Fatalf("e2fsck -p fixed the damage alone (exit %d), so the test no longer shows the cut's failure:\n%s", code, out)
	}
	if out, code := run("e2fsck", "-y", img); code&^1 != 0 {
		t.Fatalf("e2fsck -y (fsck.repair=yes): exit %d\n%s", code, out)
	}
	if out, code := run("e2fsck", "-fn", img); code != 0 {
		t.Fatalf("after the repair the file system still has errors (exit %d):\n%s", code, out)
	}
}
