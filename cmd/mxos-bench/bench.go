package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// part is one benchmark: serve, publish, pull or check.
type part struct {
	name  string
	needs []string // peers it runs: "nginx", "ostree"
	run   func(ctx context.Context, b *bench) error
}

var (
	partServe   = part{name: "serve", needs: []string{"nginx"}, run: runServe}
	partPublish = part{name: "publish", needs: []string{"ostree"}, run: runPublish}
	partPull    = part{name: "pull", needs: []string{"nginx", "ostree"}, run: runPull}
	partCheck   = part{name: "check", run: runCheck}
	// partRegistry builds its peer with the go tool on first use.
	partRegistry = part{name: "registry", run: runRegistry}
)

// bench is the state of one run: settings, work directory, children and
// the report being filled.
type bench struct {
	o       options
	stderr  io.Writer
	work    string
	exe     string
	keys    string
	procs   daemons
	report  *Report
	scratch []string          // removed at the end unless --keep
	built   map[string]string // name → binary built by ourBinary
	// published is the commit pull serves; publish leaves its last
	// repository here so pull measures exactly what was published.
	published *publishedRepo
}

// publishedRepo is a data directory holding a published commit.
type publishedRepo struct {
	data   string
	ref    string
	commit string
	desc   string
}

// benchRef is the ref every benchmark publishes on.
const benchRef = "mxos/10/x86_64/testing"

// runBench runs parts in order and prints the report, also the partial
// one when a part fails.
func runBench(cmd *cobra.Command, o options, command string, parts []part) (err error) {
	ctx := cmd.Context()
	b := &bench{o: o, stderr: cmd.ErrOrStderr()}
	if err := b.checkTools(parts); err != nil {
		return err
	}
	if b.exe, err = selfExe(); err != nil {
		return err
	}
	b.report = &Report{Command: command, Settings: settingsLine(cmd), Started: time.Now().UTC(), Machine: b.machine()}
	b.report.writeHeader(cmd.OutOrStdout())

	if err := b.makeWork(); err != nil {
		return err
	}
	defer func() {
		b.procs.stopAll()
		if len(b.report.Rows) > 0 || err == nil {
			err = errors.Join(err, b.report.writeTable(cmd.OutOrStdout()))
			if o.jsonOut != "" {
				err = errors.Join(err, b.report.writeJSON(o.jsonOut))
			}
		}
		err = errors.Join(err, b.cleanup())
	}()

	if b.keys, err = b.makeKeys(); err != nil {
		return err
	}
	for _, p := range parts {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted: %w", err)
		}
		if err := p.run(ctx, b); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return nil
}

// checkTools fails early, with the install command, when a peer is missing.
func (b *bench) checkTools(parts []part) error {
	need := map[string]bool{}
	for _, p := range parts {
		for _, tool := range p.needs {
			switch tool {
			case "nginx":
				need[b.o.nginx] = true
			case "ostree":
				need[b.o.ostree] = true
			}
		}
	}
	var missing []string
	for tool := range need {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("%s not found: install with `apt-get install -y ostree nginx` (or pass --nginx/--ostree)", strings.Join(missing, " and "))
	}
	return nil
}

// machine describes this machine and the peers' versions.
func (b *bench) machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, GoVersion: runtime.Version(),
		CPUModel: cpuModel(), LoadStart: loadAverage()}
	if k, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(k))
	}
	if out, err := exec.Command(b.o.nginx, "-v").CombinedOutput(); err == nil {
		m.Nginx = strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: ")
	}
	if out, err := exec.Command(b.o.ostree, "--version").Output(); err == nil {
		if v := regexp.MustCompile(`Version: '([^']+)'`).FindSubmatch(out); v != nil {
			m.Ostree = string(v[1])
		}
	}
	return m
}

// makeWork creates the work directory. nginx workers may run as another
// user, so it is world-traversable (the trees in it are public data).
func (b *bench) makeWork() error {
	if b.o.work == "" {
		dir, err := os.MkdirTemp("", "mxos-bench-")
		if err != nil {
			return fmt.Errorf("creating work directory: %w", err)
		}
		b.work = dir
		if !b.o.keep {
			b.scratch = append(b.scratch, dir)
		}
	} else {
		dir, err := filepath.Abs(b.o.work)
		if err != nil {
			return fmt.Errorf("work directory: %w", err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating work directory: %w", err)
		}
		b.work = dir
	}
	if err := os.Chmod(b.work, 0o755); err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	logf(b.stderr, "work directory %s", b.work)
	return nil
}

// cleanup removes scratch paths unless --keep.
func (b *bench) cleanup() error {
	if b.o.keep {
		logf(b.stderr, "kept %s", b.work)
		return nil
	}
	var err error
	for i := len(b.scratch) - 1; i >= 0; i-- {
		err = errors.Join(err, removeAll(b.scratch[i], false))
	}
	return err
}

// scratchDir is a fresh directory for one measured run, removed at the end.
func (b *bench) scratchDir(elem ...string) (string, error) {
	p := filepath.Join(append([]string{b.work, "runs"}, elem...)...)
	if err := os.RemoveAll(p); err != nil {
		return "", fmt.Errorf("clearing %s: %w", p, err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", filepath.Dir(p), err)
	}
	b.scratch = append(b.scratch, p)
	return p, nil
}

// makeKeys creates (or reuses) the signing keys in the work directory.
func (b *bench) makeKeys() (string, error) {
	dir := filepath.Join(b.work, "keys")
	if fileExists(filepath.Join(dir, sign.Ed25519SecretFile)) {
		return dir, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("clearing keys: %w", err)
	}
	if err := sign.GenerateKeys(dir, sign.GenerateOptions{Name: "mxos-bench"}); err != nil {
		return "", fmt.Errorf("creating benchmark keys: %w", err)
	}
	return dir, nil
}

// publishInProcess publishes source into data/repo with our library, for
// setting up what is measured elsewhere (not timed).
func (b *bench) publishInProcess(ctx context.Context, data, source string) (string, error) {
	signers, err := sign.LoadSigners(b.keys)
	if err != nil {
		return "", fmt.Errorf("loading benchmark keys: %w", err)
	}
	repo, err := ostree.Create(filepath.Join(data, "repo"))
	if err != nil {
		return "", fmt.Errorf("creating repository: %w", err)
	}
	p := &release.Publisher{Repo: repo, Signers: signers}
	res, err := p.Publish(ctx, release.Request{Ref: benchRef, Version: "1", Source: source})
	if err != nil {
		return "", fmt.Errorf("publishing %s: %w", source, err)
	}
	return res.Commit.String(), nil
}

// freePort finds a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	return port, nil
}

// httpServer is a running HTTP server under test.
type httpServer struct {
	name string // "mxos-server", "nginx"
	base string // http://127.0.0.1:PORT/repo/
	d    *daemon
	// ready is the URL polled until it answers 200 (base+"config" if "").
	ready string
}

// startOurs starts the mxos-server binary (--mxos-server, or built from
// this module) on data, serving data/repo, as a plain repository server:
// it runs in data, so no ./channels or ./keys of the caller's directory
// turn the update API on.
func (b *bench) startOurs(ctx context.Context, data, label string) (*httpServer, error) {
	exe, err := b.ourBinary(ctx, "mxos-server", b.o.mxosServer)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(data, "repo"), 0o755); err != nil {
		return nil, fmt.Errorf("creating repository directory: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	args := []string{"--data", data, "--listen", listen, "--log-level", "warn"}
	if b.o.cpuProfile != "" {
		args = append(args, "--cpuprofile", filepath.Join(b.o.cpuProfile, "server-"+label+".pprof"))
	}
	cmd := exec.Command(exe, args...)
	cmd.Dir = data
	cmd.Env = childEnviron()
	d, err := b.procs.start("mxos-server", cmd)
	if err != nil {
		return nil, err
	}
	s := &httpServer{name: "mxos-server", base: "http://" + listen + "/repo/", d: d}
	if err := waitReady(ctx, s); err != nil {
		return nil, err
	}
	return s, nil
}

// nginxConf is the peer's configuration: a minimal static file server
// tuned the way a CDN-style nginx is: sendfile with tcp_nopush, no access
// log, open_file_cache (descriptors and sizes of hot files kept open, as
// our object cache does; the repository's files are immutable or replaced
// by rename, so a minute of validity is safe for objects). Workers: "auto"
// is one per core, the same cores our server's GOMAXPROCS uses.
// keepalive_requests is raised because nginx otherwise closes each
// connection after 1000 requests, and our server never does.
const nginxConf = "# generated by mxos-bench\n" + nginxMain + `http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    open_file_cache max=20000 inactive=60s;
    open_file_cache_valid 60s;
    open_file_cache_min_uses 1;
    open_file_cache_errors on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    types { }
    default_type application/octet-stream;
` + nginxTemps + `    server {
        listen 127.0.0.1:%[3]d;
        server_name localhost;
        location /repo/ {
            alias %[4]s/;
        }
    }
}
`

// nginxMain is what every generated nginx configuration has outside
// http {}: %[1]s is the user line (or nothing), %[2]s the run directory.
const nginxMain = `daemon off;
master_process on;
worker_processes auto;
%[1]s
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events {
    worker_connections 4096;
}
`

// nginxTemps keeps nginx's temporary files in the run directory (%[2]s).
const nginxTemps = `    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
`

// startNginx starts nginx serving repo at /repo/ with a generated config.
func (b *bench) startNginx(ctx context.Context, repo, label string) (*httpServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := b.scratchDir("nginx-" + label)
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("nginx directory: %w", err)
	}
	user := ""
	if os.Geteuid() == 0 {
		// As root nginx would switch its workers to "nobody"; keep them
		// as the user our server runs as, so both read the same files.
		user = "user root;"
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, user, dir, port, repo), 0o644); err != nil {
		return nil, fmt.Errorf("writing nginx config: %w", err)
	}
	cmd := exec.Command(b.o.nginx, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	cmd.Env = childEnviron()
	d, err := b.procs.start("nginx", cmd)
	if err != nil {
		return nil, err
	}
	s := &httpServer{name: "nginx", base: fmt.Sprintf("http://127.0.0.1:%d/repo/", port), d: d}
	if err := waitReady(ctx, s); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return nil, fmt.Errorf("%w; error.log: %s", err, strings.TrimSpace(string(log)))
	}
	return s, nil
}

// waitReady polls the repository config (or s.ready) until the server
// answers 200.
func waitReady(ctx context.Context, s *httpServer) error {
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 2 * time.Second}
	probe := s.ready
	if probe == "" {
		probe = s.base + "config"
	}
	deadline := time.Now().Add(15 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if err := s.d.exited(); err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, probe, nil)
		if err != nil {
			return fmt.Errorf("probing %s: %w", s.name, err)
		}
		resp, err := c.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", s.name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer on %s within 15s: %v: %s", s.name, s.base, last, s.d.stderr.String())
}

// stopServer stops a server, reporting an unclean exit.
func stopServer(s *httpServer) error {
	sig := syscall.SIGTERM // nginx: fast shutdown; ours: graceful
	if err := s.d.stop(sig, 20*time.Second); err != nil {
		return err
	}
	return nil
}
