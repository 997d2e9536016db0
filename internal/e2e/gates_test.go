package e2e

// Release gates, TLS and the publish policy (issue 9, failures 5, 7 and
// 9), against the real binaries.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/api"
	apiclient "github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/testserver"
	"github.com/mxos-linux/mxos-update/internal/testtool/e2ekit"
)

// testPKI is a CA made for one test and a certificate it signed for
// 127.0.0.1 and localhost, as PEM files.
type testPKI = e2ekit.PKI

func newTestPKI(t testing.TB) testPKI { return e2ekit.NewPKI(t) }

// tlsSite is a real mxos-server over HTTPS with the shipped channels,
// release and online keys, and a release token.
type tlsSite struct {
	pki             testPKI
	url             string // https://127.0.0.1:PORT (no /repo)
	data            string
	release, online *keySet
	token           string
	env             []string // MXOS_TOKEN set
}

func startTLSSite(t *testing.T) *tlsSite { return startSite(t, true) }

// startSite is startTLSSite, or with withTLS false a plain-HTTP server on
// loopback (for a TLS-terminating proxy in front; url is then plain).
func startSite(t *testing.T, withTLS bool) *tlsSite {
	t.Helper()
	s := &tlsSite{pki: newTestPKI(t), data: filepath.Join(t.TempDir(), "data"), release: newKeys(t), online: newKeys(t)}
	out, err := exec.Command(mxosServer(), "token", "create", "--data", s.data, "--role", "release", "--name", "team").Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	s.token = strings.TrimSpace(strings.Split(strings.TrimSpace(string(out)), "\n")[0])
	args := []string{"--channels", testserver.ChannelsDir(), "--release-keys", s.release.dir, "--online-keys", s.online.dir}
	if withTLS {
		args = append(args, "--tls-cert", s.pki.Cert, "--tls-key", s.pki.Key)
	}
	repoURL := startServerBinary(t, s.data, args...)
	if withTLS != strings.HasPrefix(repoURL, "https://") {
		t.Fatalf("the server announces %s, not https", repoURL)
	}
	s.url = strings.TrimSuffix(repoURL, "/repo")
	s.env = toolEnv(t, "MXOS_TOKEN="+s.token)
	return s
}

// ctl runs the mxosctl binary against the site.
func (s *tlsSite) ctl(env []string, args ...string) (string, error) {
	return runCmd(env, mxosctl(), append([]string{"--server", s.url}, args...)...)
}

func (s *tlsSite) refs(t *testing.T) map[string]ostree.Checksum {
	t.Helper()
	r, err := ostree.Open(filepath.Join(s.data, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	refs, err := r.ListRefs()
	if err != nil {
		t.Fatal(err)
	}
	return refs
}

func smallTree(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(filepath.Join(src, "usr/etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for p, body := range map[string]string{"usr/etc/os-release": "NAME=MxOS\n", "usr/etc/shadow": "root:*:19000::::::\n"} {
		if err := os.WriteFile(filepath.Join(src, p), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

// TestTLSServerMxosctlStockPull (failure 7 of issue 9): mxos-server with
// --tls-cert and --tls-key; mxosctl publishes through it with --ca-file
// (or MXOS_CA_FILE) and refuses a server its CA did not sign; stock
// `ostree pull` verifies the server with the remote's tls-ca-path.
func TestTLSServerMxosctlStockPull(t *testing.T) {
	requireOstreeGPG(t)
	s := startTLSSite(t)
	src := smallTree(t)
	work := filepath.Join(t.TempDir(), "work")
	pub := []string{"publish", "-q", "--channel", "testing", "--arch", "x86_64", "--version", "10.0.1", "--keys", s.release.dir, "--work", work, src}

	// Without the CA, the certificate is refused before any token is sent.
	if out, err := s.ctl(s.env, "channels"); err == nil || !strings.Contains(out, "certificate") {
		t.Fatalf("mxosctl channels without --ca-file: %v\n%s", err, out)
	}
	if out, err := s.ctl(s.env, append([]string{"--ca-file", s.pki.CA}, pub...)...); err != nil {
		t.Fatalf("mxosctl publish over TLS: %v\n%s", err, out)
	}
	if out, err := s.ctl(append(s.env, "MXOS_CA_FILE="+s.pki.CA), "channels"); err != nil || !strings.Contains(out, "10.0.1") {
		t.Fatalf("mxosctl channels with MXOS_CA_FILE: %v\n%s", err, out)
	}
	want := s.refs(t)["mxos/10/x86_64/testing"]

	// Stock ostree: the CA through tls-ca-path; without it, no pull.
	env := toolEnv(t)
	c := newClient(t, env, s.url+"/repo", append(gpgRemote(s.release.pgpPub), "--set=tls-ca-path="+s.pki.CA)...)
	c.mustRun("remote", "gpg-import", "--keyring="+s.online.pgpPub, "origin")
	c.mustRun("pull", "origin", "mxos/10/x86_64/testing")
	if got := c.revParse("origin:mxos/10/x86_64/testing"); got != want.String() {
		t.Fatalf("stock pull over https: %s, want %s", got, want)
	}
	c.mustRun("fsck")
	bad := newClient(t, env, s.url+"/repo", gpgRemote(s.release.pgpPub)...)
	if out, err := bad.run("pull", "origin", "mxos/10/x86_64/testing"); err == nil {
		t.Fatalf("stock pull without tls-ca-path succeeded:\n%s", out)
	}
}

// TestPublishToStableRefused (failure 5 of issue 9): stable is reached
// only by promotion. mxosctl refuses before building or uploading; the
// server refuses a hand-made request too; nothing changes on the server;
// the promotion from testing still works.
func TestPublishToStableRefused(t *testing.T) {
	s := startTLSSite(t)
	src := smallTree(t)
	work := filepath.Join(t.TempDir(), "work")
	env := append(s.env, "MXOS_CA_FILE="+s.pki.CA)
	publish := func(ch string) (string, error) {
		return s.ctl(env, "publish", "-q", "--channel", ch, "--arch", "x86_64", "--version", "10.0.1", "--keys", s.release.dir, "--work", work, src)
	}
	if out, err := publish("testing"); err != nil {
		t.Fatalf("publish to testing: %v\n%s", err, out)
	}
	before := s.refs(t)
	out, err := publish("stable")
	if err == nil || !strings.Contains(out, "stable accepts promotions only: releases reach it from testing") {
		t.Fatalf("publish to stable: %v\n%s", err, out)
	}
	// The server's own gate, without mxosctl's check in front: a
	// hand-made release request for stable.
	tlsCfg, err := apiclient.TLSConfig(s.pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	c, err := apiclient.New(s.url, s.token, apiclient.WithTLSConfig(tlsCfg))
	if err != nil {
		t.Fatal(err)
	}
	rels, err := c.Releases(context.Background(), "testing", "x86_64")
	if err != nil || len(rels) != 1 {
		t.Fatalf("releases: %v %v", rels, err)
	}
	_, err = c.PublishRelease(context.Background(), api.ReleaseRequest{Channel: "stable", Arch: "x86_64", Version: "10.0.1",
		Commit: rels[0].Commit, Commitmeta: []byte{0}, Ramp: "none"})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodePromotion || !strings.Contains(ae.Message, "promotions only") {
		t.Fatalf("server accepted or misjudged a publish to stable: %v", err)
	}
	if after := s.refs(t); len(after) != len(before) {
		t.Fatalf("refs changed: %v → %v", before, after)
	}
	if out, err := s.ctl(env, "promote", "--from", "testing", "--to", "stable", "--arch", "x86_64", "--version", "10.0.1",
		"--keys", s.release.dir, "--work", work); err != nil {
		t.Fatalf("promote: %v\n%s", err, out)
	}
	if _, ok := s.refs(t)["mxos/10/x86_64/stable"]; !ok {
		t.Fatal("no stable ref after the promotion")
	}

	// Local publishing with the channel definitions refuses the ref too.
	data := filepath.Join(t.TempDir(), "local")
	out, err = runCmd(toolEnv(t), mxosctl(), "publish", "-q", "--data", data, "--keys", s.release.dir, "--channels", testserver.ChannelsDir(),
		"--ref", "mxos/10/x86_64/stable", "--version", "10.0.1", src)
	if err == nil || !strings.Contains(out, "stable accepts promotions only") {
		t.Fatalf("local publish to the stable ref: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(data, "repo", "refs", "heads", "mxos", "10", "x86_64", "stable")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("local stable ref: %v", err)
	}
}

// TestPlainHTTPRefusedOffLoopback (failure 7): without TLS, mxos-server
// will not listen on a non-loopback address, and says why. Nothing is
// sent anywhere: the refusal comes before the listener.
func TestPlainHTTPRefusedOffLoopback(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:0", "[::]:0", ":0"} {
		data := filepath.Join(t.TempDir(), "data")
		out, err := runCmd(toolEnv(t), mxosServer(), "--data", data, "--listen", listen)
		if err == nil || !strings.Contains(out, "refusing plain HTTP on "+listen) || !strings.Contains(out, "--insecure-http") {
			t.Errorf("--listen %s: %v\n%s", listen, err, out)
		}
		if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("--listen %s: the data directory was created: %v", listen, err)
		}
	}
	out, err := runCmd(toolEnv(t), mxosServer(), "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--tls-cert", "x.pem")
	if err == nil || !strings.Contains(out, "--tls-cert and --tls-key go together") {
		t.Errorf("--tls-cert alone: %v\n%s", err, out)
	}
}

// TestPublishModePolicyBinary (failure 9): mxosctl publish refuses a
// world-readable etc/shadow and a world-writable setuid file, from a
// directory and from a repository stock `ostree commit` wrote, naming
// each; nothing is published; listed exceptions let the tree through.
func TestPublishModePolicyBinary(t *testing.T) {
	requireTool(t, "ostree")
	keys := newKeys(t)
	bad := filepath.Join(t.TempDir(), "bad")
	for p, mode := range map[string]os.FileMode{"etc/shadow": 0o644, "usr/bin/evil": 0o777 | os.ModeSetuid, "etc/hostname": 0o644} {
		f := filepath.Join(bad, p)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(p), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, mode); err != nil {
			t.Fatal(err)
		}
	}
	env := toolEnv(t)
	foreign := filepath.Join(t.TempDir(), "foreign")
	mustRunCmd(t, env, "ostree", "--repo="+foreign, "init", "--mode=archive")
	mustRunCmd(t, env, "ostree", "--repo="+foreign, "commit", "-b", "build", "--tree=dir="+bad)
	allow := filepath.Join(t.TempDir(), "allow")
	if err := os.WriteFile(allow, []byte("# lab image: intended\n/etc/shadow\nusr/bin/evil\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, src := range []string{bad, "ostree:" + foreign + ":build"} {
		data := filepath.Join(t.TempDir(), "data")
		args := []string{"publish", "-q", "--data", data, "--keys", keys.dir, "--ref", "mxos/10/x86_64/testing", "--version", "10.0.1"}
		out, err := runCmd(env, mxosctl(), append(args, src)...)
		if err == nil || !strings.Contains(out, "/etc/shadow is world-readable (mode 0644)") ||
			!strings.Contains(out, "/usr/bin/evil is a world-writable setuid file (mode 4777)") {
			t.Fatalf("source %d: %v\n%s", i, err, out)
		}
		if _, err := os.Stat(filepath.Join(data, "repo", "refs", "heads", "mxos")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("source %d: a ref was written: %v", i, err)
		}
		if out, err := runCmd(env, mxosctl(), append(args, "--allow-mode-exceptions", allow, src)...); err != nil {
			t.Fatalf("source %d with exceptions: %v\n%s", i, err, out)
		}
	}
}

// TestUpdaterOverTLS (failure 7): the mxos-updater binary with ca_file
// upgrades through an HTTPS front (as behind the documented
// TLS-terminating proxy): update API, repository and signed channel
// metadata all over TLS; without ca_file it refuses the certificate.
func TestUpdaterOverTLS(t *testing.T) {
	s := newUpdaterSite(t)
	pki := newTestPKI(t)
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	var plain string
	for _, line := range strings.Split(string(cfg), "\n") {
		if u, ok := strings.CutPrefix(line, "server: "); ok {
			plain = u
		}
	}
	up, err := url.Parse(plain)
	if err != nil || plain == "" {
		t.Fatalf("server in the device config: %q %v", plain, err)
	}
	var requests, plainSeen atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(up)
	front := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if r.TLS == nil {
			plainSeen.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	front.TLS = &tls.Config{Certificates: []tls.Certificate{pki.Pair}}
	front.StartTLS()
	t.Cleanup(front.Close)
	write := func(extra string) {
		t.Helper()
		c := strings.Replace(string(cfg), "server: "+plain, "server: "+front.URL, 1) + extra
		if err := os.WriteFile(s.config, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want := s.publish()
	write("")
	if out, err := s.cmd(nil, "upgrade").CombinedOutput(); err == nil || !strings.Contains(string(out), "certificate") {
		t.Fatalf("upgrade without ca_file: %v\n%s", err, out)
	}
	write("ca_file: " + pki.CA + "\n")
	s.run("upgrade")
	if got := s.checkDevice(); got != want {
		t.Fatalf("after the upgrade over TLS: %s, want %s", got, want)
	}
	if requests.Load() == 0 || plainSeen.Load() != 0 {
		t.Fatalf("%d requests through the TLS front, %d of them plain", requests.Load(), plainSeen.Load())
	}
}

// freePort is a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int { return e2ekit.FreePort(t) }

// TestShippedNginxProxy (failure 7): the documented TLS-terminating proxy,
// deploy/nginx/mxos-update.conf run by the real nginx with only addresses
// and certificate paths changed, in front of mxos-server on loopback:
// mxosctl publishes through it and stock ostree pulls through it.
func TestShippedNginxProxy(t *testing.T) {
	requireTool(t, "nginx")
	requireOstreeGPG(t)
	s := startSite(t, false)
	conf, err := os.ReadFile("../../deploy/nginx/mxos-update.conf")
	if err != nil {
		t.Fatal(err)
	}
	httpsPort, httpPort := freePort(t), freePort(t)
	site := string(conf)
	for old, repl := range map[string]string{
		"listen 80;":      fmt.Sprintf("listen 127.0.0.1:%d;", httpPort),
		"listen 443 ssl;": fmt.Sprintf("listen 127.0.0.1:%d ssl;", httpsPort),
		"/etc/letsencrypt/live/updates.example.mx/fullchain.pem": s.pki.Cert,
		"/etc/letsencrypt/live/updates.example.mx/privkey.pem":   s.pki.Key,
		"http://127.0.0.1:8080":                                  s.url,
	} {
		if !strings.Contains(site, old) {
			t.Fatalf("the shipped nginx config has no %q", old)
		}
		site = strings.ReplaceAll(site, old, repl)
	}
	e2ekit.StartNginx(t, site, httpsPort)
	front := fmt.Sprintf("https://127.0.0.1:%d", httpsPort)

	env := append(s.env, "MXOS_CA_FILE="+s.pki.CA)
	src := smallTree(t)
	if out, err := runCmd(env, mxosctl(), "--server", front, "publish", "-q", "--channel", "testing", "--arch", "x86_64",
		"--version", "10.0.1", "--keys", s.release.dir, "--work", filepath.Join(t.TempDir(), "work"), src); err != nil {
		t.Fatalf("mxosctl publish through nginx: %v\n%s", err, out)
	}
	c := newClient(t, toolEnv(t), front+"/repo", append(gpgRemote(s.release.pgpPub), "--set=tls-ca-path="+s.pki.CA)...)
	c.mustRun("remote", "gpg-import", "--keyring="+s.online.pgpPub, "origin")
	c.mustRun("pull", "origin", "mxos/10/x86_64/testing")
	if got, want := c.revParse("origin:mxos/10/x86_64/testing"), s.refs(t)["mxos/10/x86_64/testing"]; got != want.String() {
		t.Fatalf("stock pull through nginx: %s, want %s", got, want)
	}
	// Plain HTTP on the proxy only redirects.
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).
		Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/channels", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || !strings.HasPrefix(resp.Header.Get("Location"), "https://") {
		t.Fatalf("plain HTTP on the proxy: %s %s", resp.Status, resp.Header.Get("Location"))
	}
}
