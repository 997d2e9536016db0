package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/testserver"
)

// TestRotateOnlineKey rotates the server's online key as `mxosctl
// metadata rotate-keys --help` says, with the real binaries: the
// mxos-server runs with online key A; it restarts holding A and B (both in
// its online ed25519.secret), the release team runs rotate-keys
// --new-online-pub B, and it restarts holding B only. A device set up as
// the README says, shipping root 1 (which names A only), follows the
// cross-signed root 2 and upgrades with the summary and metadata signed by
// B alone. Afterwards a summary or a timestamp signed only by A (a thief of
// the retired key in front of the server) is refused, and the device stays
// on its deployment; without the thief it upgrades.
func TestRotateOnlineKey(t *testing.T) {
	dir := t.TempDir()
	run := func(env []string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	write := func(rel, body string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
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

	for _, d := range []string{"keys", "online-a", "online-b"} {
		run(nil, mxosctl(), "keys", "generate", "--dir", d)
	}
	write("online-ab/"+sign.Ed25519SecretFile, read("online-a/"+sign.Ed25519SecretFile)+read("online-b/"+sign.Ed25519SecretFile), 0o600)
	write("device/keys/ed25519.pub", read("keys/ed25519.pub"), 0o644)
	write("device/keys/openpgp.pub.asc", read("keys/openpgp.pub.asc"), 0o644)
	run(nil, mxosctl(), "metadata", "init", "--keys", "keys", "--online-pub", "online-a", "--out", "mxos-data/metadata")
	write("device/keys/root.json", read("mxos-data/metadata/root.json"), 0o644)

	// Every start listens on the first one's address, so the device's
	// config stays as it is.
	listen := "127.0.0.1:0"
	start := func(online string) (string, func()) {
		t.Helper()
		u, stop := startServerProcess(t, filepath.Join(dir, "mxos-data"), "--listen", listen, "--release-keys", filepath.Join(dir, "device/keys"),
			"--online-keys", filepath.Join(dir, online), "--channels", testserver.ChannelsDir())
		server := strings.TrimSuffix(u, "/repo")
		listen = strings.TrimPrefix(server, "http://")
		return server, stop
	}
	server, stop := start("online-a")
	token := func(role, name string) string {
		out, err := exec.Command(mxosServer(), "token", "create", "--data", filepath.Join(dir, "mxos-data"), "--role", role, "--name", name).Output()
		if err != nil {
			t.Fatalf("token create: %v", err)
		}
		return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	write("device/token", token("device", "aulas")+"\n", 0o600)
	env := []string{"MXOS_SERVER=" + server, "MXOS_TOKEN=" + token("release", "equipo-release")}
	write("device/config.yaml", strings.Join([]string{"server: " + server, "token_file: device/token", "device_id: lab3-pc07",
		"channel: testing", "arch: x86_64", "trusted_keys: device/keys", "trusted_root: device/keys/root.json",
		"sysroot: device/sysroot"}, "\n")+"\n", 0o644)
	publishAndUpgrade := func(config, version string) {
		t.Helper()
		write("rootfs/usr/etc/os-release", "NAME=MxOS\nVERSION_ID="+version+"\n", 0o644)
		if version != "10.0.1" { // the previous rollout must end first
			run(env, mxosctl(), "rollout", "complete", "--channel", "testing", "--arch", "x86_64")
		}
		run(env, mxosctl(), "publish", "--channel", "testing", "--version", version, "--keys", "keys", "./rootfs")
		if config == "" {
			return
		}
		if out := run(nil, mxosUpdater(t), "--config", config, "upgrade"); !strings.Contains(out, "Version "+version+" is installed") {
			t.Fatalf("upgrade to %s:\n%s", version, out)
		}
	}
	publishAndUpgrade("device/config.yaml", "10.0.1")

	// The rotation, as rotate-keys --help says.
	stop()
	_, stop = start("online-ab")
	if out := run(env, mxosctl(), "metadata", "rotate-keys", "--keys", "keys", "--new-online-pub", "online-b"); !strings.Contains(out, "Rotated") {
		t.Fatalf("rotate-keys:\n%s", out)
	}
	stop()
	start("online-b")
	root, err := publish.RoleInfo("root", []byte(read("mxos-data/metadata/root.json")))
	if err != nil || root.Version != 2 {
		t.Fatalf("server's root after rotate-keys: %+v, %v", root, err)
	}

	// The device, still shipping root 1, follows and upgrades: the server
	// signs the summary and the metadata with B only now.
	publishAndUpgrade("device/config.yaml", "10.0.2")
	b, err := sign.LoadVerifiers(filepath.Join(dir, "online-b"))
	if err != nil {
		t.Fatal(err)
	}
	if err := verifySummaryPair(filepath.Join(dir, "mxos-data/repo"), b); err != nil {
		t.Fatalf("summary not signed by the new online key: %v", err)
	}
	aPub, err := sign.LoadVerifiers(filepath.Join(dir, "online-a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := verifySummaryPair(filepath.Join(dir, "mxos-data/repo"), aPub); err == nil {
		t.Fatal("summary still signed by the retired online key")
	}

	// The thief of A re-signs the real summary, or a newer timestamp,
	// with A alone.
	a, err := sign.LoadSigners(filepath.Join(dir, "online-a"))
	if err != nil {
		t.Fatal(err)
	}
	aTUF, err := publish.LoadEd25519Signers(filepath.Join(dir, "online-a"))
	if err != nil {
		t.Fatal(err)
	}
	publishAndUpgrade("", "10.0.3")
	up, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	forges := []struct {
		name, path, want string
		forge            func(real []byte) []byte
	}{
		{"summary", "/repo/summary.sig", "signature verification failed", func([]byte) []byte {
			md, err := release.SignData(a, []byte(read("mxos-data/repo/summary")), nil)
			if err != nil {
				t.Fatal(err)
			}
			out, err := ostree.MarshalMetadata(md)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}},
		{"timestamp", "/metadata/timestamp.json", "not signed by the required keys", func(real []byte) []byte {
			ts, err := metadata.Timestamp().FromBytes(real)
			if err != nil {
				t.Fatal(err)
			}
			ts.Signed.Version++
			ts.ClearSignatures()
			for _, s := range aTUF {
				if _, err := ts.Sign(s); err != nil {
					t.Fatal(err)
				}
			}
			out, err := ts.ToBytes(false)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}},
	}
	for _, tc := range forges {
		t.Run(tc.name, func(t *testing.T) {
			rp := httputil.NewSingleHostReverseProxy(up)
			proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != tc.path {
					rp.ServeHTTP(w, r)
					return
				}
				resp, err := http.Get(server + tc.path)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadGateway)
					return
				}
				real, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadGateway)
					return
				}
				w.Write(tc.forge(real))
			}))
			defer proxy.Close()
			write("device/attacked.yaml", strings.Replace(read("device/config.yaml"), server, proxy.URL, 1), 0o644)
			cmd := exec.Command(mxosUpdater(t), "--config", "device/attacked.yaml", "upgrade")
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) || strings.Contains(string(out), "10.0.3 is installed") {
				t.Fatalf("upgrade through a %s signed by the retired online key: %v, want a refusal saying %q:\n%s", tc.name, err, tc.want, out)
			}
			t.Logf("refused: %s", strings.TrimSpace(string(out)))
			if st := run(nil, mxosUpdater(t), "--config", "device/config.yaml", "status"); !strings.Contains(st, "Current:  10.0.2") {
				t.Fatalf("status after the attack:\n%s", st)
			}
		})
	}
	if out := run(nil, mxosUpdater(t), "--config", "device/config.yaml", "upgrade"); !strings.Contains(out, "Version 10.0.3 is installed") {
		t.Fatalf("upgrade to 10.0.3 without the thief:\n%s", out)
	}
}
