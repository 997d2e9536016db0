package e2e

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/testtool/e2ekit"
)

// publishDeltas runs the release pipeline with static deltas from the two
// previous releases, as mxosctl publish and the server do by default.
func (s *site) publishDeltas(t testing.TB, version, source string) *release.Result {
	t.Helper()
	p := &release.Publisher{Repo: s.repo, Signers: s.keys.signers, Deltas: &release.DeltaPolicy{Sources: 2, Scratch: true}}
	res, err := p.Publish(context.Background(), release.Request{Ref: testRef, Version: version, Source: source})
	if err != nil {
		t.Fatalf("publish %s: %v", version, err)
	}
	if res.DeltaErr != nil {
		t.Fatalf("publish %s: static deltas: %v", version, res.DeltaErr)
	}
	return res
}

// newDeltaClient is a stock ostree repository that can apply deltas
// (ostree never uses them for archive repositories; bare-user, unlike
// bare-user-only, keeps setuid and setgid modes), verifying commits
// and the summary with GPG.
func newDeltaClient(t testing.TB, url, pub string) *client {
	t.Helper()
	repo := filepath.Join(t.TempDir(), "client")
	c := &client{Client: &e2ekit.Client{T: t, Repo: repo, Env: toolEnv(t)}, repo: repo}
	c.mustRun("init", "--mode=bare-user")
	c.mustRun(append(append([]string{"remote", "add"}, gpgRemote(pub)...), "origin", url)...)
	return c
}

// TestStockPullStaticDeltas publishes releases with static deltas and has
// the stock ostree client pull them with --require-static-deltas and GPG
// verification of commits and summary: from scratch, then an update
// through the delta from the release it has; fsck is clean after each,
// and the files arrive intact. A third release drops the deltas to the
// second and keeps two previous releases' deltas to itself.
func TestStockPullStaticDeltas(t *testing.T) {
	requireOstreeGPG(t)
	keys := newKeys(t)
	s := newSite(t, keys)
	src := filepath.Join(t.TempDir(), "src")
	// The 9 MiB file is larger than delta.MaxInlineObject: a fallback.
	makeRichTree(t, src, treeSpec{bigSize: 9 << 20, seed: 7})
	lib := make([]byte, 256<<10)
	if _, err := rand.Read(lib); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "usr/lib/libdemo.so"), lib, 0o644); err != nil {
		t.Fatal(err)
	}
	v1 := s.publishDeltas(t, "10.0.1", src)
	if len(v1.Deltas) != 1 || !v1.Deltas[0].From.IsZero() {
		t.Fatalf("first release got deltas %v, want only the one from scratch", v1.Deltas)
	}
	url, counter := serve(t, s.data)
	c := newDeltaClient(t, url, keys.pgpPub)
	remoteRef := "origin:" + testRef

	counter.reset()
	out := c.mustRun("pull", "--require-static-deltas", "origin", testRef)
	t.Logf("scratch pull: %s", strings.TrimSpace(out))
	if got := c.revParse(remoteRef); got != v1.Commit.String() {
		t.Fatalf("client has %s, published %s", got, v1.Commit)
	}
	if counter.deltas.Load() == 0 {
		t.Fatalf("the pull fetched no delta file")
	}
	if out := c.mustRun("fsck"); !strings.Contains(out, "no errors found") {
		t.Errorf("ostree fsck after the scratch delta:\n%s", out)
	}

	if err := os.WriteFile(filepath.Join(src, "etc/motd"), []byte("Bienvenido a MxOS 10.0.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "usr/bin/nuevo"), []byte("#!/bin/sh\necho nuevo\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A changed library goes as ranges of the old one (open, read-source,
	// write, close), which stock ostree applies from its own copy.
	lib2 := append(append(append([]byte{}, lib[:5000]...), "parche"...), lib[5000:]...)
	if err := os.WriteFile(filepath.Join(src, "usr/lib/libdemo.so"), lib2, 0o644); err != nil {
		t.Fatal(err)
	}
	v2 := s.publishDeltas(t, "10.0.2", src)
	if len(v2.Deltas) != 2 {
		t.Fatalf("second release got deltas %v, want from 10.0.1 and from scratch", v2.Deltas)
	}
	var size int64
	upd := ostree.DeltaID{From: v1.Commit, To: v2.Commit}
	ents, _ := os.ReadDir(filepath.Join(s.repoDir(), filepath.FromSlash(upd.Dir())))
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			size += fi.Size()
		}
	}
	if size == 0 || size > 32<<10 {
		t.Errorf("the update's delta is %d bytes; a 6-byte change to a 256 KiB file should take a few KiB", size)
	}
	counter.reset()
	out = c.mustRun("pull", "--require-static-deltas", "origin", testRef)
	t.Logf("update pull: %s", strings.TrimSpace(out))
	if got := c.revParse(remoteRef); got != v2.Commit.String() {
		t.Fatalf("client has %s after the update, published %s", got, v2.Commit)
	}
	if counter.fromDeltas.Load() == 0 {
		t.Fatalf("the update did not use the delta from 10.0.1")
	}
	if out := c.mustRun("fsck"); !strings.Contains(out, "no errors found") {
		t.Errorf("ostree fsck after the update:\n%s", out)
	}
	dst := filepath.Join(t.TempDir(), "co")
	c.mustRun("checkout", "-U", remoteRef, dst)
	for rel, want := range map[string]string{"etc/motd": "Bienvenido a MxOS 10.0.2\n", "usr/bin/nuevo": "#!/bin/sh\necho nuevo\n", "usr/lib/libdemo.so": string(lib2)} {
		if b, err := os.ReadFile(filepath.Join(dst, rel)); err != nil || string(b) != want {
			t.Errorf("%s in the checkout: %d bytes, %v; want the %d bytes published", rel, len(b), err, len(want))
		}
	}

	// A third release: deltas from 10.0.2, 10.0.1 and scratch; none to 10.0.2.
	if err := os.WriteFile(filepath.Join(src, "etc/motd"), []byte("Bienvenido a MxOS 10.0.3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	v3 := s.publishDeltas(t, "10.0.3", src)
	got, err := s.repo.ListDeltas()
	if err != nil {
		t.Fatal(err)
	}
	want := map[ostree.DeltaID]bool{{From: v2.Commit, To: v3.Commit}: true, {From: v1.Commit, To: v3.Commit}: true, {To: v3.Commit}: true}
	if len(got) != len(want) {
		t.Errorf("stored deltas %v, want %v", got, want)
	}
	for d := range got {
		if !want[d] {
			t.Errorf("stored delta %s should have been pruned", d.Name())
		}
	}
	counter.reset()
	c.mustRun("pull", "--require-static-deltas", "origin", testRef)
	if got := c.revParse(remoteRef); got != v3.Commit.String() || counter.fromDeltas.Load() == 0 {
		t.Fatalf("third pull: client has %s (want %s), %d delta requests", got, v3.Commit, counter.fromDeltas.Load())
	}
	if out := c.mustRun("fsck"); !strings.Contains(out, "no errors found") {
		t.Errorf("ostree fsck after the third release:\n%s", out)
	}
	s.fsck(t)
}
