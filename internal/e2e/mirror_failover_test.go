package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestUpdaterBinaryMirrorFailover: the real mxos-updater binary, with a
// school's LAN mirror listed before the server as the example config
// does, upgrades past that mirror when it is stale (it still serves the
// summary and channel metadata of before the release: old but unexpired)
// and when it sends no response headers for /repo/summary (the shipped
// 30 s header timeout; the whole-request limit is 10 minutes).
func TestUpdaterBinaryMirrorFailover(t *testing.T) {
	s := newUpdaterSite(t)
	cfg, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	var server string
	for _, line := range strings.Split(string(cfg), "\n") {
		if v, ok := strings.CutPrefix(line, "server: "); ok {
			server = v
		}
	}
	get := func(p string) []byte {
		t.Helper()
		r, err := http.Get(server + p)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, err := io.ReadAll(r.Body)
		if err != nil || r.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", p, r.StatusCode, err)
		}
		return b
	}

	up, _ := url.Parse(server)
	rp := httputil.NewSingleHostReverseProxy(up)
	var mu sync.Mutex
	mode := ""
	frozen := map[string][]byte{}
	hits := map[string]int{}
	heldTooLong := false
	mirror := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.URL.Path]++
		m := mode
		b, isFrozen := frozen[r.URL.Path]
		mu.Unlock()
		switch {
		case m == "stale" && isFrozen:
			w.Write(b)
		case m == "silent" && r.URL.Path == "/repo/summary":
			select {
			case <-r.Context().Done(): // the updater gave up: good
			case <-time.After(3 * time.Minute):
				mu.Lock()
				heldTooLong = true
				mu.Unlock()
			}
		default:
			rp.ServeHTTP(w, r)
		}
	}))
	defer mirror.Close()
	cfg = append(cfg, []byte("mirrors:\n  - "+mirror.URL+"/repo\n  - "+server+"/repo\n")...)
	if err := os.WriteFile(s.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	setMode := func(m string) {
		mu.Lock()
		mode, hits = m, map[string]int{}
		mu.Unlock()
	}
	asked := func(p string) int {
		mu.Lock()
		defer mu.Unlock()
		return hits[p]
	}

	t.Run("stale mirror", func(t *testing.T) {
		s.t = t
		for _, p := range []string{"/repo/summary", "/repo/summary.sig", "/metadata/timestamp.json"} {
			frozen[p] = get(p)
		}
		v := s.publish()
		setMode("stale")
		out := s.run("upgrade")
		if got := s.checkDevice(); got != v {
			t.Fatalf("default is %q after the upgrade, want %q\n%s", got, v, out)
		}
		if asked("/repo/summary") == 0 || asked("/metadata/timestamp.json") == 0 {
			t.Fatalf("the stale mirror was not asked (test broken)")
		}
		if !strings.Contains(out, "is out of date") {
			t.Errorf("the updater did not say the mirror's metadata is out of date:\n%s", out)
		}
		s.run("boot")
	})
	t.Run("no headers for the summary", func(t *testing.T) {
		s.t = t
		v := s.publish()
		setMode("silent")
		start := time.Now()
		out := s.run("upgrade")
		if got := s.checkDevice(); got != v {
			t.Fatalf("default is %q after the upgrade, want %q\n%s", got, v, out)
		}
		mu.Lock()
		held := heldTooLong
		mu.Unlock()
		if asked("/repo/summary") == 0 || held {
			t.Fatalf("silent mirror asked %d times; held past 3 minutes: %v", asked("/repo/summary"), held)
		}
		t.Logf("upgraded past the silent mirror in %s", time.Since(start).Round(time.Second))
		s.run("boot")
	})
}
