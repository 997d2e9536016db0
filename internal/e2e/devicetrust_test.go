package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/testserver"
)

// TestDeviceSetUpAsREADMESays (issue 9, failure 1) runs the README's
// "Quick start: a device" with the real binaries: release and online keys,
// metadata init, mxos-server with --release-keys and --online-keys,
// mxosctl publish to it, and a device configured with the release public
// keys and root.json only. The device installs the first release and
// upgrades to the second; before key roles were split it could not read
// the summary the online key signs.
func TestDeviceSetUpAsREADMESays(t *testing.T) {
	dir := t.TempDir()
	run := func(env []string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), err, out, stderr.String())
		}
		return string(out) + stderr.String()
	}
	write := func(rel, body string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	read := func(rel string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	run(nil, mxosctl(), "keys", "generate", "--dir", "keys")
	run(nil, mxosctl(), "keys", "generate", "--dir", "online-keys")
	write("device/keys/ed25519.pub", read("keys/ed25519.pub"))
	write("device/keys/openpgp.pub.asc", read("keys/openpgp.pub.asc"))
	run(nil, mxosctl(), "metadata", "init", "--keys", "keys", "--online-pub", "online-keys", "--out", "mxos-data/metadata")
	write("device/keys/root.json", read("mxos-data/metadata/root.json"))
	repoURL := startServerBinary(t, filepath.Join(dir, "mxos-data"), "--release-keys", filepath.Join(dir, "device/keys"),
		"--online-keys", filepath.Join(dir, "online-keys"), "--channels", testserver.ChannelsDir())
	server := strings.TrimSuffix(repoURL, "/repo")
	token := func(role, name string) string {
		return strings.TrimSpace(strings.SplitN(run(nil, mxosServer(), "token", "create", "--data", "mxos-data", "--role", role, "--name", name), "\n", 2)[0])
	}
	write("device/token", token("device", "aulas")+"\n")
	env := []string{"MXOS_SERVER=" + server, "MXOS_TOKEN=" + token("release", "equipo-release")}
	write("device/config.yaml", strings.Join([]string{"server: " + server, "token_file: device/token", "device_id: lab3-pc07",
		"channel: testing", "arch: x86_64", "trusted_keys: device/keys", "trusted_root: device/keys/root.json",
		"sysroot: device/sysroot"}, "\n")+"\n")

	for _, version := range []string{"10.0.1", "10.0.2"} {
		write("rootfs/usr/etc/os-release", "NAME=MxOS\nVERSION_ID="+version+"\n")
		write("rootfs/usr/bin/hola", "#!/bin/sh\necho hola "+version+"\n")
		if version != "10.0.1" { // the previous rollout must end first
			run(env, mxosctl(), "rollout", "complete", "--channel", "testing", "--arch", "x86_64")
		}
		run(env, mxosctl(), "publish", "--channel", "testing", "--version", version, "--keys", "keys", "./rootfs")
		out := run(nil, mxosUpdater(t), "--config", "device/config.yaml", "upgrade")
		if !strings.Contains(out, "Version "+version+" is installed") {
			t.Fatalf("upgrade to %s:\n%s", version, out)
		}
		if st := run(nil, mxosUpdater(t), "--config", "device/config.yaml", "status"); !strings.Contains(st, "Current:  "+version) {
			t.Fatalf("status after upgrading to %s:\n%s", version, st)
		}
		if b := read("device/sysroot/current/usr/bin/hola"); !strings.Contains(b, version) {
			t.Fatalf("deployed tree of %s: %q", version, b)
		}
	}
}
