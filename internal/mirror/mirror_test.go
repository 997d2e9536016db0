package mirror_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/mirror"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/server"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/testserver"
)

const testRef = "mxos/10/x86_64/testing"

// upstream is a server set up as the README says (signed channel
// metadata, the online key signs the summary), publishing releases of
// testing with the release key.
type upstream struct {
	t    testing.TB
	ts   *testserver.Server
	rem  *release.Remote
	src  string
	next int
	root []byte // 1.root.json, what machines ship
}

func newUpstream(t testing.TB) *upstream {
	t.Helper()
	ts := testserver.Start(t, testserver.Options{Metadata: true, OnlineSummaryKey: true, Roles: []auth.Role{auth.RoleRelease}})
	work, err := ostree.Create(filepath.Join(t.TempDir(), "work"))
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.ReadFile(filepath.Join(ts.MetaDir, "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{t: t, ts: ts, src: filepath.Join(t.TempDir(), "src"), root: root,
		rem: &release.Remote{Server: ts.Client(t, auth.RoleRelease), Work: work, Signers: ts.Release.Signers, MetaSigners: ts.MetaSigners}}
	for i := range 40 {
		p := filepath.Join(u.src, fmt.Sprintf("usr/share/pkg%d/file%02d", i%4, i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, bytes.Repeat([]byte(fmt.Sprintf("archivo %d\n", i)), 30+i), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// publish makes the next version, changing a few files.
func (u *upstream) publish() (string, ostree.Checksum) {
	u.t.Helper()
	v := fmt.Sprintf("10.0.%d", u.next)
	for i := u.next % 5; i < 40; i += 5 {
		p := filepath.Join(u.src, fmt.Sprintf("usr/share/pkg%d/file%02d", i%4, i))
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			u.t.Fatal(err)
		}
		fmt.Fprintf(f, "versión %s\n", v)
		f.Close()
	}
	u.next++
	zero := uint32(0)
	_, c, err := u.rem.Publish(context.Background(), release.RemoteRequest{Channel: "testing", Arch: "x86_64", Ref: testRef,
		Version: v, Source: u.src, Ramp: "none", Options: ostree.CommitOptions{OwnerUID: &zero, OwnerGID: &zero, NoXattrs: true}})
	if err != nil {
		u.t.Fatalf("publish %s: %v", v, err)
	}
	return v, c
}

// get fetches a file of the upstream (or any base URL).
func get(t testing.TB, base, p string) []byte {
	t.Helper()
	r, err := http.Get(base + p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("GET %s%s: %d %v", base, p, r.StatusCode, err)
	}
	return b
}

// site is a mirror data directory with its config, served by the real
// server handler as `mxos-server mirror` serves it.
type site struct {
	cfg mirror.Config
	url string
}

func newSite(t testing.TB, upstreamURL string, u *upstream) *site {
	t.Helper()
	dir := t.TempDir()
	if _, err := mirror.Prepare(dir); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{DataDir: dir, MetadataDir: filepath.Join(dir, mirror.MetadataDir)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); srv.Close() })
	return &site{url: hs.URL, cfg: mirror.Config{Upstream: upstreamURL, Dir: dir, TrustedRoot: u.root, ReleaseKeys: u.ts.Release.Verifiers}}
}

func (s *site) sync(t testing.TB) *mirror.Result {
	t.Helper()
	res, err := mirror.Sync(context.Background(), s.cfg)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return res
}

// served is what a device reads first from the mirror.
func (s *site) served(t testing.TB) string {
	t.Helper()
	return string(get(t, s.url, "/repo/summary")) + string(get(t, s.url, "/repo/summary.sig")) + string(get(t, s.url, "/metadata/timestamp.json"))
}

// deviceLoad is a device loading the mirror's metadata and pulling ref
// from it alone, as the agent does, with its own fresh state.
func deviceLoad(t testing.TB, u *upstream, base string, want ostree.Checksum) (*channelmeta.State, ostree.Checksum, error) {
	t.Helper()
	c, err := channelmeta.NewClient(channelmeta.ClientConfig{TrustedRoot: u.root, CacheDir: t.TempDir(), URL: base + "/metadata/"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Load(context.Background())
	if err != nil {
		return nil, ostree.Checksum{}, err
	}
	dst, err := ostree.Create(filepath.Join(t.TempDir(), "device"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := (&pull.Puller{URLs: []string{base + "/repo"}}).Pull(context.Background(), dst, testRef, pull.Options{
		SummaryKeys: []sign.Verifier{sign.NewEd25519Verifier(st.OnlineKeys)}, CommitKeys: u.ts.Release.Verifiers, ExpectCommit: want.String()})
	return st, got, err
}

// TestSyncServesWhatDevicesRead: after a sync the mirror serves the
// upstream's exact summary, summary.sig and metadata, the commit and its
// static delta, and a device with only the shipped root and release keys
// loads the metadata and pulls the release from the mirror alone (the
// upstream stopped). A second sync after a new release moves everything
// forward and removes the superseded release's deltas at once and its
// objects one sync later.
func TestSyncServesWhatDevicesRead(t *testing.T) {
	u := newUpstream(t)
	u.publish()
	v1, c1 := u.publish()
	s := newSite(t, u.ts.URL, u)
	res := s.sync(t)
	if res.Refs[testRef] != c1 || res.Deltas == 0 || !res.Expires.After(time.Now()) {
		t.Fatalf("sync result %+v, want %s at %s with a delta, expiring later", res, testRef, c1)
	}
	for _, p := range []string{"/repo/summary", "/repo/summary.sig", "/metadata/timestamp.json", "/metadata/1.root.json"} {
		if !bytes.Equal(get(t, s.url, p), get(t, u.ts.URL, p)) {
			t.Errorf("%s differs from the upstream's", p)
		}
	}
	sum, err := ostree.ParseSummary(get(t, s.url, "/repo/summary"))
	if err != nil {
		t.Fatal(err)
	}
	deltas, err := ostree.ParseDeltaIndex(sum.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	for id := range deltas {
		get(t, s.url, "/repo/"+id.SuperblockPath())
		get(t, s.url, "/repo/"+ostree.IndexPath(id.To))
	}

	// The device asks the mirror only (the upstream could be stopped).
	st, got, err := deviceLoad(t, u, s.url, c1)
	if err != nil || got != c1 {
		t.Fatalf("device pull from the mirror: %s, %v", got, err)
	}
	if _, ok := st.Lookup("testing", "x86_64", v1); !ok {
		t.Fatalf("the mirror's metadata does not list %s", v1)
	}

	// The next release: everything moves, the old release goes.
	_, c2 := u.publish()
	res = s.sync(t)
	if res.Refs[testRef] != c2 {
		t.Fatalf("second sync: %+v", res)
	}
	repo, err := ostree.Open(filepath.Join(s.cfg.Dir, mirror.RepoDir))
	if err != nil {
		t.Fatal(err)
	}
	if !repo.HasObject(c1, ostree.ObjCommit) || repo.CheckComplete(c1) != nil {
		t.Errorf("the commit the previous summary named, %s, was pruned at once", c1)
	}
	have, err := repo.ListDeltas()
	if err != nil {
		t.Fatal(err)
	}
	for id := range have {
		if id.To != c2 {
			t.Errorf("delta %s of a superseded release kept", id.Name())
		}
	}
	if len(have) == 0 {
		t.Errorf("no delta to %s", c2)
	}
	if _, got, err := deviceLoad(t, u, s.url, c2); err != nil || got != c2 {
		t.Fatalf("device pull of the second release: %s, %v", got, err)
	}
	s.sync(t)
	if repo.HasObject(c1, ostree.ObjCommit) {
		t.Errorf("the superseded commit %s was not pruned by the next sync", c1)
	}
	if !repo.HasObject(c2, ostree.ObjCommit) || repo.CheckComplete(c2) != nil {
		t.Errorf("the current commit %s is not complete", c2)
	}
}

// hostile is a proxy in front of the upstream that can change answers.
type hostile struct {
	mu     sync.Mutex
	change func(path string, body []byte) []byte // nil: pass through
	srv    *httptest.Server
}

func newHostile(t testing.TB, target string) *hostile {
	h := &hostile{}
	up, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(up)
	rp.ModifyResponse = func(r *http.Response) error {
		h.mu.Lock()
		change := h.change
		h.mu.Unlock()
		if change == nil || r.StatusCode != http.StatusOK {
			return nil
		}
		b, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return err
		}
		b = change(r.Request.URL.Path, b)
		r.Body = io.NopCloser(bytes.NewReader(b))
		r.ContentLength = int64(len(b))
		r.Header.Del("Content-Length")
		r.Header.Del("ETag")
		return nil
	}
	h.srv = httptest.NewServer(rp)
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hostile) set(f func(path string, body []byte) []byte) {
	h.mu.Lock()
	h.change = f
	h.mu.Unlock()
}

// flip changes one byte of the body of paths matching match.
func flip(match func(string) bool) func(string, []byte) []byte {
	return func(p string, b []byte) []byte {
		if !match(p) || len(b) == 0 {
			return b
		}
		b = bytes.Clone(b)
		b[len(b)/2] ^= 0x20
		return b
	}
}

// TestSyncRefusesBadUpstream: an upstream (or a path to it) serving
// something that does not verify makes the sync fail with a clear error,
// and what the mirror serves stays exactly as it was; a good upstream
// afterwards syncs again.
func TestSyncRefusesBadUpstream(t *testing.T) {
	u := newUpstream(t)
	u.publish()
	h := newHostile(t, u.ts.URL)
	s := newSite(t, h.srv.URL, u)
	s.sync(t)
	oldTimestamp := get(t, u.ts.URL, "/metadata/timestamp.json")
	oldSig := get(t, u.ts.URL, "/repo/summary.sig")
	_, c1 := u.publish() // the release every case below tries to bring
	before := s.served(t)
	commitPath := "/repo/" + ostree.ObjectPath(c1, ostree.ObjCommit)
	commitMetaPath := "/repo/" + ostree.ObjectPath(c1, ostree.ObjCommitMeta)

	cases := []struct {
		name   string
		change func(string, []byte) []byte
		want   error
	}{
		{"summary signature (of the previous summary)", func(p string, b []byte) []byte {
			if p == "/repo/summary.sig" {
				return oldSig
			}
			return b
		}, mirror.ErrSummary},
		{"summary", flip(func(p string) bool { return p == "/repo/summary" }), mirror.ErrSummary},
		{"timestamp", flip(func(p string) bool { return p == "/metadata/timestamp.json" }), mirror.ErrMetadata},
		{"targets", flip(func(p string) bool { return strings.HasSuffix(p, ".targets.json") }), mirror.ErrMetadata},
		{"commit object", flip(func(p string) bool { return p == commitPath }), nil},
		{"commit signature", flip(func(p string) bool { return p == commitMetaPath }), pull.ErrBadSignature},
		// With the delta's parts too, or the pull would take the delta.
		{"content object", flip(func(p string) bool {
			return strings.HasSuffix(p, ".filez") || strings.HasPrefix(p, "/repo/deltas/") && !strings.HasSuffix(p, "superblock")
		}), nil},
		{"older timestamp (replayed)", func(p string, b []byte) []byte {
			if p == "/metadata/timestamp.json" {
				return oldTimestamp
			}
			return b
		}, mirror.ErrMetadata},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h.set(tc.change)
			defer h.set(nil)
			if tc.name == "older timestamp (replayed)" {
				// The mirror must first have seen the newer one.
				h.set(nil)
				s.sync(t)
				before = s.served(t)
				h.set(tc.change)
			}
			_, err := mirror.Sync(context.Background(), s.cfg)
			if err == nil {
				t.Fatal("sync accepted a tampered upstream")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			if got := s.served(t); got != before {
				t.Errorf("what the mirror serves changed after a refused sync")
			}
			t.Logf("refused: %v", err)
		})
	}
	h.set(nil)
	if res := s.sync(t); res.Refs[testRef] != c1 {
		t.Fatalf("sync after the upstream recovered: %+v", res)
	}
}

// TestSyncLeavesOutBadDeltas: a delta whose part or superblock does not
// match what the signed summary and the superblock say is left out (as a
// device leaves it out), the rest of the sync goes on, and a device
// pulls the release from the mirror alone, as loose objects.
func TestSyncLeavesOutBadDeltas(t *testing.T) {
	for _, tc := range []struct {
		name  string
		match func(string) bool
	}{
		{"part", func(p string) bool {
			return strings.HasPrefix(p, "/repo/deltas/") && !strings.HasSuffix(p, "superblock")
		}},
		{"superblock", func(p string) bool { return strings.HasSuffix(p, "/superblock") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newUpstream(t)
			u.publish()
			h := newHostile(t, u.ts.URL)
			s := newSite(t, h.srv.URL, u)
			s.sync(t)
			_, c1 := u.publish()
			// The mirror's own pull checks the delta as a device does and
			// falls back to loose objects too.
			h.set(flip(tc.match))
			res := s.sync(t)
			if res.Refs[testRef] != c1 || res.Deltas != 0 || len(res.DeltaErrors) != 1 || !errors.Is(res.DeltaErrors[0], mirror.ErrDelta) {
				t.Fatalf("sync: %+v, want %s with the delta left out for ErrDelta", res, c1)
			}
			repo, err := ostree.Open(filepath.Join(s.cfg.Dir, mirror.RepoDir))
			if err != nil {
				t.Fatal(err)
			}
			if have, err := repo.ListDeltas(); err != nil || len(have) != 0 {
				t.Fatalf("deltas stored: %v %v", have, err)
			}
			h.set(nil)
			if _, got, err := deviceLoad(t, u, s.url, c1); err != nil || got != c1 {
				t.Fatalf("device pull from the mirror without the delta: %s, %v", got, err)
			}
		})
	}
}

// TestSyncRefusesExpiredAndOlder: metadata that expired (the mirror's
// clock past the timestamp's expiry) and an upstream whose summary goes
// back to an older commit of a ref are refused; nothing served moves.
func TestSyncRefusesExpiredAndOlder(t *testing.T) {
	u := newUpstream(t)
	u.publish()
	s := newSite(t, u.ts.URL, u)
	s.sync(t)
	before := s.served(t)

	late := s.cfg
	late.Now = func() time.Time { return time.Now().Add(30 * 24 * time.Hour) }
	if _, err := mirror.Sync(context.Background(), late); !errors.Is(err, mirror.ErrMetadata) || !errors.Is(err, channelmeta.ErrExpired) {
		t.Errorf("expired metadata: %v, want ErrMetadata and channelmeta.ErrExpired", err)
	}
	if s.served(t) != before {
		t.Error("served files changed")
	}

	// The mirror already serves a newer commit than the upstream names:
	// move the mirror's ref forward by syncing a newer release, then show
	// it the older summary again through a proxy replaying it.
	oldSum, oldSig := get(t, u.ts.URL, "/repo/summary"), get(t, u.ts.URL, "/repo/summary.sig")
	h := newHostile(t, u.ts.URL)
	s.cfg.Upstream = h.srv.URL
	u.publish()
	s.sync(t)
	before = s.served(t)
	h.set(func(p string, b []byte) []byte {
		switch p {
		case "/repo/summary":
			return oldSum
		case "/repo/summary.sig":
			return oldSig
		}
		return b
	})
	if _, err := mirror.Sync(context.Background(), s.cfg); !errors.Is(err, mirror.ErrOlder) {
		t.Errorf("older summary: %v, want ErrOlder", err)
	}
	if s.served(t) != before {
		t.Error("served files changed")
	}
}

// TestSyncChannels: --channel keeps only the named channels' refs; a
// channel the upstream does not have is an error naming it.
func TestSyncChannels(t *testing.T) {
	u := newUpstream(t)
	u.publish()
	s := newSite(t, u.ts.URL, u)
	s.cfg.Channels = []string{"testing"}
	if res := s.sync(t); len(res.Refs) != 1 {
		t.Fatalf("refs %v", res.Refs)
	}
	s.cfg.Channels = []string{"testing", "edu"}
	_, err := mirror.Sync(context.Background(), s.cfg)
	if !errors.Is(err, mirror.ErrNoChannel) || !strings.Contains(err.Error(), "edu") {
		t.Fatalf("unknown channel: %v", err)
	}
}

func TestBaseURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://updates.example.mx", "https://updates.example.mx"},
		{"https://updates.example.mx/", "https://updates.example.mx"},
		{"https://updates.example.mx/repo", "https://updates.example.mx"},
		{"http://127.0.0.1:8080/mxos/repo/", "http://127.0.0.1:8080/mxos"},
		{"ftp://x", ""},
		{"updates.example.mx", ""},
		{"https://x/?a=b", ""},
		{"https://x/?", ""},
		{"https://user:secret@x/", ""},
	} {
		got, err := mirror.BaseURL(tc.in)
		if (err != nil) != (tc.want == "") || got != tc.want {
			t.Errorf("BaseURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestSyncInterrupted: a sync cut off while it fetches a static delta
// (the mirror stopped, the link dropped) leaves what the mirror serves as
// it was and no staged files; the next sync resumes and completes.
func TestSyncInterrupted(t *testing.T) {
	u := newUpstream(t)
	u.publish()
	h := newHostile(t, u.ts.URL)
	s := newSite(t, h.srv.URL, u)
	s.sync(t)
	before := s.served(t)
	_, c1 := u.publish()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.set(func(p string, b []byte) []byte {
		if strings.HasPrefix(p, "/repo/deltas/") && !strings.HasSuffix(p, "superblock") {
			cancel()
		}
		return b
	})
	if _, err := mirror.Sync(ctx, s.cfg); err == nil {
		t.Fatal("an interrupted sync succeeded")
	}
	if s.served(t) != before {
		t.Error("what the mirror serves changed after an interrupted sync")
	}
	ents, err := os.ReadDir(filepath.Join(s.cfg.Dir, mirror.RepoDir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "delta-") {
			t.Errorf("staged delta left behind: %s", e.Name())
		}
	}
	h.set(nil)
	if res := s.sync(t); res.Refs[testRef] != c1 || res.Deltas == 0 {
		t.Fatalf("the next sync: %+v", res)
	}
}

// TestPrepareRefusesServerData: pointed at an update server's data
// directory by mistake, the mirror refuses before writing anything.
func TestPrepareRefusesServerData(t *testing.T) {
	u := newUpstream(t)
	u.publish()
	before := get(t, u.ts.URL, "/repo/summary")
	_, err := mirror.Prepare(u.ts.Data)
	if !errors.Is(err, mirror.ErrNotMirror) {
		t.Fatalf("Prepare on a server's data: %v", err)
	}
	cfg := mirror.Config{Upstream: u.ts.URL, Dir: u.ts.Data, TrustedRoot: u.root, ReleaseKeys: u.ts.Release.Verifiers}
	if _, err := mirror.Sync(context.Background(), cfg); !errors.Is(err, mirror.ErrNotMirror) {
		t.Fatalf("Sync into a server's data: %v", err)
	}
	if _, err := os.Stat(filepath.Join(u.ts.Data, mirror.StateDir)); err == nil {
		t.Error("the refused sync made mirror/ in the server's data")
	}
	if !bytes.Equal(get(t, u.ts.URL, "/repo/summary"), before) {
		t.Error("the server's summary changed")
	}
}
