package pull

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/server"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

const (
	stable     = "mxos/10/x86_64/stable"
	testingRef = "mxos/10/x86_64/testing"
)

// fixture is a published server repository with stable and testing refs.
type fixture struct {
	repo      *ostree.Repo
	signers   []sign.Signer
	verifiers []sign.Verifier
	other     []sign.Verifier // verifiers of keys that signed nothing
	otherSign []sign.Signer
	stableC   ostree.Checksum
	testingC  ostree.Checksum
	handler   http.Handler
}

var (
	fixOnce sync.Once
	fix     *fixture
	fixErr  error
	fixDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fixDir != "" {
		os.RemoveAll(fixDir)
	}
	os.Exit(code)
}

func keys(t testing.TB, dir string) ([]sign.Signer, []sign.Verifier) {
	t.Helper()
	if err := sign.GenerateKeys(dir, sign.GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := sign.LoadSigners(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := sign.LoadVerifiers(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func getFixture(t *testing.T) *fixture {
	t.Helper()
	fixOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pulltest")
		if err != nil {
			fixErr = err
			return
		}
		fixDir = dir
		fix, fixErr = buildFixture(t, dir)
	})
	if fixErr != nil {
		t.Fatal(fixErr)
	}
	return fix
}

func buildFixture(t *testing.T, dir string) (*fixture, error) {
	f := &fixture{}
	f.signers, f.verifiers = keys(t, filepath.Join(dir, "keys"))
	f.otherSign, f.other = keys(t, filepath.Join(dir, "otherkeys"))
	repo, err := ostree.Create(filepath.Join(dir, "data", "repo"))
	if err != nil {
		return nil, err
	}
	f.repo = repo
	src := filepath.Join(dir, "tree")
	files := map[string]string{
		"etc/os-release":       "NAME=MxOS\n",
		"usr/bin/hello":        strings.Repeat("hello world\n", 500),
		"usr/lib/a/one":        "one\n",
		"usr/lib/b/two":        "two\n",
		"usr/share/doc/README": "readme\n",
		"usr/share/empty1/x":   "same\n",
		"usr/share/empty2/x":   "same\n",
	}
	for name, body := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return nil, err
		}
	}
	if err := os.Symlink("../usr/bin/hello", filepath.Join(src, "etc/hello")); err != nil {
		return nil, err
	}
	pub := &release.Publisher{Repo: repo, Signers: f.signers}
	ctx := context.Background()
	r, err := pub.Publish(ctx, release.Request{Ref: testingRef, Version: "10.0.1", Source: src})
	if err != nil {
		return nil, err
	}
	f.testingC = r.Commit
	if err := os.WriteFile(filepath.Join(src, "etc/os-release"), []byte("NAME=MxOS\nVERSION=10.0.2\n"), 0o644); err != nil {
		return nil, err
	}
	r, err = pub.Publish(ctx, release.Request{Ref: stable, Version: "10.0.2", Source: src})
	if err != nil {
		return nil, err
	}
	f.stableC = r.Commit
	srv, err := server.New(server.Config{DataDir: filepath.Join(dir, "data")})
	if err != nil {
		return nil, err
	}
	f.handler = srv.Handler()
	return f, nil
}

// hostile wraps the real server: override, when it returns true, has
// answered the request itself. It counts requests by path.
type hostile struct {
	next     http.Handler
	override func(w http.ResponseWriter, r *http.Request) bool
	mu       sync.Mutex
	hits     map[string]int
}

func (h *hostile) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.hits[r.URL.Path]++
	h.mu.Unlock()
	if h.override != nil && h.override(w, r) {
		return
	}
	h.next.ServeHTTP(w, r)
}

func (h *hostile) objectHits() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for p, c := range h.hits {
		if strings.Contains(p, "/objects/") {
			n += c
		}
	}
	return n
}

func (f *fixture) serve(t *testing.T, override func(w http.ResponseWriter, r *http.Request) bool) (*hostile, string) {
	t.Helper()
	h := &hostile{next: f.handler, override: override, hits: map[string]int{}}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return h, ts.URL + "/repo"
}

func newDst(t *testing.T) *ostree.Repo {
	t.Helper()
	r, err := ostree.Create(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (f *fixture) puller(urls ...string) *Puller {
	return &Puller{URLs: urls, Verifiers: f.verifiers, Timeout: 5 * time.Second}
}

// serveBytes answers path suffix with body.
func serveBytes(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(body)
}

func TestPullHappyPathAndNoRefetch(t *testing.T) {
	f := getFixture(t)
	h, url := f.serve(t, nil)
	dst := newDst(t)
	p := f.puller(url)
	var last, lastTotal int
	p.Progress = func(done, total int) { last, lastTotal = done, total }
	c, err := p.Pull(context.Background(), dst, stable, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c != f.stableC {
		t.Fatalf("pulled %s, want %s", c, f.stableC)
	}
	if got, err := dst.ResolveRef(stable); err != nil || got != c {
		t.Fatalf("ref = %s (%v)", got, err)
	}
	if last == 0 || last != lastTotal {
		t.Errorf("progress ended at %d/%d", last, lastTotal)
	}
	rep, err := dst.Fsck(context.Background(), ostree.FsckOptions{VerifyCommit: release.CommitVerifier(f.verifiers)})
	if err != nil || len(rep.Errors) != 0 {
		t.Fatalf("fsck: %v %v", err, rep.Errors)
	}
	// The tree checks out identically.
	out := filepath.Join(t.TempDir(), "co")
	if err := dst.Checkout(context.Background(), c, out, ostree.CheckoutOptions{AllowEscapingSymlinks: true}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "etc/os-release")); !bytes.Contains(b, []byte("10.0.2")) {
		t.Errorf("os-release = %q", b)
	}
	first := h.objectHits()
	if first == 0 {
		t.Fatal("no objects fetched")
	}
	// A second pull fetches no object at all.
	c2, err := p.Pull(context.Background(), dst, stable, Options{MinTimestamp: 1, Current: c})
	if err != nil || c2 != c {
		t.Fatalf("second pull: %s %v", c2, err)
	}
	if n := h.objectHits(); n != first {
		t.Errorf("second pull fetched %d objects", n-first)
	}
	// A second ref sharing most objects fetches only the difference.
	before := h.objectHits()
	if _, err := p.Pull(context.Background(), dst, testingRef, Options{}); err != nil {
		t.Fatal(err)
	}
	if n := h.objectHits() - before; n == 0 || n >= first {
		t.Errorf("testing pull fetched %d objects, first pull %d", n, first)
	}
}

func TestPullExpectCommit(t *testing.T) {
	f := getFixture(t)
	_, url := f.serve(t, nil)
	dst := newDst(t)
	_, err := f.puller(url).Pull(context.Background(), dst, stable, Options{ExpectCommit: f.testingC.String()})
	if !errors.Is(err, ErrUnexpectedCommit) {
		t.Fatalf("err = %v", err)
	}
	if _, err := f.puller(url).Pull(context.Background(), dst, stable, Options{ExpectCommit: f.stableC.String()}); err != nil {
		t.Fatal(err)
	}
}

// TestPullByChecksum: a release the ref has moved past (a rollout
// barrier) is pulled by its checksum with Options.ByChecksum, from a
// mirror whose signed summary names the newer head, and passes the same
// checks as a head: another ref's commit, one older than the booted one
// and one the mirrors do not have are refused. Without ByChecksum the
// same pull is refused as a stale summary.
func TestPullByChecksum(t *testing.T) {
	f := getFixture(t)
	dir := t.TempDir()
	repo, err := ostree.Create(filepath.Join(dir, "data", "repo"))
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "tree")
	if err := os.MkdirAll(filepath.Join(src, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	pub := &release.Publisher{Repo: repo, Signers: f.signers}
	commits := map[string]ostree.Checksum{}
	for _, v := range []string{"10.0.1", "10.0.2"} {
		if err := os.WriteFile(filepath.Join(src, "etc/os-release"), []byte("VERSION="+v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := pub.Publish(context.Background(), release.Request{Ref: stable, Version: v, Source: src})
		if err != nil {
			t.Fatal(err)
		}
		commits[v] = r.Commit
	}
	srv, err := server.New(server.Config{DataDir: filepath.Join(dir, "data")})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	barrier := commits["10.0.1"]
	head, err := repo.ReadCommit(commits["10.0.2"])
	if err != nil {
		t.Fatal(err)
	}
	missing := barrier
	missing[0] ^= 0xff
	tests := []struct {
		name string
		opts Options
		want error // nil: the pull ends at the barrier
	}{
		{"barrier by checksum", Options{ExpectCommit: barrier.String(), ByChecksum: true}, nil},
		{"without ByChecksum", Options{ExpectCommit: barrier.String()}, ErrUnexpectedCommit},
		{"older than the booted one", Options{ExpectCommit: barrier.String(), ByChecksum: true,
			MinTimestamp: head.Timestamp, Current: commits["10.0.2"]}, ErrOlder},
		{"not on the mirror", Options{ExpectCommit: missing.String(), ByChecksum: true}, ostree.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := newDst(t)
			c, err := f.puller(ts.URL+"/repo").Pull(context.Background(), dst, stable, tt.opts)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("err = %v, want %v", err, tt.want)
				}
				if _, rerr := dst.ResolveRef(stable); !errors.Is(rerr, ostree.ErrNotFound) {
					t.Errorf("the ref moved after a refused pull: %v", rerr)
				}
				return
			}
			if err != nil || c != barrier {
				t.Fatalf("pull = %s, %v; want %s", c, err, barrier)
			}
			if got, err := dst.ResolveRef(stable); err != nil || got != barrier {
				t.Fatalf("ref = %s, %v", got, err)
			}
			if err := dst.CheckComplete(barrier); err != nil {
				t.Fatal(err)
			}
		})
	}
	// Another ref's commit that the mirror has is refused by its binding.
	_, furl := f.serve(t, nil)
	_, err = f.puller(furl).Pull(context.Background(), newDst(t), stable,
		Options{ExpectCommit: f.testingC.String(), ByChecksum: true})
	if !errors.Is(err, ErrRefBinding) {
		t.Fatalf("another ref's commit: err = %v, want ErrRefBinding", err)
	}
}

func TestPullFallsBackToSecondMirror(t *testing.T) {
	f := getFixture(t)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL + "/repo"
	dead.Close()
	// A mirror that has the summary but loses every content object.
	_, partial := f.serve(t, func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, ".filez") {
			http.Error(w, "gone", http.StatusInternalServerError)
			return true
		}
		return false
	})
	_, good := f.serve(t, nil)
	dst := newDst(t)
	c, err := f.puller(deadURL, partial, good).Pull(context.Background(), dst, stable, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c != f.stableC {
		t.Fatalf("pulled %s", c)
	}
}

func TestPullResumes(t *testing.T) {
	f := getFixture(t)
	var failed string
	var mu sync.Mutex
	h, url := f.serve(t, func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, ".filez") {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		if failed == "" {
			failed = r.URL.Path
		}
		if r.URL.Path == failed {
			http.Error(w, "boom", http.StatusInternalServerError)
			return true
		}
		return false
	})
	dst := newDst(t)
	p := f.puller(url)
	p.Parallel = 1
	if _, err := p.Pull(context.Background(), dst, stable, Options{}); !errors.Is(err, ErrHTTP) {
		t.Fatalf("first pull: %v", err)
	}
	if refs, _ := dst.ListRefs(); len(refs) != 0 {
		t.Fatalf("refs after failed pull: %v", refs)
	}
	served := map[string]int{}
	h.mu.Lock()
	for k, v := range h.hits {
		served[k] = v
	}
	h.mu.Unlock()
	mu.Lock()
	failed = "none" // heal the server
	mu.Unlock()
	if _, err := p.Pull(context.Background(), dst, stable, Options{}); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for path, n := range h.hits {
		if !strings.Contains(path, "/objects/") || strings.HasSuffix(path, ".commit") || strings.HasSuffix(path, ".commitmeta") {
			continue
		}
		if n > 1 && served[path] > 0 && n > served[path] {
			// Only the object that failed may be fetched again.
			if n-served[path] > 1 || !strings.HasSuffix(path, ".filez") {
				t.Errorf("%s fetched %d times", path, n)
			}
		}
	}
}

// marshalSig signs data with signers into summary.sig/commitmeta bytes.
func marshalSig(t *testing.T, signers []sign.Signer, data []byte) []byte {
	t.Helper()
	md, err := release.SignData(signers, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ostree.MarshalMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// forgedSummary is a summary mapping ref to commit, signed by signers.
func forgedSummary(t *testing.T, f *fixture, ref string, c ostree.Checksum, size uint64, signers []sign.Signer) (sum, sig []byte) {
	t.Helper()
	s := &ostree.Summary{Refs: []ostree.SummaryRef{{Name: ref, CommitSize: size, Checksum: c}}}
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b, marshalSig(t, signers, b)
}

// overlay serves the given paths (relative to /repo/) from memory.
func overlay(files map[string][]byte) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		b, ok := files[strings.TrimPrefix(r.URL.Path, "/repo/")]
		if ok {
			serveBytes(w, b)
		}
		return ok
	}
}

func TestPullRefusesAttacks(t *testing.T) {
	f := getFixture(t)
	commitBytes, err := f.repo.ReadMetadata(f.stableC, ostree.ObjCommit)
	if err != nil {
		t.Fatal(err)
	}
	commitPath := ostree.ObjectPath(f.stableC, ostree.ObjCommit)
	stableCommit, err := ostree.ParseCommit(commitBytes)
	if err != nil {
		t.Fatal(err)
	}

	// A validly signed commit whose root tree names "..".
	evilTree := func(name string) map[string][]byte {
		tmpl := strings.Repeat("z", len(name))
		dt := &ostree.DirTree{Files: []ostree.TreeFile{{Name: tmpl, Checksum: f.stableC}}}
		tb, err := dt.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		tb = bytes.Replace(tb, []byte(tmpl+"\x00"), []byte(name+"\x00"), 1)
		tc := ostree.Checksum(sha256Sum(tb))
		cm := *stableCommit
		cm.RootTree = tc
		cm.Timestamp++
		cb, err := cm.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		cc := ostree.Checksum(sha256Sum(cb))
		sum, sig := forgedSummary(t, f, stable, cc, uint64(len(cb)), f.signers)
		return map[string][]byte{
			"summary": sum, "summary.sig": sig,
			ostree.ObjectPath(cc, ostree.ObjCommit):     cb,
			ostree.ObjectPath(cc, ostree.ObjCommitMeta): marshalSig(t, f.signers, cb),
			ostree.ObjectPath(tc, ostree.ObjDirTree):    tb,
		}
	}

	type attack struct {
		name     string
		override func(w http.ResponseWriter, r *http.Request) bool
		tune     func(p *Puller, o *Options)
		want     []error
	}
	var tamperOnce sync.Once
	attacks := []attack{
		{name: "summary.sig missing", override: func(w http.ResponseWriter, r *http.Request) bool {
			if strings.HasSuffix(r.URL.Path, "/summary.sig") {
				http.NotFound(w, r)
				return true
			}
			return false
		}, want: []error{ErrUnsigned}},
		{name: "summary.sig by unknown key", tune: func(p *Puller, o *Options) { p.Verifiers = f.other },
			want: []error{ErrBadSignature, sign.ErrBadSignature}},
		{name: "summary does not list ref", override: func() func(http.ResponseWriter, *http.Request) bool {
			sum, sig := forgedSummary(t, f, "mxos/10/x86_64/other", f.stableC, uint64(len(commitBytes)), f.signers)
			return overlay(map[string][]byte{"summary": sum, "summary.sig": sig})
		}(), want: []error{ErrNoRef}},
		{name: "unsigned commit", override: func(w http.ResponseWriter, r *http.Request) bool {
			if strings.HasSuffix(r.URL.Path, ".commitmeta") {
				http.NotFound(w, r)
				return true
			}
			return false
		}, want: []error{ErrUnsigned}},
		{name: "commit signed by unknown key", override: overlay(map[string][]byte{
			ostree.ObjectPath(f.stableC, ostree.ObjCommitMeta): marshalSig(t, f.otherSign, commitBytes),
		}), want: []error{ErrBadSignature, sign.ErrBadSignature}},
		{name: "older commit", tune: func(p *Puller, o *Options) { o.MinTimestamp = stableCommit.Timestamp + 1 },
			want: []error{ErrOlder}},
		{name: "same timestamp, other commit", tune: func(p *Puller, o *Options) {
			o.MinTimestamp = stableCommit.Timestamp
			o.Current = f.testingC
		}, want: []error{ErrOlder}},
		{name: "testing commit served as stable", override: func() func(http.ResponseWriter, *http.Request) bool {
			tb, err := f.repo.ReadMetadata(f.testingC, ostree.ObjCommit)
			if err != nil {
				t.Fatal(err)
			}
			sum, sig := forgedSummary(t, f, stable, f.testingC, uint64(len(tb)), f.signers)
			return overlay(map[string][]byte{"summary": sum, "summary.sig": sig})
		}(), want: []error{ErrRefBinding}},
		{name: "commit larger than signed size", override: overlay(map[string][]byte{
			commitPath: append(append([]byte{}, commitBytes...), make([]byte, 100)...),
		}), want: []error{ostree.ErrTooLarge}},
		{name: "tampered content object", override: func(w http.ResponseWriter, r *http.Request) bool {
			if !strings.HasSuffix(r.URL.Path, ".filez") {
				return false
			}
			hit := false
			tamperOnce.Do(func() { hit = true })
			if !hit {
				return false
			}
			rec := httptest.NewRecorder()
			f.handler.ServeHTTP(rec, r)
			b := rec.Body.Bytes()
			b[16] ^= 0x01 // uid in the archive header
			serveBytes(w, b)
			return true
		}, tune: func(p *Puller, o *Options) { p.Parallel = 1 }, want: []error{ostree.ErrCorrupt}},
		{name: "endless content object", override: func(w http.ResponseWriter, r *http.Request) bool {
			if !strings.HasSuffix(r.URL.Path, ".filez") {
				return false
			}
			chunk := make([]byte, 32<<10)
			for {
				if _, err := w.Write(chunk); err != nil {
					return true
				}
			}
		}, tune: func(p *Puller, o *Options) { p.MaxObjectSize = 1 << 20 }, want: []error{ostree.ErrTooLarge}},
		{name: "endless metadata object", override: func(w http.ResponseWriter, r *http.Request) bool {
			if !strings.HasSuffix(r.URL.Path, ".commit") {
				return false
			}
			chunk := make([]byte, 32<<10)
			for {
				if _, err := w.Write(chunk); err != nil {
					return true
				}
			}
		}, want: []error{ostree.ErrTooLarge}},
		{name: "stalled connection", override: func(w http.ResponseWriter, r *http.Request) bool {
			if !strings.HasSuffix(r.URL.Path, ".dirtree") {
				return false
			}
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return true
		}, tune: func(p *Puller, o *Options) { p.Timeout = 300 * time.Millisecond }, want: []error{ErrTimeout}},
		{name: "trickling body", override: func(w http.ResponseWriter, r *http.Request) bool {
			if !strings.HasSuffix(r.URL.Path, ".filez") {
				return false
			}
			w.Header().Set("Content-Length", "100000")
			w.Write([]byte("x"))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return true
		}, tune: func(p *Puller, o *Options) {
			p.MinBytesPerSecond = 1000
			p.Grace = 200 * time.Millisecond
		}, want: []error{ErrTooSlow}},
		{name: "tree naming ..", override: overlay(evilTree("..")), want: []error{ostree.ErrBadName}},
		{name: "tree naming a/b", override: overlay(evilTree("a/b")), want: []error{ostree.ErrBadName}},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			_, url := f.serve(t, a.override)
			dst := newDst(t)
			p := f.puller(url)
			var o Options
			if a.tune != nil {
				a.tune(p, &o)
			}
			start := time.Now()
			_, err := p.Pull(context.Background(), dst, stable, o)
			if err == nil {
				t.Fatal("pull succeeded")
			}
			for _, w := range a.want {
				if !errors.Is(err, w) {
					t.Errorf("error %v\n  is not %v", err, w)
				}
			}
			if d := time.Since(start); d > 4*time.Second {
				t.Errorf("took %s", d)
			}
			refs, lerr := dst.ListRefs()
			if lerr != nil || len(refs) != 0 {
				t.Errorf("refs after refused pull: %v %v", refs, lerr)
			}
			t.Logf("refused: %v", err)
		})
	}
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
