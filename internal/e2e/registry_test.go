package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/oci/registry"
	"github.com/mxos-linux/mxos-update/internal/server"
	"github.com/mxos-linux/mxos-update/internal/storage/object"
	"github.com/mxos-linux/mxos-update/internal/storage/s3store"
	"github.com/mxos-linux/mxos-update/internal/storage/storagetest"
	"github.com/mxos-linux/mxos-update/internal/testtool/e2ekit"
)

// registryServer is an in-process mxos-server with the registry on, a
// token database, a release token and a device token.
type registryServer struct {
	host    string // 127.0.0.1:port
	url     string
	release string
	device  string
	data    string // the data directory
	stop    func()
}

// startRegistryServer serves dataDir until stop (or the end of the test).
// Tokens are created once per data directory and kept in tokens.json, so
// a restarted server accepts the same ones.
func startRegistryServer(t *testing.T, dataDir string) *registryServer {
	t.Helper()
	return startRegistryServerWith(t, dataDir, registry.Options{})
}

// startRegistryServerWith is startRegistryServer with registry options
// (an S3 blob store).
func startRegistryServerWith(t *testing.T, dataDir string, opts registry.Options) *registryServer {
	t.Helper()
	ctx := context.Background()
	if err := os.MkdirAll(filepath.Join(dataDir, "repo"), 0o755); err != nil {
		t.Fatal(err)
	}
	store, err := db.Open(ctx, "", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	set, err := channel.LoadDir("../../channels")
	if err != nil {
		t.Fatal(err)
	}
	rs := &registryServer{data: dataDir}
	tokFile := filepath.Join(dataDir, "test-tokens.json")
	if b, err := os.ReadFile(tokFile); err == nil {
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		rs.release, rs.device = m["release"], m["device"]
	} else {
		for _, role := range []auth.Role{auth.RoleRelease, auth.RoleDevice} {
			tc, err := server.CreateToken(ctx, store, "reg-"+string(role), role, "test", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if role == auth.RoleRelease {
				rs.release = tc.Token
			} else {
				rs.device = tc.Token
			}
		}
		b, _ := json.Marshal(map[string]string{"release": rs.release, "device": rs.device})
		if err := os.WriteFile(tokFile, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := server.New(server.Config{DataDir: dataDir, Store: store, Channels: set, Registry: true, RegistryOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	stopped := false
	rs.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		_ = srv.Close()
		store.Close()
	}
	t.Cleanup(rs.stop)
	rs.host = ln.Addr().String()
	rs.url = "http://" + rs.host
	return rs
}

// TestRegistryConformance runs the OCI distribution-spec conformance
// suite, every area on, against the real server with a release token.
func TestRegistryConformance(t *testing.T) {
	runRegistryConformance(t, startRegistryServer(t, t.TempDir()))
}

// TestRegistryConformanceS3 runs the same suite with the registry's blobs
// in a bucket of a real S3 server (versitygw), as mxos-server --storage
// with kind s3 sets it up.
func TestRegistryConformanceS3(t *testing.T) {
	srv := storagetest.StartS3(t)
	st, err := s3store.New(context.Background(), srv.Bucket(t))
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := object.NewBlobs(st, "oci/blobs/")
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	runRegistryConformance(t, startRegistryServerWith(t, data, registry.Options{Blobs: blobs}))
	n := 0
	if err := st.List(context.Background(), "oci/blobs/", func(object.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("the conformance suite's blobs are not in the bucket")
	}
	if _, err := os.Stat(filepath.Join(data, "oci", "blobs")); err == nil {
		t.Fatal("blobs were stored in the data directory too")
	}
	t.Logf("%d blobs in the bucket", n)
}

func runRegistryConformance(t *testing.T, rs *registryServer) {
	t.Helper()
	e2ekit.RunConformance(t, rs.host, rs.release)
}

// cleanEnv is the environment without proxies and without OCI_ settings
// of the caller's shell.
func cleanEnv() []string { return e2ekit.CleanEnv() }

// ociLayout writes a small OCI image layout (one gzip layer, a config,
// an image manifest tagged tag) into dir and returns the manifest digest.
func ociLayout(t *testing.T, dir, tag string) digest.Digest {
	t.Helper()
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	put := func(b []byte) digest.Digest {
		d := digest.FromBytes(b)
		if err := os.WriteFile(filepath.Join(blobs, d.Encoded()), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	// A gzip stream of random bytes stands in for a layer: the registry
	// never looks inside, and random content keeps tests independent.
	layer := make([]byte, 300<<10)
	if _, err := rand.Read(layer); err != nil {
		t.Fatal(err)
	}
	ld := put(layer)
	config := []byte(`{"architecture":"amd64","os":"linux","config":{"Labels":{"containers.bootc":"1"}},"rootfs":{"type":"layers","diff_ids":["` + ld.String() + `"]}}`)
	cd := put(config)
	manifest := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		cd, len(config), ld, len(layer)))
	md := put(manifest)
	index := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`+
		`{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}`,
		md, len(manifest), tag)
	if err := os.WriteFile(filepath.Join(dir, "index.json"), []byte(index), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return md
}

// layoutManifest returns the digest index.json of an OCI layout names.
func layoutManifest(t *testing.T, dir string) digest.Digest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Manifests []struct {
			Digest digest.Digest `json:"digest"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(b, &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("index.json of %s: %v %s", dir, err, b)
	}
	return idx.Manifests[0].Digest
}

// skopeo runs skopeo with a permissive policy and empty registries
// configuration, so nothing from the machine changes what it does.
func skopeo(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	bin := requireTool(t, "skopeo")
	cfg := t.TempDir()
	policy := filepath.Join(cfg, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	regd := filepath.Join(cfg, "registries.d")
	if err := os.Mkdir(regd, 0o755); err != nil {
		t.Fatal(err)
	}
	full := append([]string{"--policy", policy, "--registries.d", regd}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Env = append(cleanEnv(), "HOME="+cfg, "XDG_RUNTIME_DIR="+cfg, "REGISTRY_AUTH_FILE="+filepath.Join(cfg, "auth.json"), "CONTAINERS_REGISTRIES_CONF="+filepath.Join(cfg, "registries.conf"))
	return cmd.CombinedOutput()
}

// manifestDigest asks the registry for the digest of repo:tag.
func manifestDigest(t *testing.T, base, repo, ref string) (digest.Digest, int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodHead, base+"/v2/"+repo+"/manifests/"+ref, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return digest.Digest(resp.Header.Get("Docker-Content-Digest")), resp.StatusCode
}

// TestRegistrySkopeo pushes an OCI layout into our registry with skopeo
// (basic auth with the release token) and pulls it back into another
// layout; the manifest digest is the same at every step.
func TestRegistrySkopeo(t *testing.T) {
	requireTool(t, "skopeo")
	rs := startRegistryServer(t, t.TempDir())
	src := filepath.Join(t.TempDir(), "src")
	want := ociLayout(t, src, "v1")
	dst := "docker://" + rs.host + "/mxos/demo:stable"

	if out, err := skopeo(t, "copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", "mxos:"+rs.release,
		"oci:"+src+":v1", dst); err != nil {
		t.Fatalf("skopeo push: %v\n%s", err, out)
	}
	got, code := manifestDigest(t, rs.url, "mxos/demo", "stable")
	if code != http.StatusOK || got != want {
		t.Fatalf("registry has %s (HTTP %d), pushed %s", got, code, want)
	}

	out := filepath.Join(t.TempDir(), "out")
	if o, err := skopeo(t, "copy", "--preserve-digests", "--src-tls-verify=false", dst, "oci:"+out+":stable"); err != nil {
		t.Fatalf("skopeo pull: %v\n%s", err, o)
	}
	if got := layoutManifest(t, out); got != want {
		t.Fatalf("pulled manifest %s, want %s", got, want)
	}
	o, err := skopeo(t, "inspect", "--tls-verify=false", "--raw", dst)
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, o)
	}
	if digest.FromBytes(o) != want {
		t.Fatalf("skopeo inspect --raw gave a manifest with digest %s, want %s", digest.FromBytes(o), want)
	}
}

// TestRegistryPushNeedsReleaseToken: skopeo cannot push without a token,
// with a wrong one, or with a device token, and nothing is stored.
func TestRegistryPushNeedsReleaseToken(t *testing.T) {
	requireTool(t, "skopeo")
	rs := startRegistryServer(t, t.TempDir())
	src := filepath.Join(t.TempDir(), "src")
	ociLayout(t, src, "v1")
	wrong, _, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		creds []string
		want  string
	}{
		{"no token", nil, "401"},
		{"unknown token", []string{"--dest-creds", "mxos:" + wrong}, "401"},
		{"not a token", []string{"--dest-creds", "mxos:hunter2"}, "401"},
		{"device token", []string{"--dest-creds", "mxos:" + rs.device}, "403"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"copy", "--dest-tls-verify=false"}, tc.creds...)
			args = append(args, "oci:"+src+":v1", "docker://"+rs.host+"/mxos/denied:v1")
			out, err := skopeo(t, args...)
			if err == nil {
				t.Fatalf("push succeeded:\n%s", out)
			}
			if !strings.Contains(string(out), tc.want) && !strings.Contains(strings.ToLower(string(out)), "unauthorized") && !strings.Contains(strings.ToLower(string(out)), "denied") {
				t.Fatalf("push failed without a %s:\n%s", tc.want, out)
			}
			for _, secret := range []string{rs.release, rs.device, wrong} {
				if strings.Contains(string(out), secret) {
					t.Fatal("a token appears in the error output")
				}
			}
		})
	}
	if _, code := manifestDigest(t, rs.url, "mxos/denied", "v1"); code != http.StatusNotFound {
		t.Fatalf("HEAD of the refused image: HTTP %d, want 404", code)
	}
	assertNoRepo(t, rs, "mxos/denied")
}

// assertNoRepo checks that repo has no tags and that nothing reached the
// blob store.
func assertNoRepo(t *testing.T, rs *registryServer, repo string) {
	t.Helper()
	resp, err := http.Get(rs.url + "/v2/" + repo + "/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "NAME_UNKNOWN") {
		t.Fatalf("tags/list of %s: HTTP %d %s, want 404 NAME_UNKNOWN", repo, resp.StatusCode, body)
	}
}

// regReq sends one registry request with an optional bearer or basic
// token and returns the status, headers and body.
func regReq(t *testing.T, method, url, authz string, body []byte, headers ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func basic(tok string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth("mxos", tok)
	return req.Header.Get("Authorization")
}

// TestRegistryAuth checks each write with missing, malformed, unknown and
// device-role credentials: 401 with a Basic challenge or 403 DENIED, the
// spec's error JSON, no token in the answer, and nothing stored. Pulls
// need no token.
func TestRegistryAuth(t *testing.T) {
	rs := startRegistryServer(t, t.TempDir())
	blob := []byte("layer bytes")
	d := digest.FromBytes(blob)
	wrong, _, _ := auth.NewToken()
	post := rs.url + "/v2/mxos/auth/blobs/uploads/?digest=" + d.String()
	cases := []struct {
		name, authz string
		status      int
		code        string
	}{
		{"none", "", 401, "UNAUTHORIZED"},
		{"garbage", "Basic !!!", 401, "UNAUTHORIZED"},
		{"malformed bearer", "Bearer nope", 401, "UNAUTHORIZED"},
		{"unknown basic", basic(wrong), 401, "UNAUTHORIZED"},
		{"unknown bearer", "Bearer " + wrong, 401, "UNAUTHORIZED"},
		{"device basic", basic(rs.device), 403, "DENIED"},
		{"device bearer", "Bearer " + rs.device, 403, "DENIED"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, req := range []struct{ method, url string }{
				{"POST", post},
				{"POST", rs.url + "/v2/mxos/auth/blobs/uploads/"},
				{"PUT", rs.url + "/v2/mxos/auth/manifests/v1"},
				{"DELETE", rs.url + "/v2/mxos/auth/manifests/v1"},
				{"DELETE", rs.url + "/v2/mxos/auth/blobs/" + d.String()},
				{"PATCH", rs.url + "/v2/mxos/auth/blobs/uploads/0123456789abcdef0123456789abcdef"},
			} {
				status, h, body := regReq(t, req.method, req.url, c.authz, blob)
				if status != c.status || !strings.Contains(string(body), `"code":"`+c.code+`"`) {
					t.Fatalf("%s %s: HTTP %d %s, want %d %s", req.method, req.url, status, body, c.status, c.code)
				}
				if c.status == 401 && h.Get("WWW-Authenticate") != `Basic realm="mxos"` {
					t.Fatalf("%s: WWW-Authenticate %q", req.method, h.Get("WWW-Authenticate"))
				}
				for _, secret := range []string{rs.device, wrong} {
					if strings.Contains(string(body), secret) || strings.Contains(fmt.Sprint(h), secret) {
						t.Fatal("a token is echoed in the answer")
					}
				}
			}
		})
	}
	assertNoRepo(t, rs, "mxos/auth")
	if ents, _ := os.ReadDir(filepath.Join(rs.data, "oci", "uploads")); len(ents) != 0 {
		t.Fatalf("upload sessions were created: %v", ents)
	}
	// The release token works as a basic password and as a bearer token.
	for _, a := range []string{basic(rs.release), "Bearer " + rs.release} {
		if status, _, body := regReq(t, "POST", post, a, blob); status != http.StatusCreated {
			t.Fatalf("push with the release token: HTTP %d %s", status, body)
		}
	}
	// Pulling is public.
	if status, _, body := regReq(t, "GET", rs.url+"/v2/mxos/auth/blobs/"+d.String(), "", nil); status != 200 || !bytes.Equal(body, blob) {
		t.Fatalf("public pull: HTTP %d %q", status, body)
	}
	// The base check challenges requests without credentials (clients
	// learn the auth scheme only there) and accepts any valid token.
	if status, h, _ := regReq(t, "GET", rs.url+"/v2/", "", nil); status != 401 || h.Get("WWW-Authenticate") != `Basic realm="mxos"` {
		t.Fatalf("anonymous GET /v2/: HTTP %d, challenge %q", status, h.Get("WWW-Authenticate"))
	}
	for _, a := range []string{basic(rs.device), basic(rs.release), "Bearer " + rs.release} {
		if status, _, body := regReq(t, "GET", rs.url+"/v2/", a, nil); status != 200 {
			t.Fatalf("GET /v2/ with a valid token: HTTP %d %s", status, body)
		}
	}
	if status, _, _ := regReq(t, "GET", rs.url+"/v2/", basic(wrong), nil); status != 401 {
		t.Fatalf("GET /v2/ with an unknown token: HTTP %d", status)
	}
}

// TestRegistryUploadSurvivesRestart starts a chunked upload, stops the
// server, starts a new one on the same data directory and finishes the
// upload there; an unknown session after the restart is refused with
// BLOB_UPLOAD_UNKNOWN.
func TestRegistryUploadSurvivesRestart(t *testing.T) {
	data := t.TempDir()
	rs := startRegistryServer(t, data)
	a := basic(rs.release)
	blob := make([]byte, 64<<10)
	if _, err := rand.Read(blob); err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(blob)
	status, h, body := regReq(t, "POST", rs.url+"/v2/mxos/restart/blobs/uploads/", a, nil)
	if status != http.StatusAccepted {
		t.Fatalf("start: HTTP %d %s", status, body)
	}
	loc := h.Get("Location")
	half := len(blob) / 2
	status, h, body = regReq(t, "PATCH", rs.url+loc, a, blob[:half], fmt.Sprintf("Content-Range: 0-%d", half-1))
	if status != http.StatusAccepted || h.Get("Range") != fmt.Sprintf("0-%d", half-1) {
		t.Fatalf("first chunk: HTTP %d Range %q %s", status, h.Get("Range"), body)
	}
	rs.stop()

	rs = startRegistryServer(t, data)
	if status, h, _ := regReq(t, "GET", rs.url+loc, a, nil); status != http.StatusNoContent || h.Get("Range") != fmt.Sprintf("0-%d", half-1) {
		t.Fatalf("status after restart: HTTP %d Range %q", status, h.Get("Range"))
	}
	status, _, body = regReq(t, "PATCH", rs.url+loc, a, blob[half:], fmt.Sprintf("Content-Range: %d-%d", half, len(blob)-1))
	if status != http.StatusAccepted {
		t.Fatalf("second chunk: HTTP %d %s", status, body)
	}
	status, h, body = regReq(t, "PUT", rs.url+loc+"?digest="+d.String(), a, nil)
	if status != http.StatusCreated || h.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("finish: HTTP %d %s", status, body)
	}
	status, _, got := regReq(t, "GET", rs.url+"/v2/mxos/restart/blobs/"+d.String(), "", nil)
	if status != http.StatusOK || !bytes.Equal(got, blob) {
		t.Fatalf("pull after restart: HTTP %d, %d bytes", status, len(got))
	}
	bogus := strings.Replace(loc, loc[len(loc)-4:], "ffff", 1)
	if status, _, body := regReq(t, "PATCH", rs.url+bogus, a, []byte("x")); status != http.StatusNotFound || !strings.Contains(string(body), "BLOB_UPLOAD_UNKNOWN") {
		t.Fatalf("unknown session: HTTP %d %s", status, body)
	}
}

// cosign runs cosign with a private HOME (no docker config, no TUF cache)
// and the key password in the environment.
func cosign(t *testing.T, dir string, args ...string) ([]byte, error) {
	t.Helper()
	bin := requireTool(t, "cosign")
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "HOME="+dir, "DOCKER_CONFIG="+filepath.Join(dir, "docker"), "COSIGN_PASSWORD=test-password", "COSIGN_EXPERIMENTAL=1",
		"TUF_ROOT="+filepath.Join(dir, "tuf"), "SIGSTORE_NO_CACHE=true")
	cmd.Env = append(cmd.Env, cosignOffline...)
	return cmd.CombinedOutput()
}

// cosignOffline keeps cosign off the network whatever the machine can
// reach: its fetch of the public sigstore TUF root goes to a closed local
// proxy and fails at once (it then goes on with the key it was given),
// while the registry on 127.0.0.1 is never proxied.
var cosignOffline = []string{"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=127.0.0.1,localhost"}

// TestRegistryCosign signs an image in our registry with cosign, both as
// the sha256-<hex>.sig attachment and as an OCI 1.1 referrer, pushed with
// the release token (a device token is DENIED), and verifies both; GC
// keeps the signatures with their image.
func TestRegistryCosign(t *testing.T) {
	requireTool(t, "cosign")
	requireTool(t, "skopeo")
	data := t.TempDir()
	rs := startRegistryServer(t, data)
	src := filepath.Join(t.TempDir(), "src")
	md := ociLayout(t, src, "v1")
	if out, err := skopeo(t, "copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", "mxos:"+rs.release,
		"oci:"+src+":v1", "docker://"+rs.host+"/mxos/signed:v1"); err != nil {
		t.Fatalf("skopeo push: %v\n%s", err, out)
	}
	dir := t.TempDir()
	if out, err := cosign(t, dir, "generate-key-pair"); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	ref := rs.host + "/mxos/signed@" + md.String()
	sig := strings.Replace(md.String(), ":", "-", 1) + ".sig"
	// The release token is needed: a device token cannot sign.
	if out, err := cosign(t, dir, "sign", "--key", "cosign.key", "--tlog-upload=false", "--allow-http-registry", "--yes",
		"--registry-username", "mxos", "--registry-password", rs.device, ref); err == nil || !strings.Contains(string(out), "DENIED") {
		t.Fatalf("cosign sign with a device token: %v\n%s", err, out)
	}
	if _, code := manifestDigest(t, rs.url, "mxos/signed", sig); code != http.StatusNotFound {
		t.Fatalf("a refused signature was stored (HTTP %d)", code)
	}
	out, err := cosign(t, dir, "sign", "--key", "cosign.key", "--tlog-upload=false", "--allow-http-registry", "--yes",
		"--registry-username", "mxos", "--registry-password", rs.release, ref)
	if err != nil {
		t.Fatalf("cosign sign: %v\n%s", err, out)
	}
	if _, code := manifestDigest(t, rs.url, "mxos/signed", sig); code != http.StatusOK {
		t.Fatalf("no %s tag after signing (HTTP %d):\n%s", sig, code, out)
	}
	verify := func() {
		t.Helper()
		if out, err := cosign(t, dir, "verify", "--offline", "--key", "cosign.pub", "--insecure-ignore-tlog=true", "--allow-http-registry", ref); err != nil {
			t.Fatalf("cosign verify: %v\n%s", err, out)
		}
	}
	verify()

	// cosign's OCI 1.1 mode stores the signature as a referrer (a manifest
	// with a subject) and finds it through the referrers API.
	out, err = cosign(t, dir, "sign", "--key", "cosign.key", "--tlog-upload=false", "--allow-http-registry", "--yes",
		"--registry-username", "mxos", "--registry-password", rs.release, "--registry-referrers-mode=oci-1-1", ref)
	if err != nil {
		t.Fatalf("cosign sign (referrers): %v\n%s", err, out)
	}
	status, _, body := regReq(t, "GET", rs.url+"/v2/mxos/signed/referrers/"+md.String(), "", nil)
	if status != http.StatusOK || strings.Count(string(body), `"digest"`) != 1 {
		t.Fatalf("referrers after cosign sign: HTTP %d %s", status, body)
	}
	if out, err := cosign(t, dir, "verify", "--offline", "--key", "cosign.pub", "--insecure-ignore-tlog=true", "--allow-http-registry", "--experimental-oci11", ref); err != nil {
		t.Fatalf("cosign verify (referrers): %v\n%s", err, out)
	}
	// GC with no grace period keeps the tagged image and its signature.
	rs.stop()
	st, err := registry.Open(filepath.Join(data, "oci"), registry.Options{GCGrace: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if _, err := st.GC(context.Background()); err != nil {
		t.Fatal(err)
	}
	rs = startRegistryServer(t, data)
	ref = rs.host + "/mxos/signed@" + md.String()
	verify()
	if out, err := cosign(t, dir, "verify", "--offline", "--key", "cosign.pub", "--insecure-ignore-tlog=true", "--allow-http-registry", "--experimental-oci11", ref); err != nil {
		t.Fatalf("cosign verify (referrers) after GC: %v\n%s", err, out)
	}
}
