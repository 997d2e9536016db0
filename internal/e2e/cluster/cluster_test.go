package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/storage/object"
	"github.com/mxos-linux/mxos-update/internal/storage/s3store"
	"github.com/mxos-linux/mxos-update/internal/storage/storagetest"
	"github.com/mxos-linux/mxos-update/internal/testtool"
	"github.com/mxos-linux/mxos-update/internal/testtool/e2ekit"
)

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
	*e2ekit.Replicas // URLs[0] the writer, URLs[1] and URLs[2] the replicas
	pki              e2ekit.PKI
	lb               string // https://127.0.0.1:PORT
	lbHost           string // 127.0.0.1:PORT
	nginx            *e2ekit.Nginx
	bucket           s3store.Config
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	testtool.Require(t, "nginx")
	s3 := storagetest.StartS3(t)
	c := &cluster{pki: e2ekit.NewPKI(t), bucket: s3.Bucket(t)}
	conf, _ := s3.StorageFile(t, c.bucket.Bucket)
	c.Replicas = e2ekit.StartReplicas(t, 3, func(int) []string { return []string{"--storage", conf} }, func(w e2ekit.WorkDir) {
		w.Run(nil, e2ekit.Mxosctl(), "metadata", "init", "--keys", "keys", "--online-pub", "online-keys", "--out", "data-0/metadata")
	})
	b, err := os.ReadFile(filepath.Join(testtool.ModuleRoot(t), "deploy", "compose", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	addr := func(u string) string { return strings.TrimPrefix(u, "http://") }
	httpsPort, httpPort := e2ekit.FreePort(t), e2ekit.FreePort(t)
	site := string(b)
	for _, r := range []struct{ old, new string }{
		{"server replica:8080 max_fails=2 fail_timeout=5s;", "server " + addr(c.URLs[1]) + " max_fails=2 fail_timeout=5s;\n    server " +
			addr(c.URLs[2]) + " max_fails=2 fail_timeout=5s;"},
		{"writer:8080", addr(c.URLs[0])},
		{"listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", httpPort)},
		{"listen 443 ssl;", fmt.Sprintf("listen 127.0.0.1:%d ssl;", httpsPort)},
		{"/etc/nginx/tls/fullchain.pem", c.pki.Cert},
		{"/etc/nginx/tls/privkey.pem", c.pki.Key},
	} {
		if !strings.Contains(site, r.old) {
			t.Fatalf("deploy/compose/nginx.conf has no %q", r.old)
		}
		site = strings.ReplaceAll(site, r.old, r.new)
	}
	c.nginx = e2ekit.StartNginx(t, site, httpsPort)
	c.lbHost = fmt.Sprintf("127.0.0.1:%d", httpsPort)
	c.lb = "https://" + c.lbHost
	return c
}

// lbCtl runs mxosctl through the load balancer with token.
func (c *cluster) lbCtl(token string, args ...string) string {
	c.W.T.Helper()
	return c.W.Run([]string{"MXOS_SERVER=" + c.lb, "MXOS_TOKEN=" + token, "MXOS_CA_FILE=" + c.pki.CA}, e2ekit.Mxosctl(), args...)
}

// bothReplicas fails the test unless the requests under prefix logged
// after mark went to both replicas and nowhere else.
func (c *cluster) bothReplicas(t *testing.T, what string, mark int64, prefix string) {
	t.Helper()
	got := c.nginx.Upstreams(t, mark, prefix)
	r1, r2 := strings.TrimPrefix(c.URLs[1], "http://"), strings.TrimPrefix(c.URLs[2], "http://")
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
// published to the writer directly. The OCI distribution-spec
// conformance suite passes through the load balancer with the registry's
// blobs in the bucket. The steps share the cluster and run in order (the
// agent installs the release the first step published).
func TestClusterE2E(t *testing.T) {
	e2ekit.RequireOstreeGPG(t)
	c := startCluster(t)
	w := c.W
	const writer, r2 = 0, 2

	t.Run("publish-promote-stock-pull", func(t *testing.T) {
		w.Write("rootfs/usr/bin/hola", "#!/bin/sh\necho hola 10.0.1\n")
		c.lbCtl(c.Release, "publish", "--channel", "testing", "--version", "10.0.1", "--keys", "keys", "--work", "work", "./rootfs")
		c.lbCtl(c.Release, "promote", "--from", "testing", "--to", "stable", "--version", "10.0.1", "--keys", "keys")
		const ref = "mxos/10/x86_64/stable"
		env := e2ekit.ToolEnv(t)
		mark := c.nginx.Mark(t)
		cl := e2ekit.NewClient(t, env, c.lb+"/repo", append(e2ekit.GPGRemote(filepath.Join(w.Dir, "keys", "openpgp.pub.asc")), "--set=tls-ca-path="+c.pki.CA)...)
		cl.MustRun("remote", "gpg-import", "--keyring="+filepath.Join(w.Dir, "online-keys", "openpgp.pub.asc"), "origin")
		cl.MustRun("pull", "origin", ref)
		cl.MustRun("fsck")
		c.bothReplicas(t, "stock ostree pull", mark, "/repo/")
		head := cl.RevParse("origin:" + ref)
		// Published through the writer, read from one replica directly.
		direct := e2ekit.NewClient(t, env, c.URLs[r2]+"/repo", e2ekit.GPGRemote(filepath.Join(w.Dir, "keys", "openpgp.pub.asc"))...)
		direct.MustRun("remote", "gpg-import", "--keyring="+filepath.Join(w.Dir, "online-keys", "openpgp.pub.asc"), "origin")
		direct.MustRun("pull", "origin", ref)
		direct.MustRun("fsck")
		if got := direct.RevParse("origin:" + ref); got != head {
			t.Fatalf("replica %s serves %s at %s, the load balancer %s", c.URLs[r2], ref, got, head)
		}
	})

	t.Run("agent", func(t *testing.T) {
		w.Write("device/keys/ed25519.pub", w.Read("keys/ed25519.pub"))
		w.Write("device/keys/openpgp.pub.asc", w.Read("keys/openpgp.pub.asc"))
		w.Write("device/keys/root.json", w.Read("data-0/metadata/root.json"))
		tok := w.Run(nil, e2ekit.MxosServer(), "token", "create", "--data", "data-0", "--database", c.DSN, "--role", "device", "--name", "aulas")
		w.Write("device/token", strings.SplitN(tok, "\n", 2)[0]+"\n")
		deviceConfig := func(server string) {
			w.Write("device/config.yaml", strings.Join([]string{"server: " + server, "ca_file: " + c.pki.CA, "token_file: device/token",
				"device_id: lab3-pc07", "channel: testing", "arch: x86_64", "trusted_keys: device/keys",
				"trusted_root: device/keys/root.json", "sysroot: device/sysroot"}, "\n")+"\n")
		}
		deviceConfig(c.lb)
		mark := c.nginx.Mark(t)
		if out := w.Run(nil, e2ekit.MxosUpdater(t), "--config", "device/config.yaml", "upgrade"); !strings.Contains(out, "Version 10.0.1 is installed") {
			t.Fatalf("upgrade through the load balancer:\n%s", out)
		}
		// Checks, reports and repository reads go to the replicas, and the
		// repository reads of one upgrade to both.
		for _, p := range []string{"/api/v1/check", "/api/v1/report", "/repo/"} {
			got := c.nginx.Upstreams(t, mark, p)
			if len(got) == 0 || got[strings.TrimPrefix(c.URLs[writer], "http://")] != 0 {
				t.Fatalf("the device's %s requests through the load balancer went to %v; want replicas only", p, got)
			}
		}
		c.bothReplicas(t, "mxos-updater upgrade", mark, "/repo/")
		if n := c.nginx.Upstreams(t, mark, "/metadata/")[strings.TrimPrefix(c.URLs[writer], "http://")]; n == 0 {
			t.Fatalf("the device fetched no signed channel metadata from the writer: %v", c.nginx.Upstreams(t, mark, "/"))
		}

		// The next release, published to the writer directly, installed
		// through the load balancer.
		c.Ctl(writer, c.Release, "rollout", "complete", "--channel", "testing", "--arch", "x86_64")
		w.Write("rootfs/usr/bin/hola", "#!/bin/sh\necho hola 10.0.2\n")
		c.Ctl(writer, c.Release, "publish", "--channel", "testing", "--version", "10.0.2", "--keys", "keys", "--work", "work", "./rootfs")
		mark = c.nginx.Mark(t)
		if out := w.Run(nil, e2ekit.MxosUpdater(t), "--config", "device/config.yaml", "upgrade"); !strings.Contains(out, "Version 10.0.2 is installed") {
			t.Fatalf("upgrade to 10.0.2 through the load balancer:\n%s", out)
		}
		c.bothReplicas(t, "mxos-updater upgrade to 10.0.2", mark, "/repo/")
	})

	t.Run("registry-conformance", func(t *testing.T) {
		mark := c.nginx.Mark(t)
		e2ekit.RunConformance(t, c.lbHost, c.Release, "OCI_TLS=enabled", "SSL_CERT_FILE="+c.pki.CA)
		got := c.nginx.Upstreams(t, mark, "/v2/")
		if len(got) != 1 || got[strings.TrimPrefix(c.URLs[writer], "http://")] == 0 {
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
