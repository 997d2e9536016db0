package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/testserver"
	"github.com/mxos-linux/mxos-update/internal/testtool"
	"github.com/mxos-linux/mxos-update/internal/testtool/e2ekit"
)

// TestBackupRestore follows deploy/backup/README.md: a server set up as
// the README's device quick start, with releases, tokens and a device,
// is backed up while it runs (deploy/backup/backup.sh); the backup is
// restored into an empty directory (restore.sh) and a second server
// started on it serves the same signed summary, the same signed channel
// metadata and the same transparency log, and knows the device's token:
// the device checks in and is up to date. A damaged backup and a
// non-empty target are refused with nothing written.
func TestBackupRestore(t *testing.T) {
	testtool.Require(t, "sqlite3")
	dir := t.TempDir()
	root := filepath.Join(testtool.ModuleRoot(t), "deploy", "backup")
	w := workDir{t, dir}
	run, write := w.run, w.write
	copyFile := func(from, to string) { t.Helper(); write(to, w.read(from)) }

	run(nil, mxosctl(), "keys", "generate", "--dir", "keys")
	run(nil, mxosctl(), "keys", "generate", "--dir", "online-keys")
	copyFile("keys/ed25519.pub", "device/keys/ed25519.pub")
	copyFile("keys/openpgp.pub.asc", "device/keys/openpgp.pub.asc")
	run(nil, mxosctl(), "metadata", "init", "--keys", "keys", "--online-pub", "online-keys", "--out", "mxos-data/metadata")
	copyFile("mxos-data/metadata/root.json", "device/keys/root.json")
	serverArgs := func(onlineKeys string) []string {
		return []string{"--release-keys", filepath.Join(dir, "device/keys"), "--online-keys", onlineKeys, "--channels", testserver.ChannelsDir()}
	}
	repoURL, stopA := startServerProcess(t, filepath.Join(dir, "mxos-data"), serverArgs(filepath.Join(dir, "online-keys"))...)
	serverA := strings.TrimSuffix(repoURL, "/repo")
	deviceToken := strings.TrimSpace(strings.SplitN(run(nil, mxosServer(), "token", "create", "--data", "mxos-data", "--role", "device", "--name", "aulas"), "\n", 2)[0])
	releaseToken := strings.TrimSpace(strings.SplitN(run(nil, mxosServer(), "token", "create", "--data", "mxos-data", "--role", "release", "--name", "equipo"), "\n", 2)[0])
	write("device/token", deviceToken+"\n")
	deviceConfig := func(server string) {
		write("device/config.yaml", strings.Join([]string{"server: " + server, "token_file: device/token", "device_id: lab3-pc07",
			"channel: testing", "arch: x86_64", "trusted_keys: device/keys", "trusted_root: device/keys/root.json",
			"sysroot: device/sysroot"}, "\n")+"\n")
	}
	deviceConfig(serverA)
	env := []string{"MXOS_SERVER=" + serverA, "MXOS_TOKEN=" + releaseToken}
	for _, version := range []string{"10.0.1", "10.0.2"} {
		write("rootfs/usr/bin/hola", "#!/bin/sh\necho hola "+version+"\n")
		if version != "10.0.1" {
			run(env, mxosctl(), "rollout", "complete", "--channel", "testing", "--arch", "x86_64")
		}
		run(env, mxosctl(), "publish", "--channel", "testing", "--version", version, "--keys", "keys", "./rootfs")
		if out := run(nil, mxosUpdater(t), "--config", "device/config.yaml", "upgrade"); !strings.Contains(out, "Version "+version+" is installed") {
			t.Fatalf("upgrade to %s:\n%s", version, out)
		}
	}
	served := func(server string) map[string][]byte {
		m := map[string][]byte{}
		for _, p := range []string{"/repo/summary", "/repo/summary.sig", "/repo/refs/heads/mxos/10/x86_64/testing", "/log/checkpoint"} {
			m[p] = httpGet(t, server+p)
		}
		return m
	}
	e2ekit.WaitLogSettled(t, serverA)
	before := served(serverA)

	// The backup, taken while the server runs (online keys included).
	backup := filepath.Join(dir, "backup")
	run([]string{"MXOS_ONLINE_KEYS=" + filepath.Join(dir, "online-keys")}, filepath.Join(root, "backup.sh"), "mxos-data", backup)
	if fi, err := os.Stat(filepath.Join(backup, "secrets.tar")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secrets.tar: %v %v, want mode 0600", fi.Mode(), err)
	}
	stopA() // the old machine is gone

	// Refusals first: a damaged backup, a target that is not empty.
	damaged := filepath.Join(dir, "damaged")
	run(nil, "cp", "-a", backup, damaged)
	f, err := os.OpenFile(filepath.Join(damaged, "data.tar"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("X"), 4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, tc := range []struct{ backup, target, want string }{
		{damaged, filepath.Join(dir, "new-a", "mxos-data"), "checksums do not match"},
		{backup, filepath.Join(dir, "device"), "is not empty"},
	} {
		out, err := exec.Command(filepath.Join(root, "restore.sh"), tc.backup, tc.target).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Fatalf("restore %s into %s: %v\n%s", filepath.Base(tc.backup), tc.target, err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "new-a")); !os.IsNotExist(err) {
		t.Fatalf("a refused restore wrote %s: %v", filepath.Join(dir, "new-a"), err)
	}

	newData := filepath.Join(dir, "new", "mxos-data")
	run(nil, filepath.Join(root, "restore.sh"), backup, newData)
	if fi, err := os.Stat(filepath.Join(newData, "log-key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("restored log key: %v, want mode 0600", err)
	}
	repoB := startServerBinary(t, newData, serverArgs(filepath.Join(dir, "new", "online-keys"))...)
	serverB := strings.TrimSuffix(repoB, "/repo")
	after := served(serverB)
	for p, b := range before {
		if !bytes.Equal(after[p], b) {
			t.Errorf("%s differs after the restore:\nbefore %q\nafter  %q", p, b, after[p])
		}
	}
	deviceConfig(serverB)
	check := exec.Command(mxosUpdater(t), "--config", "device/config.yaml", "check")
	check.Dir = dir
	out, err := check.CombinedOutput()
	if code := exitCode(err); code != 77 {
		t.Fatalf("the device's check against the restored server: exit %d (want 77, no update)\n%s", code, out)
	}
	admin := strings.TrimSpace(strings.SplitN(run(nil, mxosServer(), "token", "create", "--data", newData, "--role", "admin", "--name", "admin"), "\n", 2)[0])
	if st := run([]string{"MXOS_SERVER=" + serverB, "MXOS_TOKEN=" + admin}, mxosctl(), "devices", "show", "lab3-pc07"); !strings.Contains(st, "10.0.2") {
		t.Fatalf("the restored server does not know the device on 10.0.2:\n%s", st)
	}
}

func exitCode(err error) int { return e2ekit.ExitCode(err) }
