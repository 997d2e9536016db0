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

	"github.com/ulikunitz/xz"

	"github.com/mxos-linux/mxos-update/internal/gvariant"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/delta"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/server"
)

// deltaSite is a server repository publishing with static deltas.
type deltaSite struct {
	f    *fixture
	dir  string
	src  string
	pub  *release.Publisher
	h    http.Handler
	vers []*release.Result
}

func newDeltaSite(t *testing.T) *deltaSite {
	t.Helper()
	f := getFixture(t) // for its keys
	dir := t.TempDir()
	repo, err := ostree.Create(filepath.Join(dir, "data", "repo"))
	if err != nil {
		t.Fatal(err)
	}
	s := &deltaSite{f: f, dir: dir, src: filepath.Join(dir, "tree"),
		pub: &release.Publisher{Repo: repo, Signers: f.signers, Deltas: &release.DeltaPolicy{Sources: 2, Scratch: true}}}
	for name, body := range map[string]string{
		"etc/os-release": "NAME=MxOS\n",
		"usr/bin/hello":  string(noise(64 << 10)),
		"usr/lib/a/one":  "one\n",
		"usr/share/e":    "",
		// A license text the next release's new package repeats.
		"usr/share/doc/a/copyright": string(noise(32 << 10)),
	} {
		s.write(t, name, body)
	}
	if err := os.Symlink("../usr/bin/hello", filepath.Join(s.src, "etc/hello")); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{DataDir: filepath.Join(dir, "data")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	s.h = srv.Handler()
	return s
}

func (s *deltaSite) write(t *testing.T, name, body string) {
	t.Helper()
	p := filepath.Join(s.src, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (s *deltaSite) publish(t *testing.T, version string) *release.Result {
	t.Helper()
	r, err := s.pub.Publish(context.Background(), release.Request{Ref: stable, Version: version, Source: s.src})
	if err != nil || r.DeltaErr != nil {
		t.Fatalf("publish %s: %v %v", version, err, r.DeltaErr)
	}
	s.vers = append(s.vers, r)
	return r
}

func (s *deltaSite) serve(t *testing.T, override func(w http.ResponseWriter, r *http.Request) bool) (*hostile, string) {
	t.Helper()
	h := &hostile{next: s.h, override: override, hits: map[string]int{}}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return h, ts.URL + "/repo"
}

func (h *hostile) count(sub string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for p, c := range h.hits {
		if strings.Contains(p, sub) {
			n += c
		}
	}
	return n
}

// deltaLog records what Puller.OnDelta heard.
type deltaLog struct {
	mu   sync.Mutex
	ids  []ostree.DeltaID
	errs []error
}

func (l *deltaLog) on(id ostree.DeltaID, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ids = append(l.ids, id)
	l.errs = append(l.errs, err)
}

func (s *deltaSite) puller(url string, l *deltaLog) *Puller {
	return &Puller{URLs: []string{url}, Verifiers: s.f.verifiers, Timeout: 10 * time.Second, OnDelta: l.on}
}

func fsckClean(t *testing.T, dst *ostree.Repo, s *deltaSite) {
	t.Helper()
	rep, err := dst.Fsck(context.Background(), ostree.FsckOptions{VerifyCommit: release.CommitVerifier(s.f.verifiers)})
	if err != nil || len(rep.Errors) != 0 {
		t.Fatalf("fsck: %v %v", err, rep.Errors)
	}
}

// TestPullUsesStaticDeltas: a fresh device takes the delta from scratch,
// an updating one the delta from the release it has; each fetches no
// loose object but the commit and its signatures, and the result is
// complete and verified.
func TestPullUsesStaticDeltas(t *testing.T) {
	s := newDeltaSite(t)
	v1 := s.publish(t, "10.0.1")
	h, url := s.serve(t, nil)
	dst := newDst(t)
	var l deltaLog
	c, err := s.puller(url, &l).Pull(context.Background(), dst, stable, Options{})
	if err != nil || c != v1.Commit {
		t.Fatalf("pull: %s %v", c, err)
	}
	if len(l.ids) != 1 || l.ids[0] != (ostree.DeltaID{To: v1.Commit}) || l.errs[0] != nil {
		t.Fatalf("deltas used: %v %v, want the one from scratch", l.ids, l.errs)
	}
	if n := h.count("/objects/") - h.count(".commit"); n != 0 {
		t.Errorf("the scratch pull fetched %d loose objects besides the commit", n)
	}
	fsckClean(t, dst, s)

	s.write(t, "etc/os-release", "NAME=MxOS\nVERSION=10.0.2\n")
	s.write(t, "usr/lib/a/two", "two\n")
	// A changed binary: sent as ranges of the old one plus the new bytes.
	hello := noise(64 << 10)
	hello = append(append(append([]byte{}, hello[:1000]...), "parche 10.0.2"...), hello[1000:]...)
	s.write(t, "usr/bin/hello", string(hello))
	// A new package's copyright file: sent as ranges of the other
	// package's file of the same name plus its own first line.
	copyright := append([]byte("Copyright 2026 MxOS\n"), noise(32<<10)...)
	s.write(t, "usr/share/doc/b/copyright", string(copyright))
	v2 := s.publish(t, "10.0.2")
	if n := partBytes(t, s, ostree.DeltaID{From: v1.Commit, To: v2.Commit}); n > 8<<10 {
		t.Errorf("the update's parts are %d bytes for a 13-byte change of a 64 KiB file and a new 32 KiB file most of which the device has", n)
	}
	l = deltaLog{}
	before := h.count("/objects/") - h.count(".commit")
	c, err = s.puller(url, &l).Pull(context.Background(), dst, stable, Options{Current: v1.Commit, MinTimestamp: 1})
	if err != nil || c != v2.Commit {
		t.Fatalf("update: %s %v", c, err)
	}
	if len(l.ids) != 1 || l.ids[0] != (ostree.DeltaID{From: v1.Commit, To: v2.Commit}) || l.errs[0] != nil {
		t.Fatalf("deltas used: %v %v, want the one from 10.0.1", l.ids, l.errs)
	}
	if n := h.count("/objects/") - h.count(".commit") - before; n != 0 {
		t.Errorf("the update fetched %d loose objects besides the commit", n)
	}
	fsckClean(t, dst, s)
	out := filepath.Join(t.TempDir(), "co")
	if err := dst.Checkout(context.Background(), c, out, ostree.CheckoutOptions{AllowEscapingSymlinks: true}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "usr/bin/hello")); err != nil || !bytes.Equal(b, hello) {
		t.Errorf("usr/bin/hello after the update differs from the published one (%v)", err)
	}
	if b, err := os.ReadFile(filepath.Join(out, "usr/share/doc/b/copyright")); err != nil || !bytes.Equal(b, copyright) {
		t.Errorf("usr/share/doc/b/copyright after the update differs from the published one (%v)", err)
	}
}

// noise is n deterministic incompressible bytes.
func noise(n int) []byte {
	b := make([]byte, n)
	x := uint64(0x9e3779b97f4a7c15)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// partBytes sums the part files of a stored delta.
func partBytes(t *testing.T, s *deltaSite, id ostree.DeltaID) int {
	t.Helper()
	sb, err := delta.ParseSuperblock(s.file(t, id.SuperblockPath()))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := range sb.Parts {
		n += len(s.file(t, id.PartPath(i)))
	}
	return n
}

// resign serves a summary whose ostree.static-deltas names digest for id,
// signed with the release keys (a server whose signing key is stolen, or
// a bug): what is left to refuse the delta is the superblock and part checks.
func (s *deltaSite) resign(t *testing.T, id ostree.DeltaID, digest [32]byte) (sum, sig []byte) {
	t.Helper()
	parsed, _, err := s.pub.Repo.ReadSummary()
	if err != nil {
		t.Fatal(err)
	}
	md := ostree.Metadata{}
	for _, e := range parsed.Metadata {
		if e.Key != ostree.SummaryStaticDeltas {
			md = append(md, e)
		}
	}
	md = append(md, gvariant.DictEntry{Key: ostree.SummaryStaticDeltas, Value: gvariant.Variant{Type: "a{sv}",
		Value: []gvariant.DictEntry{{Key: id.Name(), Value: gvariant.Variant{Type: "ay", Value: digest[:]}}}}})
	parsed.Metadata = md
	if sum, err = parsed.Marshal(); err != nil {
		t.Fatal(err)
	}
	smd, err := release.SignData(s.f.signers, sum, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sig, err = ostree.MarshalMetadata(smd); err != nil {
		t.Fatal(err)
	}
	return sum, sig
}

func (s *deltaSite) file(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.pub.Repo.Path(), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPullRefusesHostileDeltas: each hostile delta is refused with the
// error naming it, stores nothing (with loose objects unavailable the pull
// fails and the device repository holds no object), and with loose objects
// available the pull falls back to them and completes.
func TestPullRefusesHostileDeltas(t *testing.T) {
	s := newDeltaSite(t)
	v1 := s.publish(t, "10.0.1")
	s.write(t, "etc/os-release", "NAME=MxOS\nVERSION=10.0.2\n")
	v2 := s.publish(t, "10.0.2")
	scratch := ostree.DeltaID{To: v2.Commit}
	sbBytes := s.file(t, scratch.SuperblockPath())
	sb, err := delta.ParseSuperblock(sbBytes)
	if err != nil || len(sb.Parts) != 1 {
		t.Fatalf("superblock: %v, %d parts", err, len(sb.Parts))
	}
	part := s.file(t, scratch.PartPath(0))
	// v1's delta from scratch was pruned when v2 was published; make it
	// again to have a valid superblock of another commit.
	if err := delta.Generate(context.Background(), s.pub.Repo, ostree.DeltaID{To: v1.Commit}, time.Now()); err != nil {
		t.Fatal(err)
	}

	// A part that inflates far past its declared object bytes, with a
	// superblock and summary that vouch for its checksum.
	bomb := func() (sum, sig, sbb, pb []byte) {
		p := delta.Payload{Data: make([]byte, 4<<20)}
		raw, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		out.WriteByte('x')
		w, _ := xz.NewWriter(&out)
		w.Write(raw)
		w.Close()
		pb = out.Bytes()
		bad := *sb
		bad.Parts = []delta.PartHeader{{Checksum: sha256.Sum256(pb), Size: uint64(len(pb)), USize: 100, Objects: sb.Parts[0].Objects}}
		if sbb, err = bad.Marshal(); err != nil {
			t.Fatal(err)
		}
		sum, sig = s.resign(t, scratch, sha256.Sum256(sbb))
		return sum, sig, sbb, pb
	}
	// The superblock of another commit (v1's scratch delta) at v2's path.
	other := func() (sum, sig, sbb []byte) {
		sbb = s.file(t, ostree.DeltaID{To: v1.Commit}.SuperblockPath())
		sum, sig = s.resign(t, scratch, sha256.Sum256(sbb))
		return
	}

	type answer struct {
		sum, sig, sb, part []byte
	}
	cases := []struct {
		name string
		ans  func() answer
		want error
		msg  string
	}{
		{"part larger than the superblock says", func() answer {
			return answer{part: append(append([]byte{}, part...), make([]byte, 100)...)}
		}, ostree.ErrTooLarge, "too large"},
		{"part inflates past its declared size", func() answer {
			sum, sig, sbb, pb := bomb()
			return answer{sum, sig, sbb, pb}
		}, delta.ErrTooLarge, "inflates past"},
		{"superblock for another commit", func() answer {
			sum, sig, sbb := other()
			return answer{sum: sum, sig: sig, sb: sbb}
		}, delta.ErrBadDelta, "superblock is for"},
		{"superblock not in the signed summary", func() answer {
			return answer{sb: s.file(t, ostree.DeltaID{To: v1.Commit}.SuperblockPath())}
		}, delta.ErrBadDelta, "does not match the signed summary"},
		{"truncated part", func() answer {
			return answer{part: part[:len(part)/2]}
		}, delta.ErrBadDelta, "the superblock says"},
	}
	answers := make([]answer, len(cases))
	for i, tc := range cases {
		answers[i] = tc.ans()
	}
	for i, tc := range cases {
		a := answers[i]
		t.Run(tc.name, func(t *testing.T) {
			serveHostile := func(objects bool) func(w http.ResponseWriter, r *http.Request) bool {
				return func(w http.ResponseWriter, r *http.Request) bool {
					p := strings.TrimPrefix(r.URL.Path, "/repo/")
					switch {
					case p == "summary" && a.sum != nil:
						serveBytes(w, a.sum)
					case p == "summary.sig" && a.sig != nil:
						serveBytes(w, a.sig)
					case p == scratch.SuperblockPath() && a.sb != nil:
						serveBytes(w, a.sb)
					case p == scratch.PartPath(0) && a.part != nil:
						serveBytes(w, a.part)
					case !objects && strings.HasPrefix(p, "objects/") && !strings.Contains(p, ".commit"):
						http.NotFound(w, r)
					default:
						return false
					}
					return true
				}
			}
			// No loose objects: the pull fails and nothing is stored.
			_, url := s.serve(t, serveHostile(false))
			dst := newDst(t)
			var l deltaLog
			if _, err := s.puller(url, &l).Pull(context.Background(), dst, stable, Options{}); err == nil {
				t.Fatal("pull succeeded without loose objects")
			}
			if len(l.errs) != 1 || !errors.Is(l.errs[0], tc.want) || !strings.Contains(l.errs[0].Error(), tc.msg) {
				t.Fatalf("delta error %v, want %v (%q)", l.errs, tc.want, tc.msg)
			}
			if objs, err := listObjects(dst); err != nil || len(objs) != 0 {
				t.Errorf("the refused delta stored %d objects (%v)", len(objs), err)
			}
			if _, err := dst.ResolveRef(stable); !errors.Is(err, ostree.ErrNotFound) {
				t.Errorf("ref after the failed pull: %v", err)
			}
			// Loose objects available: the same delta is refused and the
			// pull completes from objects.
			_, url = s.serve(t, serveHostile(true))
			l = deltaLog{}
			c, err := s.puller(url, &l).Pull(context.Background(), dst, stable, Options{})
			if err != nil || c != v2.Commit {
				t.Fatalf("fallback pull: %s %v", c, err)
			}
			if len(l.errs) != 1 || !errors.Is(l.errs[0], tc.want) {
				t.Fatalf("delta error %v, want %v", l.errs, tc.want)
			}
			fsckClean(t, dst, s)
		})
	}
}
