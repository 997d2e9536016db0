package pull

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// Mirror failover and the time and memory limits, with the Puller as a
// black box against hostile mirrors on 127.0.0.1 in front of the real
// server. Each failover test checks the pull succeeded, that the bad
// mirror was asked (so it really was skipped, not avoided), and that the
// good one served what the bad one failed.

// silent accepts the request and sends no response headers until the
// client gives up (or for two minutes, longer than the tests' deadline).
func silent(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(2 * time.Minute):
	}
}

// pathMatch matches a request path by suffix.
func pathMatch(suffix string) func(r *http.Request) bool {
	return func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, suffix) }
}

func (h *hostile) hitsOf(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hits[path]
}

func mustURL(path string) *url.URL {
	u, err := url.Parse(path)
	if err != nil {
		panic(err)
	}
	return u
}

// summaryBytes is the summary the real server serves.
func (f *fixture) summaryBytes(t *testing.T) []byte {
	t.Helper()
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/repo/summary", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("summary: %d", rec.Code)
	}
	return rec.Body.Bytes()
}

func (h *hostile) hitsMatching(match func(path string) bool) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for p, c := range h.hits {
		if match(p) {
			n += c
		}
	}
	return n
}

func TestPullSilentMirrorMovesOn(t *testing.T) {
	f := getFixture(t)
	for _, tc := range []struct {
		name  string
		match func(r *http.Request) bool
	}{
		{"summary", func(r *http.Request) bool { return r.URL.Path == "/repo/summary" }},
		{"summary.sig", pathMatch("/summary.sig")},
		{"commit", pathMatch(".commit")},
		{"commitmeta", pathMatch(".commitmeta")},
		{"dirtree", pathMatch(".dirtree")},
		{"content object", pathMatch(".filez")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad, badURL := f.serve(t, func(w http.ResponseWriter, r *http.Request) bool {
				if !tc.match(r) {
					return false
				}
				silent(w, r)
				return true
			})
			good, goodURL := f.serve(t, nil)
			p := f.puller(badURL, goodURL)
			// The whole-request limit is long: only the header timeout can
			// make the pull move on before the test's own deadline.
			p.Timeout = 10 * time.Minute
			p.HeaderTimeout = 200 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, err := p.Pull(ctx, newDst(t), stable, Options{ExpectCommit: f.stableC.String()})
			if err != nil {
				t.Fatalf("pull: %v", err)
			}
			if c != f.stableC {
				t.Fatalf("pulled %s", c)
			}
			match := func(path string) bool { return tc.match(&http.Request{URL: mustURL(path)}) }
			if bad.hitsMatching(match) == 0 || good.hitsMatching(match) == 0 {
				t.Errorf("silent mirror asked %d times, good one %d: want both", bad.hitsMatching(match), good.hitsMatching(match))
			}
		})
	}
}

// TestPullSilentMirrorError: with every mirror silent, the error says so.
func TestPullSilentMirrorError(t *testing.T) {
	f := getFixture(t)
	_, url := f.serve(t, func(w http.ResponseWriter, r *http.Request) bool { silent(w, r); return true })
	p := f.puller(url)
	p.HeaderTimeout = 100 * time.Millisecond
	_, err := p.Pull(context.Background(), newDst(t), stable, Options{})
	if !errors.Is(err, ErrNoHeaders) {
		t.Fatalf("err = %v, want ErrNoHeaders", err)
	}
}

func TestPullBadFirstMirrorMovesOn(t *testing.T) {
	f := getFixture(t)
	commitBytes, err := f.repo.ReadMetadata(f.stableC, ostree.ObjCommit)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := append([]byte(nil), commitBytes...)
	corrupt[len(corrupt)/2] ^= 0x20
	commitPath := ostree.ObjectPath(f.stableC, ostree.ObjCommit)
	metaPath := ostree.ObjectPath(f.stableC, ostree.ObjCommitMeta)
	staleSum, staleSig := forgedSummary(t, f, stable, f.testingC, 0, f.signers)
	for _, tc := range []struct {
		name     string
		override func(w http.ResponseWriter, r *http.Request) bool
		opts     Options
		asked    string // a path the bad mirror must have been asked for
	}{
		{name: "corrupt commit object", override: overlay(map[string][]byte{commitPath: corrupt}),
			asked: "/repo/" + commitPath},
		{name: "commitmeta signed by another key", override: overlay(map[string][]byte{metaPath: marshalSig(t, f.otherSign, commitBytes)}),
			asked: "/repo/" + metaPath},
		{name: "summary signed by another key", override: overlay(map[string][]byte{"summary.sig": marshalSig(t, f.otherSign, f.summaryBytes(t))}),
			asked: "/repo/summary.sig"},
		{name: "summary without the ref", override: func() func(http.ResponseWriter, *http.Request) bool {
			sum, sig := forgedSummary(t, f, testingRef, f.testingC, 0, f.signers)
			return overlay(map[string][]byte{"summary": sum, "summary.sig": sig})
		}(), asked: "/repo/summary"},
		{name: "stale summary, offered commit expected", override: overlay(map[string][]byte{"summary": staleSum, "summary.sig": staleSig}),
			opts: Options{ExpectCommit: f.stableC.String()}, asked: "/repo/summary"},
		{name: "stale summary, no commit expected", override: overlay(map[string][]byte{"summary": staleSum, "summary.sig": staleSig}),
			asked: "/repo/summary"},
		{name: "server error on summary", override: func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != "/repo/summary" {
				return false
			}
			http.Error(w, "broken", http.StatusBadGateway)
			return true
		}, asked: "/repo/summary"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad, badURL := f.serve(t, tc.override)
			good, goodURL := f.serve(t, nil)
			dst := newDst(t)
			c, err := f.puller(badURL, goodURL).Pull(context.Background(), dst, stable, tc.opts)
			if err != nil {
				t.Fatalf("pull: %v", err)
			}
			if c != f.stableC {
				t.Fatalf("pulled %s, want %s", c, f.stableC)
			}
			if bad.hitsOf(tc.asked) == 0 {
				t.Errorf("bad mirror never asked for %s", tc.asked)
			}
			if good.hitsOf("/repo/summary") == 0 && good.hitsOf(tc.asked) == 0 {
				t.Errorf("good mirror not used")
			}
			if got, err := dst.ResolveRef(stable); err != nil || got != f.stableC {
				t.Errorf("ref = %s, %v", got, err)
			}
		})
	}
	// Alone, the same mirrors fail with the reason.
	t.Run("corrupt commit, no other mirror", func(t *testing.T) {
		_, badURL := f.serve(t, overlay(map[string][]byte{commitPath: corrupt}))
		_, err := f.puller(badURL).Pull(context.Background(), newDst(t), stable, Options{})
		if !errors.Is(err, ostree.ErrCorrupt) {
			t.Fatalf("err = %v, want ErrCorrupt", err)
		}
	})
	t.Run("stale summary, no other mirror", func(t *testing.T) {
		_, badURL := f.serve(t, overlay(map[string][]byte{"summary": staleSum, "summary.sig": staleSig}))
		_, err := f.puller(badURL).Pull(context.Background(), newDst(t), stable, Options{ExpectCommit: f.stableC.String()})
		if !errors.Is(err, ErrUnexpectedCommit) {
			t.Fatalf("err = %v, want ErrUnexpectedCommit", err)
		}
	})
}

// TestPullEndlessMetadataBoundedMemory: an endless summary, summary.sig,
// .commitmeta, commit or dirtree fails with ErrTooLarge after the file's
// own cap, having cost under 64 MB of allocations in all (so the heap
// never grew by more than that either).
func TestPullEndlessMetadataBoundedMemory(t *testing.T) {
	f := getFixture(t)
	const budget = 64 << 20
	for _, tc := range []struct {
		name  string
		match func(r *http.Request) bool
	}{
		{"summary", func(r *http.Request) bool { return r.URL.Path == "/repo/summary" }},
		{"summary.sig", pathMatch("/summary.sig")},
		{"commitmeta", pathMatch(".commitmeta")},
		{"commit", pathMatch(".commit")},
		{"dirtree", pathMatch(".dirtree")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chunk := make([]byte, 64<<10)
			_, url := f.serve(t, func(w http.ResponseWriter, r *http.Request) bool {
				if !tc.match(r) {
					return false
				}
				for {
					if _, err := w.Write(chunk); err != nil {
						return true
					}
				}
			})
			dst := newDst(t)
			p := f.puller(url)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := p.Pull(context.Background(), dst, stable, Options{})
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ostree.ErrTooLarge) {
				t.Fatalf("err = %v, want ErrTooLarge", err)
			}
			t.Logf("refused: %v", err)
			grew := after.TotalAlloc - before.TotalAlloc
			t.Logf("allocated %d KiB", grew>>10)
			if grew > budget {
				t.Errorf("endless %s cost %d MiB of allocations, budget %d MiB", tc.name, grew>>20, budget>>20)
			}
			if refs, _ := dst.ListRefs(); len(refs) != 0 {
				t.Errorf("refs after refused pull: %v", refs)
			}
		})
	}
}

// TestGetObjectMovesOn: the single-object fetch the OCI transport uses has
// the same failover: a corrupt commit and a silent mirror are passed over.
func TestGetObjectMovesOn(t *testing.T) {
	f := getFixture(t)
	want, err := f.repo.ReadMetadata(f.stableC, ostree.ObjCommit)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := append([]byte(nil), want...)
	corrupt[0] ^= 1
	_, corruptURL := f.serve(t, overlay(map[string][]byte{ostree.ObjectPath(f.stableC, ostree.ObjCommit): corrupt}))
	_, silentURL := f.serve(t, func(w http.ResponseWriter, r *http.Request) bool { silent(w, r); return true })
	_, goodURL := f.serve(t, nil)
	p := f.puller(corruptURL, silentURL, goodURL)
	p.HeaderTimeout = 200 * time.Millisecond
	got, err := p.GetObject(context.Background(), f.stableC, ostree.ObjCommit)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("GetObject: %d bytes, %v", len(got), err)
	}
	if _, err := f.puller(corruptURL).GetObject(context.Background(), f.stableC, ostree.ObjCommit); !errors.Is(err, ostree.ErrCorrupt) {
		t.Fatalf("corrupt only: err = %v", err)
	}
	md, err := p.GetObject(context.Background(), f.stableC, ostree.ObjCommitMeta)
	if err != nil || len(md) == 0 {
		t.Fatalf("commitmeta: %d bytes, %v", len(md), err)
	}
}
