package updater

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// badMirror is a LAN mirror on 127.0.0.1 listed before the real server:
// it passes requests to the server unless its hook answers them, and
// counts requests by path.
type badMirror struct {
	url  string
	mu   sync.Mutex
	hook func(w http.ResponseWriter, r *http.Request) bool
	hits map[string]int
}

func (e *hostileEnv) addBadMirror() *badMirror {
	e.t.Helper()
	up, _ := url.Parse(e.upstream)
	rp := httputil.NewSingleHostReverseProxy(up)
	m := &badMirror{hits: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.hits[r.URL.Path]++
		h := m.hook
		m.mu.Unlock()
		if h != nil && h(w, r) {
			return
		}
		rp.ServeHTTP(w, r)
	}))
	e.t.Cleanup(srv.Close)
	m.url = srv.URL
	mirrors := []string{srv.URL + "/repo", e.proxy + "/repo"}
	e.agent.Cfg.Mirrors = mirrors
	e.agent.Puller.URLs = mirrors
	return m
}

func (m *badMirror) set(h func(w http.ResponseWriter, r *http.Request) bool) {
	m.mu.Lock()
	m.hook = h
	m.hits = map[string]int{}
	m.mu.Unlock()
}

func (m *badMirror) asked(match func(path string) bool) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p, n := range m.hits {
		if n > 0 && match(p) {
			return true
		}
	}
	return false
}

// TestMirrorFailover: a first mirror that fails in each way of issue 9
// (failure 8) is passed over and the device upgrades from the next one:
// no response headers for /repo/summary, none for an object, a corrupt
// commit object, a stale view (old but unexpired channel metadata and
// summary, frozen before the release) and corrupt channel metadata. Each step is one release, upgraded
// to and booted, on one device.
func TestMirrorFailover(t *testing.T) {
	e := newHostileEnv(t)
	m := e.addBadMirror()
	// Long whole-request limit: only the header timeout moves the pull on.
	e.agent.Puller.Timeout = 10 * time.Minute
	e.agent.Puller.HeaderTimeout = 300 * time.Millisecond
	silent := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Minute): // past the deadline below
		}
	}
	steps := []struct {
		name    string
		version string
		hook    func(frozen map[string][]byte) func(w http.ResponseWriter, r *http.Request) bool
		asked   func(path string) bool
		say     string // what the agent must have said
	}{
		{name: "no headers for the summary", version: "10.0.3",
			hook: func(map[string][]byte) func(w http.ResponseWriter, r *http.Request) bool {
				return func(w http.ResponseWriter, r *http.Request) bool {
					if r.URL.Path != "/repo/summary" {
						return false
					}
					silent(w, r)
					return true
				}
			},
			asked: func(p string) bool { return p == "/repo/summary" }},
		{name: "no headers for objects", version: "10.0.4",
			hook: func(map[string][]byte) func(w http.ResponseWriter, r *http.Request) bool {
				return func(w http.ResponseWriter, r *http.Request) bool {
					if !strings.HasPrefix(r.URL.Path, "/repo/objects/") {
						return false
					}
					silent(w, r)
					return true
				}
			},
			asked: func(p string) bool { return strings.HasPrefix(p, "/repo/objects/") }},
		{name: "corrupt commit object", version: "10.0.5",
			hook: func(map[string][]byte) func(w http.ResponseWriter, r *http.Request) bool {
				return func(w http.ResponseWriter, r *http.Request) bool {
					if !strings.HasSuffix(r.URL.Path, ".commit") {
						return false
					}
					b := e.get(r.URL.Path)
					b[len(b)/2] ^= 0x10
					w.Write(b)
					return true
				}
			},
			asked: func(p string) bool { return strings.HasSuffix(p, ".commit") }},
		{name: "stale metadata and summary", version: "10.0.6",
			hook: func(frozen map[string][]byte) func(w http.ResponseWriter, r *http.Request) bool {
				return func(w http.ResponseWriter, r *http.Request) bool {
					b, ok := frozen[r.URL.Path]
					if ok {
						w.Write(b)
					}
					return ok
				}
			},
			asked: func(p string) bool { return p == "/metadata/timestamp.json" || p == "/repo/summary" },
			say:   "channel metadata of [" + m.url + "/metadata/] is out of date"},
		{name: "corrupt channel metadata", version: "10.0.7",
			hook: func(map[string][]byte) func(w http.ResponseWriter, r *http.Request) bool {
				return func(w http.ResponseWriter, r *http.Request) bool {
					if r.URL.Path != "/metadata/timestamp.json" {
						return false
					}
					b := e.get(r.URL.Path)
					w.Write(b[:len(b)/2])
					return true
				}
			},
			asked: func(p string) bool { return p == "/metadata/timestamp.json" }},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			e.t = t
			// What the mirror had before the release (the stale step
			// serves it).
			frozen := map[string][]byte{}
			for _, p := range []string{"/repo/summary", "/repo/summary.sig", "/metadata/timestamp.json"} {
				frozen[p] = e.get(p)
			}
			e.release(st.version, nil)
			m.set(st.hook(frozen))
			defer m.set(nil)
			ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
			defer cancel()
			changed, err := e.agent.Upgrade(ctx)
			if err != nil || !changed {
				t.Fatalf("upgrade to %s past the bad mirror: changed=%v err=%v", st.version, changed, err)
			}
			if !m.asked(st.asked) {
				t.Fatalf("the bad mirror was never asked (test broken)")
			}
			if !strings.Contains(e.out.String(), st.say) {
				t.Errorf("the agent did not say %q:\n%s", st.say, e.out)
			}
			if err := e.agent.Boot(e.ctx); err != nil {
				t.Fatal(err)
			}
			if s, _ := e.agent.Status(e.ctx); s.Current == nil || s.Current.Version != st.version {
				t.Fatalf("not on %s: %+v", st.version, s)
			}
			e.fsck()
		})
	}
}
