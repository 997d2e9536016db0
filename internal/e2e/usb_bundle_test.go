package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/bundle"
	"github.com/mxos-linux/mxos-update/internal/updater"
)

// A lab updated from a USB stick, as the README tells the technician: the
// real mxosctl writes bundles from the real server; the real
// mxos-updater, on a machine whose server cannot be reached, refuses a
// tampered bundle and an older one and installs the good one (in
// Spanish, as the lab runs); its reports wait on disk and reach the
// server once, at the first check after the network is back.
func TestUSBBundleOffline(t *testing.T) {
	s := newUpdaterSite(t)
	cfg := readString(t, s.config)
	field := func(k string) string {
		m := regexp.MustCompile(`(?m)^` + k + `: (.*)$`).FindStringSubmatch(cfg)
		if m == nil {
			t.Fatalf("device config has no %s", k)
		}
		return m[1]
	}
	server, keys, root := field("server"), field("trusted_keys"), field("trusted_root")
	work := t.TempDir()
	create := func(name string, extra ...string) string {
		t.Helper()
		out := filepath.Join(work, name)
		// As the README says, with the trust roots the machines ship.
		c := exec.Command(mxosctl(), append([]string{"--server", server, "bundle", "create", "--channel", "testing", "--arch", "x86_64", "--out", out}, extra...)...)
		c.Env = append(os.Environ(), "MXOS_TRUSTED_KEYS="+keys, "MXOS_TRUSTED_ROOT="+root, "LANG=C")
		b, err := c.CombinedOutput()
		if err != nil || !strings.Contains(string(b), "written to "+out) {
			t.Fatalf("mxosctl bundle create: %v\n%s", err, b)
		}
		return out
	}
	v1 := s.publish()
	old := create("usb-" + v1)
	v2 := s.publish()
	usb := create("usb-" + v2)
	if m, err := bundle.Open(usb); err != nil || m.Version != v2 || m.Commit != s.commits[v2].String() {
		t.Fatalf("bundle of %s: %+v %v", v2, m, err)
	}

	// The lab has no network: the configured server is a closed port.
	offline := strings.Replace(cfg, "server: "+server, "server: http://127.0.0.1:1", 1)
	writeConfig := func(c string) {
		t.Helper()
		if err := os.WriteFile(s.config, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(offline)
	current := func() string {
		t.Helper()
		out, code := s.runLocale("C", "status", "--json")
		var st updater.Status
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Current == nil {
			t.Fatalf("status: exit %d\n%s", code, out)
		}
		return st.Current.Version
	}
	expect := func(lang string, wantCode int, want string, args ...string) {
		t.Helper()
		out, code := s.runLocale(lang, args...)
		if code != wantCode || !strings.Contains(out, want) {
			t.Fatalf("LANG=%s mxos-updater %s: exit %d (want %d), output lacks %q:\n%s", lang, strings.Join(args, " "), code, wantCode, want, out)
		}
	}

	// A tampered stick: one file of the release changed.
	bad := filepath.Join(work, "usb-tampered")
	copyDir(t, usb, bad)
	var largest string
	var size int64
	filepath.Walk(filepath.Join(bad, "repo", "objects"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(p, ".filez") && fi.Size() > size {
			largest, size = p, fi.Size()
		}
		return nil
	})
	flipByte(t, largest, size/2)
	expect("C", 1, "the stick is damaged or was altered", "upgrade", "--from", bad)
	expect("es_MX.UTF-8", 1, "la memoria USB está dañada o fue alterada", "upgrade", "--from", bad)
	if v := current(); v != "10.0.0" {
		t.Fatalf("after the tampered bundle the machine runs %s", v)
	}

	// A stick for another channel or another architecture.
	writeConfig(strings.Replace(offline, "channel: testing", "channel: stable", 1))
	expect("C", 1, "this bundle is for channel testing on x86_64, but this machine follows stable on x86_64", "upgrade", "--from", usb)
	writeConfig(strings.Replace(offline, "arch: x86_64", "arch: aarch64", 1))
	expect("es_MX.UTF-8", 1, "este paquete es para el canal testing en x86_64, pero este equipo sigue testing en aarch64", "upgrade", "--from", usb)
	writeConfig(offline)

	// The good stick installs, with no network.
	expect("es_MX.UTF-8", 0, "Reinicie el equipo para usarla", "upgrade", "--from", usb)
	if v := current(); v != v2 {
		t.Fatalf("after the bundle the machine runs %s, want %s", v, v2)
	}
	s.checkDevice()
	// The stick from the last visit is older than what now runs.
	expect("C", 1, "this bundle holds version "+v1+", older than the installed "+v2, "upgrade", "--from", old)
	expect("es_MX.UTF-8", 1, "este paquete trae la versión "+v1+", más antigua que la instalada "+v2, "upgrade", "--from", old)

	// The next visit brings only the changes: a delta bundle from v2.
	v3 := s.publish()
	small := create("usb-"+v3+"-from-"+v2, "--from-release", v2)
	expect("C", 1, "this bundle holds only the changes from version "+v1, "upgrade", "--from", create("usb-"+v3+"-from-"+v1, "--from-release", v1))
	expect("C", 0, "Restart the machine to use it", "upgrade", "--from", small)
	if v := current(); v != v3 {
		t.Fatalf("after the delta bundle the machine runs %s, want %s", v, v3)
	}
	s.checkDevice()

	queued := func() int {
		ents, _ := os.ReadDir(filepath.Join(s.root, updater.ReportQueueDir))
		return len(ents)
	}
	if queued() < 3 {
		t.Fatalf("%d reports queued, want at least 3 (download started, finished, deployed)", queued())
	}

	// The network is back, through a proxy that counts reports.
	up, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[int64]int{}
	var events []api.Event
	rp := httputil.NewSingleHostReverseProxy(up)
	px := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/report" {
			b, _ := io.ReadAll(r.Body)
			var rep api.ReportRequest
			json.Unmarshal(b, &rep)
			mu.Lock()
			seen[rep.Seq]++
			events = append(events, rep.Event)
			mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		rp.ServeHTTP(w, r)
	}))
	defer px.Close()
	writeConfig(strings.Replace(cfg, "server: "+server, "server: "+px.URL, 1))
	want := len(seen) + queued()
	expect("C", 77, "No update", "check")
	expect("C", 77, "No update", "check")
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != want || queued() != 0 {
		t.Errorf("after the network came back: %d reports reached the server (%v), want %d; %d still queued", len(seen), events, want, queued())
	}
	for seq, n := range seen {
		if n != 1 {
			t.Errorf("report %d sent %d times", seq, n)
		}
	}
	if !strings.Contains(strings.Join(func() []string {
		var out []string
		for _, e := range events {
			out = append(out, string(e))
		}
		return out
	}(), " "), "download-started download-finished deployed") {
		t.Errorf("reports in the wrong order: %v", events)
	}
}

// A machine whose update server is down decides from the signed channel
// metadata alone, with the server's rule: here the channel's barrier
// (10.0.1, carried in the signed rollout record) comes before the current
// release. The real mxos-updater talks to a proxy whose update API
// fails while the signed files still come (as from a school mirror).
func TestOfflineDecisionBarrier(t *testing.T) {
	s, v1, _ := newBarrierSite(t)
	cfg := readString(t, s.config)
	server := regexp.MustCompile(`(?m)^server: (.*)$`).FindStringSubmatch(cfg)[1]
	up, err := url.Parse(server)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(up)
	px := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	defer px.Close()
	if err := os.WriteFile(s.config, []byte(strings.Replace(cfg, "server: "+server, "server: "+px.URL, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := s.runLocale("C", "check")
	if code != 0 || !strings.Contains(out, "deciding from the signed channel metadata") || !strings.Contains(out, "Update available: version "+v1) {
		t.Fatalf("check without the server: exit %d\n%s", code, out)
	}
	// And installs it, although the branch's head is already 10.0.2: the
	// commit the signed metadata lists is downloaded by its checksum
	// (online: TestBarrierBehindHead).
	out = s.run("upgrade")
	if got := s.checkDevice(); got != v1 {
		t.Fatalf("after the upgrade without the server the device runs %q, want the barrier %s\n%s", got, v1, out)
	}
}
