package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
)

// chainDevices is how many machines update from the school mirror.
const chainDevices = 20

// gate stands in front of the upstream server. Stopped, it answers 503
// for the repository and the channel metadata (everything a mirror
// copies) and counts those requests; the update API still answers, so
// the server offers its newest release and the machines must judge the
// mirror's copy against it. With down also set, the API answers 503 too:
// the whole upstream is stopped and the machines decide from the signed
// metadata alone (internal/updater, offline.go).
type gate struct {
	srv        *httptest.Server
	stopped    atomic.Bool
	down       atomic.Bool
	refused    atomic.Int64 // repository and metadata requests refused
	apiRefused atomic.Int64 // API requests refused while down
	repo       atomic.Int64 // repository and metadata requests passed on
}

func newGate(t testing.TB, upstream string) *gate {
	g := &gate{}
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/repo/") || strings.HasPrefix(r.URL.Path, "/metadata/") {
			if g.stopped.Load() {
				g.refused.Add(1)
				http.Error(w, "upstream stopped", http.StatusServiceUnavailable)
				return
			}
			g.repo.Add(1)
		} else if g.down.Load() {
			g.apiRefused.Add(1)
			http.Error(w, "upstream stopped", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

// device returns a copy of the site for another machine: its own
// sysroot with release v installed, its own device token, and a config
// listing mirrors in that order (the README's example: the school's
// mirror first, the server's repository after it).
func (s *updaterSite) device(id, server, version string, mirrors ...string) *updaterSite {
	s.t.Helper()
	dev := memTempDir(s.t)
	root := filepath.Join(dev, "sysroot")
	files := map[string]string{
		"token": s.ts.DeviceToken(s.t, id) + "\n",
		"config.yaml": "server: " + server + "\ndevice_id: " + id + "\nchannel: testing\narch: x86_64\n" +
			"token_file: " + filepath.Join(dev, "token") + "\ntrusted_keys: " + s.ts.Release.Dir + "\ntrusted_root: " +
			filepath.Join(s.metaDir, "1.root.json") + "\nsysroot: " + root + "\nhealth_dir: " + filepath.Join(dev, "health") +
			"\nmirrors:\n  - " + strings.Join(mirrors, "\n  - ") + "\n",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dev, n), []byte(c), 0o600); err != nil {
			s.t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dev, "health", "required.d"), 0o755); err != nil {
		s.t.Fatal(err)
	}
	sys, err := sysroot.Open(root)
	if err != nil {
		s.t.Fatal(err)
	}
	local, err := ostree.Create(sys.RepoPath())
	if err != nil {
		s.t.Fatal(err)
	}
	c, err := (&pull.Puller{URLs: []string{s.ts.URL + "/repo"}}).Pull(s.ctx, local, updaterTestRef,
		pull.Options{SummaryKeys: s.ts.Online.Verifiers, CommitKeys: s.verifier, ExpectCommit: s.commits[version].String()})
	if err != nil {
		s.t.Fatal(err)
	}
	d, err := sys.Deploy(s.ctx, local, c, sysroot.Origin{Ref: updaterTestRef, Version: version, Commit: c.String()})
	if err == nil {
		err = sys.Switch(s.ctx, d)
	}
	if err == nil {
		err = sys.MarkGood()
	}
	if err != nil {
		s.t.Fatal(err)
	}
	d2 := *s
	d2.root, d2.config = root, filepath.Join(dev, "config.yaml")
	return &d2
}

// mirrorProc is a running `mxos-server mirror`.
type mirrorProc struct {
	url  string // http://127.0.0.1:port
	logs *lockedBuffer
}

// startMirror runs `mxos-server mirror` serving on a free loopback port
// and returns once it says where.
func startMirror(t testing.TB, args ...string) *mirrorProc {
	t.Helper()
	logs := &lockedBuffer{}
	cmd := exec.Command(mxosServer(), append([]string{"mirror", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Stderr = logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("mxos-server mirror logs:\n%s", logs.String())
		}
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-line:
		// "Mirroring URL; machines list http://HOST:PORT/repo first in mirrors"
		_, rest, ok := strings.Cut(l, "machines list ")
		u, _, ok2 := strings.Cut(rest, "/repo")
		if !ok || !ok2 {
			t.Fatalf("mxos-server mirror said %q\n%s", l, logs.String())
		}
		return &mirrorProc{url: u, logs: logs}
	case <-time.After(time.Minute):
		t.Fatalf("mxos-server mirror did not start\n%s", logs.String())
	}
	return nil
}

// waitSynced waits until the mirror serves the upstream's summary and
// timestamp byte for byte.
func waitSynced(t testing.TB, m *mirrorProc, upstream string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		same := true
		for _, p := range []string{"/repo/summary", "/metadata/timestamp.json"} {
			a, errA := tryGet(m.url + p)
			b, errB := tryGet(upstream + p)
			same = same && errA == nil && errB == nil && string(a) == string(b)
		}
		if same {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the mirror did not sync within 2 minutes\n%s", m.logs.String())
}

// tryGet is an HTTP GET that may fail.
func tryGet(u string) ([]byte, error) {
	r, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer r.Body.Close()
	if r.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, r.Status)
	}
	return io.ReadAll(r.Body)
}

// upgradeAll runs `mxos-updater upgrade` on every device, a few at a
// time, and returns each one's output and error.
func upgradeAll(devs []*updaterSite) ([]string, []error) {
	outs, errs := make([]string, len(devs)), make([]error, len(devs))
	var g errgroup.Group
	g.SetLimit(4)
	for i, d := range devs {
		g.Go(func() error {
			b, err := d.cmd(nil, "upgrade").CombinedOutput()
			outs[i], errs[i] = string(b), err
			return nil
		})
	}
	_ = g.Wait()
	return outs, errs
}

// TestMirrorChain is issue 12's mirror chain with the real binaries:
// upstream → `mxos-server mirror` → 20 `mxos-updater` machines.
//
//  1. The mirror syncs a release (and its static delta), then the
//     upstream stops (API included): all 20 machines decide from the
//     mirror's signed metadata and update from the mirror. Stock
//     `ostree pull` with GPG verification of the summary and the commit
//     pulls from the mirror too, and `ostree fsck` is clean.
//
// In steps 2 to 4 "stopped" leaves the upstream's API answering, so it
// offers its newest release and the machines must judge the mirror's
// copy against that offer.
//
//  2. The mirror serves tampered objects and delta parts of the next
//     release: with the upstream stopped the machines refuse and keep
//     their version (they wait); with the upstream back they take the bad
//     objects from it and update.
//  3. The mirror is stale (not synced since the release): with the
//     upstream stopped the machines refuse (they wait); back, they update
//     past the mirror. Then the mirror's metadata is older than what they
//     have seen (a rollback) for the next release: refused again until
//     the mirror syncs, after which they update from the mirror alone.
//  4. The mirror's metadata has expired (it stopped syncing): the
//     machines wait with the upstream stopped, update with it back.
func TestMirrorChain(t *testing.T) {
	s := newUpdaterSite(t)
	v0 := "10.0.0"
	g := newGate(t, s.ts.URL)

	// The mirror: the release keys and root.json the machines ship.
	mdata := filepath.Join(t.TempDir(), "mirror")
	mirrorArgs := []string{"--data", mdata, "--upstream", g.srv.URL, "--trusted-root", filepath.Join(s.metaDir, "1.root.json"),
		"--trusted-keys", s.ts.Release.Dir}
	// Serving, it syncs at start (v0), then every hour; syncOnce is the
	// same sync run from a script while it serves.
	m := startMirror(t, append(mirrorArgs, "--interval", "1h")...)
	waitSynced(t, m, s.ts.URL)
	syncOnce := func() {
		t.Helper()
		out, err := runCmd(os.Environ(), mxosServer(), append([]string{"mirror", "--once"}, mirrorArgs...)...)
		if err != nil || !strings.Contains(out, "Synced: "+updaterTestRef) {
			t.Fatalf("mxos-server mirror --once: %v\n%s", err, out)
		}
		t.Logf("%s", strings.TrimSpace(out))
	}

	// The school's network: counts what the machines get from the mirror.
	mu, err := url.Parse(m.url)
	if err != nil {
		t.Fatal(err)
	}
	lanCount := &reqCounter{}
	lan := httptest.NewServer(lanCount.wrap(httputil.NewSingleHostReverseProxy(mu)))
	t.Cleanup(lan.Close)

	devs := make([]*updaterSite, chainDevices)
	for i := range devs {
		devs[i] = s.device(fmt.Sprintf("lab1-pc%02d", i+1), g.srv.URL, v0, lan.URL+"/repo", g.srv.URL+"/repo")
	}
	few := devs[:4]
	v1 := s.publish()
	syncOnce()
	version := func(d *updaterSite) string {
		d.t = t
		return d.checkDevice()
	}
	expectAll := func(devs []*updaterSite, want string) {
		t.Helper()
		outs, errs := upgradeAll(devs)
		for i, d := range devs {
			if errs[i] != nil || version(d) != want {
				t.Fatalf("device %d: %v, version %q, want %s\n%s", i+1, errs[i], version(d), want, outs[i])
			}
			if out, err := d.cmd(nil, "boot").CombinedOutput(); err != nil {
				t.Fatalf("device %d boot: %v\n%s", i+1, err, out)
			}
		}
	}
	expectWait := func(devs []*updaterSite, was, say string) {
		t.Helper()
		outs, errs := upgradeAll(devs)
		for i, d := range devs {
			if errs[i] == nil || version(d) != was {
				t.Fatalf("device %d: upgraded (%v) to %q, want a refusal and still %s\n%s", i+1, errs[i], version(d), was, outs[i])
			}
			if !strings.Contains(outs[i], say) {
				t.Errorf("device %d did not say %q:\n%s", i+1, say, outs[i])
			}
		}
		t.Logf("device 1 waits:\n%s", outs[0])
	}

	t.Run("upstream stopped after the sync", func(t *testing.T) {
		g.stopped.Store(true)
		g.down.Store(true)
		defer g.stopped.Store(false)
		defer g.down.Store(false)
		lanCount.reset()
		expectAll(devs, v1)
		if n := g.refused.Load(); n != 0 {
			t.Errorf("the machines asked the stopped upstream %d times: the mirror did not serve everything", n)
		}
		if n := g.apiRefused.Load(); n < chainDevices {
			t.Errorf("the stopped upstream's API was asked %d times, want at least one per machine (test broken)", n)
		}
		// Each machine took the static delta from v0 (superblock and
		// part) from the mirror.
		if n := lanCount.fromDeltas.Load(); n < 2*chainDevices {
			t.Errorf("the machines fetched %d delta files from the mirror, want at least %d", n, 2*chainDevices)
		}
		t.Logf("from the mirror: %d requests, %d delta files, %d loose objects",
			lanCount.total.Load(), lanCount.fromDeltas.Load(), lanCount.objects.Load())
		// Stock ostree, verifying the summary (online key) and the
		// commit (release key) with GPG, from the mirror alone.
		requireOstreeGPG(t)
		env := toolEnv(t)
		var pubs []byte
		for _, dir := range []string{s.ts.Release.Dir, s.online} {
			b, err := os.ReadFile(filepath.Join(dir, sign.OpenPGPPublicFile))
			if err != nil {
				t.Fatal(err)
			}
			pubs = append(pubs, b...)
		}
		keyring := filepath.Join(t.TempDir(), "keys.asc")
		if err := os.WriteFile(keyring, pubs, 0o644); err != nil {
			t.Fatal(err)
		}
		c := newClient(t, env, lan.URL+"/repo", gpgRemote(keyring)...)
		c.mustRun("pull", "origin", updaterTestRef)
		if got := c.revParse("origin:" + updaterTestRef); got != s.commits[v1].String() {
			t.Fatalf("stock pull from the mirror: %s, want %s", got, s.commits[v1])
		}
		c.mustRun("fsck")
	})

	t.Run("tampered objects", func(t *testing.T) {
		v2 := s.publish()
		syncOnce()
		repo, err := ostree.Open(filepath.Join(mdata, "repo"))
		if err != nil {
			t.Fatal(err)
		}
		// What the machines have (the mirror pruned v1).
		devRepo, err := ostree.Open(filepath.Join(few[0].root, "repo"))
		if err != nil {
			t.Fatal(err)
		}
		old, err := devRepo.Reachable(s.commits[v1])
		if err != nil {
			t.Fatal(err)
		}
		had := map[ostree.ObjectRef]bool{}
		for _, o := range old {
			had[o] = true
		}
		objs, err := repo.Reachable(s.commits[v2])
		if err != nil {
			t.Fatal(err)
		}
		flipped := 0
		for _, o := range objs {
			if o.Type == ostree.ObjFile && !had[o] {
				flipByte(t, repo.ObjectFile(o.Checksum, o.Type), -2)
				flipped++
			}
		}
		deltas, err := repo.ListDeltas()
		if err != nil {
			t.Fatal(err)
		}
		for id := range deltas {
			for i := 0; ; i++ {
				p := filepath.Join(mdata, "repo", filepath.FromSlash(id.PartPath(i)))
				if _, err := os.Stat(p); err != nil {
					break
				}
				flipByte(t, p, -2)
				flipped++
			}
		}
		if flipped < 2 {
			t.Fatalf("tampered with %d files (test broken)", flipped)
		}
		g.stopped.Store(true)
		expectWait(few, v1, "Update to "+v2+" failed")
		g.stopped.Store(false)
		before := g.repo.Load()
		expectAll(few, v2)
		if g.repo.Load() == before {
			t.Errorf("the machines did not fall back to the upstream for the tampered objects")
		}
	})

	t.Run("stale mirror", func(t *testing.T) {
		was := version(few[0])
		v3 := s.publish() // the mirror does not sync it
		g.stopped.Store(true)
		expectWait(few, was, "Update to "+v3+" refused")
		g.stopped.Store(false)
		expectAll(few, v3)

		// The machines have now seen newer metadata than the mirror's:
		// its copy is a rollback to them.
		v4 := s.publish()
		g.stopped.Store(true)
		expectWait(few, v3, "rollback")
		// Once the mirror syncs, they update from it alone.
		g.stopped.Store(false)
		syncOnce()
		g.stopped.Store(true)
		g.refused.Store(0)
		expectAll(few, v4)
		if n := g.refused.Load(); n != 0 {
			t.Errorf("the machines asked the stopped upstream %d times", n)
		}
		g.stopped.Store(false)
	})

	t.Run("expired mirror metadata", func(t *testing.T) {
		v5 := s.publish()
		syncOnce()
		// The copy of a mirror that stopped syncing, past its expiry: the
		// upstream's online key signed it, but its time has passed.
		expireMetadata(t, s, filepath.Join(mdata, "metadata"))
		g.stopped.Store(true)
		expectWait(few, "10.0.4", "expired")
		g.stopped.Store(false)
		expectAll(few, v5)
	})
}

// expireMetadata replaces the channel metadata in dir with a newer,
// correctly signed copy whose timestamp expired an hour ago: the
// upstream's metadata re-signed by its online key with a clock two hours
// back and a one-hour timestamp lifetime.
func expireMetadata(t testing.TB, s *updaterSite, dir string) {
	t.Helper()
	scratch := filepath.Join(t.TempDir(), "metadata")
	copyDir(t, s.metaDir, scratch)
	online, err := publish.LoadEd25519Signers(s.online)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := publish.Open(scratch, online, publish.Options{RolloutsExpiry: 10 * 365 * 24 * time.Hour, TimestampExpiry: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	res, err := repo.Refresh(time.Now().Add(-2 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !res.TimestampExpires.Before(time.Now()) {
		t.Fatalf("the re-signed timestamp expires at %s (test broken)", res.TimestampExpires)
	}
	ents, err := os.ReadDir(scratch)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(scratch, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
