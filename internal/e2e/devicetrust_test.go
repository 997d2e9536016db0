package e2e

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/testserver"
)

// TestDeviceSetUpAsREADMESays (issue 9, failure 1) runs the README's
// "Quick start: a device" with the real binaries: release and online keys,
// metadata init, mxos-server with --release-keys and --online-keys,
// mxosctl publish to it, and a device configured with the release public
// keys and root.json only. The device installs the first release and
// upgrades to the second; before key roles were split it could not read
// the summary the online key signs.
//
// Then a thief of the online key (a hostile proxy in front of the server)
// offers a commit signed by that key only, with a summary it signed: the
// device refuses it with signed metadata and with insecure_no_metadata,
// and its deployments and refs stay as they were.
func TestDeviceSetUpAsREADMESays(t *testing.T) {
	dir := t.TempDir()
	w := workDir{t, dir}
	try, run, write, read := w.try, w.run, w.write, w.read

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
		cmd := exec.Command(mxosServer(), "token", "create", "--data", "mxos-data", "--role", role, "--name", name)
		cmd.Dir = dir
		out, err := cmd.Output() // the secret alone on stdout
		if err != nil {
			t.Fatalf("token create: %v", err)
		}
		return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
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

	// The attack. The thief signs a commit (10.0.2's tree, "10.0.3") and
	// a summary naming it with the online key only.
	ref := "mxos/10/x86_64/testing"
	online, err := sign.LoadSigners(filepath.Join(dir, "online-keys"))
	if err != nil {
		t.Fatal(err)
	}
	srvRepo, err := ostree.Open(filepath.Join(dir, "mxos-data/repo"))
	if err != nil {
		t.Fatal(err)
	}
	cur, err := srvRepo.ResolveRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := srvRepo.ReadMetadata(cur, ostree.ObjCommit)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := ostree.ParseCommit(raw)
	if err != nil {
		t.Fatal(err)
	}
	evil := *cm
	evil.Timestamp += 60
	evil.Metadata = append(ostree.Metadata(nil), cm.Metadata...).Set(ostree.MetaVersion, ostree.StringVar("10.0.3"))
	cb, err := evil.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	cc := ostree.Checksum(sha256.Sum256(cb))
	signed := func(b []byte) []byte {
		md, err := release.SignData(online, b, nil)
		if err != nil {
			t.Fatal(err)
		}
		out, err := ostree.MarshalMetadata(md)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	sb, err := (&ostree.Summary{Refs: []ostree.SummaryRef{{Name: ref, CommitSize: uint64(len(cb)), Checksum: cc}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	forged := map[string][]byte{"/repo/summary": sb, "/repo/summary.sig": signed(sb),
		"/repo/" + ostree.ObjectPath(cc, ostree.ObjCommit): cb, "/repo/" + ostree.ObjectPath(cc, ostree.ObjCommitMeta): signed(cb)}
	up, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(up)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/check" {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(api.CheckResponse{Update: true, Reason: "eligible", Target: &api.Target{
				Channel: "testing", Arch: "x86_64", Version: "10.0.3", Ref: ref, Commit: cc.String()}})
			return
		}
		if b, ok := forged[r.URL.Path]; ok {
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			w.Write(b)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)

	write("device/online-keys/ed25519.pub", read("online-keys/ed25519.pub"))
	write("device/online-keys/openpgp.pub.asc", read("online-keys/openpgp.pub.asc"))
	base := strings.Replace(read("device/config.yaml"), server, proxy.URL, 1)
	local, err := ostree.Open(filepath.Join(dir, "device/sysroot/repo"))
	if err != nil {
		t.Fatal(err)
	}
	refsBefore, err := local.ListRefs()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, config, want string }{
		{"signed metadata", base, "not in the signed channel metadata"},
		{"no metadata", strings.Replace(base, "trusted_root: device/keys/root.json\n",
			"insecure_no_metadata: true\nonline_keys: device/online-keys\n", 1), "signature verification failed"},
	} {
		write("device/attacked.yaml", tc.config)
		out, err := try(nil, mxosUpdater(t), "--config", "device/attacked.yaml", "upgrade")
		if err == nil || !strings.Contains(out, tc.want) {
			t.Fatalf("%s: upgrade to the online-key-only commit: %v, want a refusal saying %q:\n%s", tc.name, err, tc.want, out)
		}
		t.Logf("%s: refused: %s", tc.name, strings.TrimSpace(out))
		if st := run(nil, mxosUpdater(t), "--config", "device/config.yaml", "status"); !strings.Contains(st, "Current:  10.0.2") {
			t.Fatalf("%s: status after the attack:\n%s", tc.name, st)
		}
		if refs, err := local.ListRefs(); err != nil || fmt.Sprint(refs) != fmt.Sprint(refsBefore) {
			t.Fatalf("%s: local refs %v (%v), before %v", tc.name, refs, err, refsBefore)
		}
	}
}
