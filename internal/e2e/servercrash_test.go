package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiclient "github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/testserver"
)

// serverSite is a data directory for the mxos-server binary with the
// shipped channels, a release key (trusted), an online key (signs the
// summary) and a release token.
type serverSite struct {
	data            string
	release, online *keySet
	token           string
}

// flags are the server flags the site needs.
func (s *serverSite) flags() []string {
	return []string{"--channels", testserver.ChannelsDir(), "--release-keys", s.release.dir, "--online-keys", s.online.dir}
}

// clone copies the site's data directory (the server must be stopped).
func (s *serverSite) clone(t testing.TB) *serverSite {
	t.Helper()
	c := *s
	c.data = filepath.Join(t.TempDir(), "data")
	copyDir(t, s.data, c.data)
	return &c
}

func (s *serverSite) repoDir() string { return filepath.Join(s.data, "repo") }

// publish runs `mxosctl --server URL publish --channel testing` of src as
// version, as the release team does, with the site's release token.
func (s *serverSite) publish(t testing.TB, url, version, src string) (string, error) {
	t.Helper()
	base := strings.TrimSuffix(url, "/repo")
	return runCmd(toolEnv(t, "MXOS_TOKEN="+s.token), mxosctl(), "--server", base, "publish", "--channel", "testing",
		"--arch", "x86_64", "--ramp", "none", "--version", version, "--keys", s.release.dir,
		"--work", filepath.Join(t.TempDir(), "work"), "-q", src)
}

// TestKillServerAtPublishPoints is TestKillPublishAtCrashPoints for the
// server's side of a remote publish (`mxosctl publish --channel`): strace
// kills the mxos-server binary (SIGKILL) at every rename and file-system
// sync of committing an upload session (POST …/uploads/{id}/commit) and
// of accepting the release (commitmeta, ref, summary rewrite), on the
// step's final path. A point the publish never reaches fails the test;
// each point reached is logged. After each kill the server binary starts
// again on the same data directory (server.Recover runs at start), and
// then: the repository is consistent (the ref names the previous release
// or the complete, signed new one; our fsck and stock `ostree fsck` find
// nothing, so no commit is visible without its whole tree), summary.sig
// signs summary, the previous release still pulls with stock ostree and
// GPG verification, and the same publish, run again, succeeds.
//
// The paths are known before the run as in TestKillPublishAtCrashPoints:
// the first release's timestamp is a year ahead, so the next commit's is
// its parent's plus one and its checksum the same in every run.
func TestKillServerAtPublishPoints(t *testing.T) {
	const crashFiles = 100
	requireOstreeGPG(t)
	strace := requireStrace(t)
	tmpl := &serverSite{data: filepath.Join(t.TempDir(), "data"), release: newKeys(t), online: newKeys(t)}
	tmpl.token = hostToken(t, tmpl.data, "--role", "release", "--name", "team")
	src := filepath.Join(t.TempDir(), "src")
	makeBulkTree(t, src, crashFiles)

	// The first release, a year ahead, through the release API.
	url, stop := startServerProcess(t, tmpl.data, tmpl.flags()...)
	c, err := apiclient.New(strings.TrimSuffix(url, "/repo"), tmpl.token)
	if err != nil {
		t.Fatal(err)
	}
	workRepo, err := ostree.Create(filepath.Join(t.TempDir(), "work"))
	if err != nil {
		t.Fatal(err)
	}
	ahead := time.Now().Add(365 * 24 * time.Hour)
	rem := &release.Remote{Server: c, Work: workRepo, Signers: tmpl.release.signers, Now: func() time.Time { return ahead }}
	_, v1, err := rem.Publish(context.Background(), release.RemoteRequest{Channel: "testing", Arch: "x86_64", Ref: testRef,
		Version: "10.0.1", Source: src, Ramp: "none"})
	if err != nil {
		t.Fatal(err)
	}
	stop()
	work := filepath.Join(t.TempDir(), "src")
	copyDir(t, src, work)
	mutateBulkTree(t, work, crashFiles, 2)
	const version = "10.0.2"

	// The dry run: what the publish of version writes.
	dry := tmpl.clone(t)
	url, stop = startServerProcess(t, dry.data, dry.flags()...)
	if out, err := dry.publish(t, url, version, work); err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	stop()
	dryRepo, err := ostree.Open(dry.repoDir())
	if err != nil {
		t.Fatal(err)
	}
	commit := mustResolve(t, dryRepo)
	cm, err := dryRepo.ReadCommit(commit)
	if err != nil {
		t.Fatal(err)
	}
	if cm.Parent != v1 {
		t.Fatalf("the dry run's commit has parent %s, want %s", cm.Parent, v1)
	}
	blob := lookupFile(t, dryRepo, cm.RootTree, "usr/lib/blob-2.bin")
	obj := func(c ostree.Checksum, typ ostree.ObjectType) string {
		return filepath.FromSlash(ostree.ObjectPath(c, typ))
	}
	refPath := filepath.Join("refs", "heads", filepath.FromSlash(testRef))
	points := []struct {
		name  string
		calls string
		path  string // relative to the repository
	}{
		// Committing the upload session.
		{"upload: staged objects synced", syncfsCalls, "tmp/uploads"},
		{"upload: content object renamed in", renameCalls, obj(blob, ostree.ObjFile)},
		{"upload: root dirtree renamed in", renameCalls, obj(cm.RootTree, ostree.ObjDirTree)},
		{"upload: tree synced before its commit", syncfsCalls, "tmp"},
		{"upload: commit renamed in", renameCalls, obj(commit, ostree.ObjCommit)},
		{"upload: visible objects synced", syncfsCalls, "objects"},
		// Accepting the release.
		{"release: commitmeta renamed in", renameCalls, obj(commit, ostree.ObjCommitMeta)},
		{"release: commitmeta directory synced", fsyncCalls, filepath.Dir(obj(commit, ostree.ObjCommitMeta))},
		{"release: ref renamed", renameCalls, refPath},
		{"release: ref directory synced", fsyncCalls, filepath.Dir(refPath)},
		{"summary: journaled", renameCalls, "tmp/summary-next"},
		{"summary: journal synced", fsyncCalls, "tmp"},
		{"summary: renamed", renameCalls, "summary"},
		{"summary: rename synced", fsyncCalls, "."},
		{"summary: summary.sig renamed", renameCalls, "summary.sig"},
	}
	var reached []string
	for _, pt := range points {
		t.Run(pt.name, func(t *testing.T) {
			s := tmpl.clone(t)
			target := filepath.Join(s.repoDir(), pt.path)
			p := launchServer(t, stracePoint(strace, pt.calls, target), s.data, s.flags()...)
			out, perr := s.publish(t, p.URL, version, work)
			if ok, err := p.KilledAtPoint(10 * time.Second); !ok {
				t.Fatalf("crash point never reached: the server made no %s on %s (server: %v; publish: %v)\n%s\n%s",
					pt.calls, pt.path, err, perr, out, p.Stderr.String())
			}
			if perr == nil {
				t.Errorf("the publish succeeded although the server was killed")
			}
			reached = append(reached, pt.name)
			t.Logf("reached: killed at the %s on %s", strings.SplitN(pt.calls, ",", 2)[0], pt.path)
			if pt.calls == renameCalls && strings.HasPrefix(pt.path, "objects") {
				if _, err := os.Lstat(target); err == nil {
					t.Errorf("%s exists although the kill came before its rename", pt.path)
				}
			}
			checkServerAfterCrash(t, s, v1, commit, version)

			// The release team runs the same publish again.
			url, _ := startServerProcess(t, s.data, s.flags()...)
			if out, err := s.publish(t, url, version, work); err != nil {
				t.Fatalf("publishing %s again after the kill: %v\n%s", version, err, out)
			}
			st := checkServerAfterCrash(t, s, v1, commit, version)
			if !st.moved {
				t.Errorf("after publishing again the ref did not move")
			}
			c := newClient(t, toolEnv(t), url, gpgRemote(s.release.pgpPub)...)
			c.mustRun("remote", "gpg-import", "--keyring="+s.online.pgpPub, "origin")
			c.mustRun("pull", "origin", testRef)
			if got := c.revParse("origin:" + testRef); got != st.ref.String() {
				t.Errorf("stock pull after publishing again got %s, want %s", got, st.ref)
			}
		})
	}
	t.Logf("%d of %d crash points reached: %s", len(reached), len(points), strings.Join(reached, "; "))
}

// checkServerAfterCrash starts the server binary on the site (its
// startup recovery runs) and checks what must hold after a kill at any
// point of a remote publish of version on top of prev: the repository is
// consistent (checkRepoAfterCrash; the ref names prev or want), stock
// `ostree fsck` is clean, summary.sig (online key) signs summary and the
// summary lists the ref's commit, and stock ostree pulls that commit with
// GPG verification. The server is stopped again before it returns.
func checkServerAfterCrash(t *testing.T, s *serverSite, prev, want ostree.Checksum, version string) crashState {
	t.Helper()
	url, stop := startServerProcess(t, s.data, s.flags()...)
	defer stop()
	st := checkRepoAfterCrash(t, s.repoDir(), s.release, prev, version)
	if st.moved && st.ref != want {
		t.Fatalf("ref moved to %s, not to the dry run's %s: the points are not on this run's paths", st.ref, want)
	}
	if err := verifySummaryPair(s.repoDir(), s.online.verifiers); err != nil {
		t.Errorf("after the server started, summary.sig does not sign summary: %v", err)
	}
	if st.summaryStale {
		t.Errorf("after the server started, the summary does not list the ref's commit %s", st.ref)
	}
	env := toolEnv(t)
	if out, err := runCmd(env, "ostree", "--repo="+s.repoDir(), "fsck"); err != nil || !strings.Contains(out, "no errors found") {
		t.Errorf("stock ostree fsck after the kill: %v\n%s", err, out)
	}
	c := newClient(t, env, url, gpgRemote(s.release.pgpPub)...)
	c.mustRun("remote", "gpg-import", "--keyring="+s.online.pgpPub, "origin")
	if out, err := c.run("pull", "origin", testRef); err != nil {
		t.Errorf("stock pull after the kill: %v\n%s", err, out)
	} else if got := c.revParse("origin:" + testRef); got != st.ref.String() {
		t.Errorf("stock pull got %s, want %s", got, st.ref)
	}
	return st
}
