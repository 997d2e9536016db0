package ostreeadmin

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
	"github.com/mxos-linux/mxos-update/internal/testserver"
)

const serverRef = "mxos/10/x86_64/stable"

// TestServerCommitDeployAndRollback is the backend's end-to-end proof:
// commits published by our release pipeline, served by mxos-server,
// pulled and verified by the pure-Go puller into the staging repository,
// are deployed, switched and rolled back by stock `ostree admin` on a
// throw-away sysroot, and ostree's own status agrees with what the
// backend reads.
func TestServerCommitDeployAndRollback(t *testing.T) {
	ctx := context.Background()
	s := newSysroot(t, Options{Kargs: []string{"root=LABEL=mxos-root", "quiet"}})

	ts := testserver.Start(t, testserver.Options{RepoOnly: true})
	pub := ts.Publisher
	puller := &pull.Puller{URLs: []string{ts.URL + "/repo"}, Verifiers: ts.Release.Verifiers}
	staging := stagingRepo(t, s)

	// publishAndPull publishes version and pulls it as the agent does.
	publishAndPull := func(version string, current ostree.Checksum) ostree.Checksum {
		t.Helper()
		src := t.TempDir()
		writeTree(t, src, version, true)
		res, err := pub.Publish(ctx, release.Request{Ref: serverRef, Version: version, Source: src})
		if err != nil {
			t.Fatalf("publish %s: %v", version, err)
		}
		opts := pull.Options{ExpectCommit: res.Commit.String()}
		if !current.IsZero() {
			c, err := staging.ReadCommit(current)
			if err != nil {
				t.Fatalf("the running commit is not in the staging repository: %v", err)
			}
			opts.Current, opts.MinTimestamp = current, c.Timestamp
		}
		got, err := puller.Pull(ctx, staging, serverRef, opts)
		if err != nil || got != res.Commit {
			t.Fatalf("pull %s: %s %v", version, got, err)
		}
		return got
	}
	deployServer := func(c ostree.Checksum, version string) sysroot.Deployment {
		t.Helper()
		d, err := s.Deploy(ctx, staging, c, sysroot.Origin{Ref: serverRef, Version: version})
		if err != nil {
			t.Fatalf("deploy %s: %v", version, err)
		}
		return d
	}

	// v1: deploy, switch, boot good.
	c1 := publishAndPull("10.0.1", ostree.Checksum{})
	d1 := deployServer(c1, "10.0.1")
	if err := s.Switch(ctx, d1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BootAttempt(); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkGood(); err != nil {
		t.Fatal(err)
	}
	if got := order(t, s); !equal(got, []string{d1.Name}) {
		t.Fatalf("after v1: %v", got)
	}
	if cur := mustCurrent(t, s); cur.Commit != c1 || cur.Origin.Version != "10.0.1" || cur.Origin.Ref != serverRef {
		t.Fatalf("current after v1: %+v", cur)
	}
	// A local change to /etc, which ostree's 3-way merge must carry over.
	if err := os.WriteFile(filepath.Join(d1.Path, "etc/motd"), []byte("Escuela 42\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// v2: staged, then the default; v1 kept as the rollback target.
	c2 := publishAndPull("10.0.2", c1)
	d2 := deployServer(c2, "10.0.2")
	if err := s.Switch(ctx, d2); err != nil {
		t.Fatal(err)
	}
	status, err := s.AdminStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(status) != 2 || status[0].Name != d2.Name || status[0].Commit != c2 || status[0].Version != "10.0.2" ||
		status[1].Name != d1.Name || status[1].Commit != c1 || status[1].Version != "10.0.1" {
		t.Fatalf("ostree admin status after v2: %+v", status)
	}
	order(t, s)
	if p := mustPrevious(t, s); p.Name != d1.Name {
		t.Fatalf("previous %s, want %s", p.Name, d1.Name)
	}
	for rel, want := range map[string]string{"usr/bin/hello": "10.0.2", "etc/motd": "Escuela 42", "etc/os-release": "MxOS 10.0.2"} {
		b, err := os.ReadFile(filepath.Join(d2.Path, rel))
		if err != nil || !strings.Contains(string(b), want) {
			t.Fatalf("v2 %s = %q (%v), want %q", rel, b, err, want)
		}
	}
	entry := defaultEntry(t, s)
	if !strings.Contains(entry, "root=LABEL=mxos-root") || !strings.Contains(entry, "linux /ostree/mxos-") || !strings.Contains(entry, "MxOS 10.0.2") {
		t.Fatalf("default boot entry:\n%s", entry)
	}

	// v2 fails: rollback.
	if n, err := s.BootAttempt(); err != nil || n != sysroot.DefaultBootTries-1 {
		t.Fatalf("boot of v2: %d %v", n, err)
	}
	if err := s.Rollback(ctx, "required check app failed"); err != nil {
		t.Fatal(err)
	}
	if got := order(t, s); !equal(got, []string{d1.Name}) {
		t.Fatalf("after rollback: %v", got)
	}
	if cur := mustCurrent(t, s); cur.Commit != c1 || cur.Origin.Version != "10.0.1" {
		t.Fatalf("current after rollback: %+v", cur)
	}
	if bad, _ := s.IsBad(c2); !bad {
		t.Fatal("10.0.2 not marked bad")
	}
	if exists(d2.Path) {
		t.Fatal("10.0.2 still deployed")
	}
	if entry := defaultEntry(t, s); !strings.Contains(entry, "MxOS 10.0.1") {
		t.Fatalf("default boot entry after rollback:\n%s", entry)
	}
	if _, err := s.Deploy(ctx, staging, c2, sysroot.Origin{}); !isErr(err, sysroot.ErrBadCommit) {
		t.Fatalf("deploy of the rolled-back commit: %v", err)
	}

	// GC keeps the running commit in the staging repository, so the next
	// pull only fetches what changed.
	if err := s.GC(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := staging.CheckComplete(c1); err != nil {
		t.Fatalf("gc dropped the running commit from the staging repository: %v", err)
	}
	c3 := publishAndPull("10.0.3", c1)
	d3 := deployServer(c3, "10.0.3")
	if err := s.Switch(ctx, d3); err != nil {
		t.Fatal(err)
	}
	if got := order(t, s); !equal(got, []string{d3.Name, d1.Name}) {
		t.Fatalf("after v3: %v", got)
	}
}

// defaultEntry returns the boot loader entry ostree boots by default
// (the highest version).
func defaultEntry(t testing.TB, s *Sysroot) string {
	t.Helper()
	dir := filepath.Join(s.Path(), "boot", "loader", "entries")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	best, bestV := "", ""
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		be, err := parseBLS(b)
		if err != nil {
			t.Fatal(err)
		}
		if best == "" || versionLess(bestV, be.Version) {
			best, bestV = string(b), be.Version
		}
	}
	return best
}
