package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/storage/object"
	"github.com/mxos-linux/mxos-update/internal/storage/s3store"
	"github.com/mxos-linux/mxos-update/internal/storage/storagetest"
)

// nginxProc is a real nginx (Debian's) running one site file, with an
// access log naming the upstream of every request.
type nginxProc struct {
	dir       string
	accessLog string
}

// startNginx runs nginx on site (a server block, with its upstreams) in a
// fresh prefix directory until the test ends, and waits until port
// accepts connections. The access log's lines are "UPSTREAM METHOD URI".
func startNginx(t *testing.T, site string, port int) *nginxProc {
	t.Helper()
	nginx := requireTool(t, "nginx")
	dir := t.TempDir()
	n := &nginxProc{dir: dir, accessLog: filepath.Join(dir, "access.log")}
	main := fmt.Sprintf(`daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events {}
http {
  log_format upstream '$upstream_addr $request_method $request_uri';
  access_log %[1]s/access.log upstream;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  include %[1]s/site.conf;
}
`, dir)
	for name, body := range map[string]string{"site.conf": site, "nginx.conf": main} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	// SIGTERM: nginx's fast shutdown, which also ends its workers (they
	// hold the output pipe).
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return n
		}
		if i == 100 {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not start: %s\n%s", out.String(), b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mark is the access log's current length: upstreams(mark, …) then
// counts only the requests made after it.
func (n *nginxProc) mark(t *testing.T) int64 {
	t.Helper()
	fi, err := os.Stat(n.accessLog)
	if os.IsNotExist(err) {
		return 0
	} else if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// upstreams counts, per upstream address, the requests logged after mark
// whose URI starts with prefix.
func (n *nginxProc) upstreams(t *testing.T, mark int64, prefix string) map[string]int {
	t.Helper()
	f, err := os.Open(n.accessLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(mark, 0); err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && strings.HasPrefix(fields[2], prefix) {
			m[fields[0]]++
		}
	}
	return m
}

// cluster is the multi-server setup of deploy/compose: a writer and two
// replicas (mxos-server binaries, each with its own data directory) on
// one PostgreSQL database and one S3 bucket (versitygw; the served
// repository and the registry's blobs), behind Debian's nginx running
// deploy/compose/nginx.conf with only addresses and certificate paths
// changed: TLS at nginx, devices' checks, reports and /repo/ round robin
// over the replicas, everything else to the writer. Signed channel
// metadata is on (mxosctl metadata init into the writer's DATA/metadata,
// as the README sets it up).
type cluster struct {
	*replicaSet // urls[0] the writer, urls[1] and urls[2] the replicas
	pki         testPKI
	lb          string // https://127.0.0.1:PORT
	lbHost      string // 127.0.0.1:PORT
	nginx       *nginxProc
	bucket      s3store.Config
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	requireTool(t, "nginx")
	s3 := storagetest.StartS3(t)
	c := &cluster{pki: newTestPKI(t), bucket: s3.Bucket(t)}
	conf, _ := s3.StorageFile(t, c.bucket.Bucket)
	c.replicaSet = startReplicasWith(t, 3, func(int) []string { return []string{"--storage", conf} }, func(w workDir) {
		w.run(nil, mxosctl(), "metadata", "init", "--keys", "keys", "--online-pub", "online-keys", "--out", "data-0/metadata")
	})
	b, err := os.ReadFile("../../deploy/compose/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	addr := func(u string) string { return strings.TrimPrefix(u, "http://") }
	httpsPort, httpPort := freePort(t), freePort(t)
	site := string(b)
	for _, r := range []struct{ old, new string }{
		{"server replica:8080 max_fails=2 fail_timeout=5s;", "server " + addr(c.urls[1]) + " max_fails=2 fail_timeout=5s;\n    server " +
			addr(c.urls[2]) + " max_fails=2 fail_timeout=5s;"},
		{"writer:8080", addr(c.urls[0])},
		{"listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", httpPort)},
		{"listen 443 ssl;", fmt.Sprintf("listen 127.0.0.1:%d ssl;", httpsPort)},
		{"/etc/nginx/tls/fullchain.pem", c.pki.cert},
		{"/etc/nginx/tls/privkey.pem", c.pki.key},
	} {
		if !strings.Contains(site, r.old) {
			t.Fatalf("deploy/compose/nginx.conf has no %q", r.old)
		}
		site = strings.ReplaceAll(site, r.old, r.new)
	}
	c.nginx = startNginx(t, site, httpsPort)
	c.lbHost = fmt.Sprintf("127.0.0.1:%d", httpsPort)
	c.lb = "https://" + c.lbHost
	return c
}

// lbCtl runs mxosctl through the load balancer with token.
func (c *cluster) lbCtl(token string, args ...string) string {
	c.w.t.Helper()
	return c.w.run([]string{"MXOS_SERVER=" + c.lb, "MXOS_TOKEN=" + token, "MXOS_CA_FILE=" + c.pki.ca}, mxosctl(), args...)
}

// bothReplicas fails the test unless the requests under prefix logged
// after mark went to both replicas and nowhere else.
func (c *cluster) bothReplicas(t *testing.T, what string, mark int64, prefix string) {
	t.Helper()
	got := c.nginx.upstreams(t, mark, prefix)
	r1, r2 := strings.TrimPrefix(c.urls[1], "http://"), strings.TrimPrefix(c.urls[2], "http://")
	if got[r1] == 0 || got[r2] == 0 || len(got) != 2 {
		t.Fatalf("%s: requests under %s went to %v; want both replicas %s and %s only", what, prefix, got, r1, r2)
	}
	t.Logf("%s: %s requests per replica %v", what, prefix, got)
}

// TestClusterE2E runs the e2e suites once against the multi-server
// setup (startCluster): the release team publishes and promotes with
// mxosctl through the load balancer and stock ostree pulls the promoted
// ref through it with GPG verification of commits and summary, the
// requests spread over both replicas, and fsck is clean; the same ref is
// pulled from a replica directly. mxos-updater, set up as the README's
// device quick start (release keys, signed root, metadata on, TLS with
// the CA's file), installs a release through the load balancer, its
// repository reads landing on both replicas, and so does a second release
// published to the writer directly. The OCI distribution-spec conformance suite passes through
// the load balancer with the registry's blobs in the bucket.
func TestClusterE2E(t *testing.T) {
	requireOstreeGPG(t)
	c := startCluster(t)
	w := c.w
	const writer, r2 = 0, 2

	t.Run("publish-promote-stock-pull", func(t *testing.T) {
		w.write("rootfs/usr/bin/hola", "#!/bin/sh\necho hola 10.0.1\n")
		c.lbCtl(c.release, "publish", "--channel", "testing", "--version", "10.0.1", "--keys", "keys", "--work", "work", "./rootfs")
		c.lbCtl(c.release, "promote", "--from", "testing", "--to", "stable", "--version", "10.0.1", "--keys", "keys")
		const ref = "mxos/10/x86_64/stable"
		env := toolEnv(t)
		mark := c.nginx.mark(t)
		cl := newClient(t, env, c.lb+"/repo", append(gpgRemote(filepath.Join(w.dir, "keys", "openpgp.pub.asc")), "--set=tls-ca-path="+c.pki.ca)...)
		cl.mustRun("remote", "gpg-import", "--keyring="+filepath.Join(w.dir, "online-keys", "openpgp.pub.asc"), "origin")
		cl.mustRun("pull", "origin", ref)
		cl.mustRun("fsck")
		c.bothReplicas(t, "stock ostree pull", mark, "/repo/")
		head := cl.revParse("origin:" + ref)
		// Published through the writer, read from one replica directly.
		direct := newClient(t, env, c.urls[r2]+"/repo", gpgRemote(filepath.Join(w.dir, "keys", "openpgp.pub.asc"))...)
		direct.mustRun("remote", "gpg-import", "--keyring="+filepath.Join(w.dir, "online-keys", "openpgp.pub.asc"), "origin")
		direct.mustRun("pull", "origin", ref)
		direct.mustRun("fsck")
		if got := direct.revParse("origin:" + ref); got != head {
			t.Fatalf("replica %s serves %s at %s, the load balancer %s", c.urls[r2], ref, got, head)
		}
	})

	t.Run("agent", func(t *testing.T) {
		w.write("device/keys/ed25519.pub", w.read("keys/ed25519.pub"))
		w.write("device/keys/openpgp.pub.asc", w.read("keys/openpgp.pub.asc"))
		w.write("device/keys/root.json", w.read("data-0/metadata/root.json"))
		tok := w.run(nil, mxosServer(), "token", "create", "--data", "data-0", "--database", c.dsn, "--role", "device", "--name", "aulas")
		w.write("device/token", strings.SplitN(tok, "\n", 2)[0]+"\n")
		deviceConfig := func(server string) {
			w.write("device/config.yaml", strings.Join([]string{"server: " + server, "ca_file: " + c.pki.ca, "token_file: device/token",
				"device_id: lab3-pc07", "channel: testing", "arch: x86_64", "trusted_keys: device/keys",
				"trusted_root: device/keys/root.json", "sysroot: device/sysroot"}, "\n")+"\n")
		}
		deviceConfig(c.lb)
		mark := c.nginx.mark(t)
		if out := w.run(nil, mxosUpdater(t), "--config", "device/config.yaml", "upgrade"); !strings.Contains(out, "Version 10.0.1 is installed") {
			t.Fatalf("upgrade through the load balancer:\n%s", out)
		}
		// Checks, reports and repository reads go to the replicas, and the
		// repository reads of one upgrade to both.
		for _, p := range []string{"/api/v1/check", "/api/v1/report", "/repo/"} {
			got := c.nginx.upstreams(t, mark, p)
			if len(got) == 0 || got[strings.TrimPrefix(c.urls[writer], "http://")] != 0 {
				t.Fatalf("the device's %s requests through the load balancer went to %v; want replicas only", p, got)
			}
		}
		c.bothReplicas(t, "mxos-updater upgrade", mark, "/repo/")
		if n := c.nginx.upstreams(t, mark, "/metadata/")[strings.TrimPrefix(c.urls[writer], "http://")]; n == 0 {
			t.Fatalf("the device fetched no signed channel metadata from the writer: %v", c.nginx.upstreams(t, mark, "/"))
		}

		// The next release, published to the writer directly, installed
		// through the load balancer.
		c.ctl(writer, c.release, "rollout", "complete", "--channel", "testing", "--arch", "x86_64")
		w.write("rootfs/usr/bin/hola", "#!/bin/sh\necho hola 10.0.2\n")
		c.ctl(writer, c.release, "publish", "--channel", "testing", "--version", "10.0.2", "--keys", "keys", "--work", "work", "./rootfs")
		mark = c.nginx.mark(t)
		if out := w.run(nil, mxosUpdater(t), "--config", "device/config.yaml", "upgrade"); !strings.Contains(out, "Version 10.0.2 is installed") {
			t.Fatalf("upgrade to 10.0.2 through the load balancer:\n%s", out)
		}
		c.bothReplicas(t, "mxos-updater upgrade to 10.0.2", mark, "/repo/")
	})

	t.Run("registry-conformance", func(t *testing.T) {
		mark := c.nginx.mark(t)
		runConformance(t, c.lbHost, c.release, "OCI_TLS=enabled", "SSL_CERT_FILE="+c.pki.ca)
		got := c.nginx.upstreams(t, mark, "/v2/")
		if len(got) != 1 || got[strings.TrimPrefix(c.urls[writer], "http://")] == 0 {
			t.Fatalf("registry requests went to %v; want the writer only (deploy/compose/nginx.conf)", got)
		}
		st, err := s3store.New(context.Background(), c.bucket)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		if err := st.List(context.Background(), "oci/blobs/", func(object.Info) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatal("the conformance suite's blobs are not in the bucket")
		}
	})
}
