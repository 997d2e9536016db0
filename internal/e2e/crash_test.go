package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/testtool"
	"github.com/mxos-linux/mxos-update/internal/testtool/e2ekit"
)

// makeBulkTree writes that many small text files over 40 directories
// (compressible, like most of an OS tree) plus the blob of makeBlob.
func makeBulkTree(t testing.TB, dir string, files int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 7))
	words := []string{"mxos", "escuela", "gobierno", "kernel", "ostree", "firma", "árbol", "niño", "update", "paquete", "\n"}
	for i := range files {
		p := filepath.Join(dir, fmt.Sprintf("usr/share/pkg%02d/file%04d.txt", i%40, i))
		if i%40 == i {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		var b strings.Builder
		for b.Len() < 500+rng.IntN(2500) {
			b.WriteString(words[rng.IntN(len(words))])
			b.WriteByte(' ')
		}
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	makeBlob(t, dir, 0)
}

// makeBlob replaces the tree's pseudo-random blob (some MB of new content
// per version, so every publish has real work to do).
func makeBlob(t testing.TB, dir string, gen int) {
	t.Helper()
	old, _ := filepath.Glob(filepath.Join(dir, "usr/lib/blob-*.bin"))
	for _, p := range old {
		os.Remove(p)
	}
	writeRandomFile(t, filepath.Join(dir, fmt.Sprintf("usr/lib/blob-%d.bin", gen)), 3<<20, uint64(1000+gen))
}

// mutateBulkTree makes version gen of the tree: the same tenth of the text
// files and the blob change every time, so a publish that follows a killed
// one has the same amount of work to do.
func mutateBulkTree(t testing.TB, dir string, files, gen int) {
	t.Helper()
	for i := 0; i < files; i += 10 {
		p := filepath.Join(dir, fmt.Sprintf("usr/share/pkg%02d/file%04d.txt", i%40, i))
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, "version %d of file %d\n", gen, i)
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	makeBlob(t, dir, gen)
}

// publishCmd is `mxosctl publish` of src as version on testRef, in its own
// process group so that a kill reaches every process it runs.
func publishCmd(data, keys, version, src string, wrap ...string) *exec.Cmd {
	args := append(wrap, mxosctl(), "publish", "--data", data, "--keys", keys, "--ref", testRef, "--version", version, "-q", src)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// killGroup sends SIGKILL to the process group of cmd.
func killGroup(cmd *exec.Cmd) { e2ekit.KillGroup(cmd) }

// killed reports whether Wait's error says the process died of SIGKILL.
func killed(err error) bool { return e2ekit.Killed(err) }

// crashState is what checkRepoAfterCrash found.
type crashState struct {
	ref          ostree.Checksum
	moved        bool  // the ref names a new commit
	summaryErr   error // summary.sig does not sign summary
	summaryStale bool  // the summary does not list the ref's commit
}

// checkRepoAfterCrash checks what must hold whenever a publish stops, at
// any point: the ref names the previous commit or a new, complete one of
// the new version whose parent is the previous one, every object is
// intact (our fsck, with signature checks), and the ref's commit carries
// valid signatures. The state of the summary is returned for the caller.
func checkRepoAfterCrash(t testing.TB, repoDir string, keys *keySet, prev ostree.Checksum, version string) crashState {
	t.Helper()
	repo, err := ostree.Open(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	var st crashState
	st.ref, err = repo.ResolveRef(testRef)
	if err != nil {
		t.Fatalf("ref after the kill: %v", err)
	}
	if st.ref != prev {
		st.moved = true
		cm, err := repo.ReadCommit(st.ref)
		if err != nil {
			t.Fatalf("ref moved to %s, which cannot be read: %v", st.ref, err)
		}
		if cm.Parent != prev || cm.Version() != version {
			t.Errorf("ref moved to %s (version %q, parent %s), want version %s on top of %s", st.ref, cm.Version(), cm.Parent, version, prev)
		}
	}
	if err := repo.CheckComplete(st.ref); err != nil {
		t.Errorf("ref names an incomplete commit: %v", err)
	}
	b, err := repo.ReadMetadata(st.ref, ostree.ObjCommit)
	if err != nil {
		t.Fatal(err)
	}
	md, err := repo.ReadCommitMeta(st.ref)
	if err != nil {
		t.Errorf("commitmeta of %s: %v", st.ref, err)
	}
	if err := release.CommitVerifier(keys.verifiers)(st.ref, b, md); err != nil {
		t.Errorf("the ref's commit %s is not validly signed: %v", st.ref, err)
	}
	rep, err := repo.Fsck(context.Background(), ostree.FsckOptions{VerifyCommit: release.CommitVerifier(keys.verifiers)})
	if err != nil {
		t.Fatalf("fsck: %v", err)
	}
	if len(rep.Errors) > 0 {
		t.Errorf("fsck after the kill found %d problems: %v", len(rep.Errors), errors.Join(rep.Errors...))
	}
	st.summaryErr = verifySummaryPair(repoDir, keys.verifiers)
	if s, _, err := repo.ReadSummary(); err == nil {
		r, ok := s.Lookup(testRef)
		st.summaryStale = !ok || r.Checksum != st.ref
	}
	return st
}

// TestKillPublishLeavesConsistentRepo SIGKILLs `mxosctl publish` at random
// moments, many times over, and checks after every kill that the
// repository is consistent: the ref is the old commit or a complete,
// signed new one, and fsck finds nothing. A final publish without a kill
// must succeed, stock `ostree fsck` must be clean, and the stock client
// must pull the result from the mxos-server binary with GPG verification.
func TestKillPublishLeavesConsistentRepo(t *testing.T) {
	requireOstreeGPG(t)
	const files = 3000
	const iterations = 24
	keys := newKeys(t)
	data := filepath.Join(t.TempDir(), "data")
	src := filepath.Join(t.TempDir(), "src")
	makeBulkTree(t, src, files)
	repoDir := filepath.Join(data, "repo")

	run := func(version string) time.Duration {
		t.Helper()
		start := time.Now()
		cmd := publishCmd(data, keys.dir, version, src)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mxosctl publish %s: %v\n%s", version, err, out)
		}
		return time.Since(start)
	}
	run("10.0.0")
	// The typical duration of publishing a new version: the longer of two.
	mutateBulkTree(t, src, files, 0)
	typical := run("10.0.1a")
	mutateBulkTree(t, src, files, 1)
	typical = max(typical, run("10.0.1"))
	t.Logf("an unkilled publish of a new version takes up to %s", typical)
	repo, err := ostree.Open(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	prev, err := repo.ResolveRef(testRef)
	if err != nil {
		t.Fatal(err)
	}

	seed := uint64(time.Now().UnixNano())
	t.Logf("kill delays from seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	var nKilledBefore, nKilledAfter, nCompleted, nSummaryMismatch int
	for i := 2; i < iterations+2; i++ {
		version := fmt.Sprintf("10.0.%d", i)
		mutateBulkTree(t, src, files, i)
		cmd := publishCmd(data, keys.dir, version, src)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		delay := time.Duration(rng.Int64N(int64(typical) + 1))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		timer := time.AfterFunc(delay, func() { killGroup(cmd) })
		err := cmd.Wait()
		timer.Stop()
		wasKilled := killed(err)
		if err != nil && !wasKilled {
			t.Fatalf("publish %s failed by itself: %v\n%s", version, err, out.String())
		}
		st := checkRepoAfterCrash(t, repoDir, keys, prev, version)
		switch {
		case !wasKilled:
			nCompleted++
			if !st.moved {
				t.Errorf("publish %s exited 0 but the ref did not move", version)
			}
		case st.moved:
			nKilledAfter++
		default:
			nKilledBefore++
		}
		if st.summaryErr != nil {
			nSummaryMismatch++
			t.Logf("kill after %s (publish %s): summary.sig does not sign summary: %v", delay, version, st.summaryErr)
		}
		if t.Failed() {
			t.Fatalf("stopping after iteration %d (kill after %s)", i, delay)
		}
		prev = st.ref
	}
	t.Logf("%d kills before the ref moved, %d after, %d publishes finished first, %d left summary.sig not matching summary",
		nKilledBefore, nKilledAfter, nCompleted, nSummaryMismatch)
	if nKilledBefore == 0 {
		t.Errorf("no kill landed before the ref moved: the delays do not exercise the crash window")
	}

	// Recovery: a plain publish works and leaves everything clean.
	final := fmt.Sprintf("10.0.%d", iterations+2)
	mutateBulkTree(t, src, files, iterations+2)
	run(final)
	st := checkRepoAfterCrash(t, repoDir, keys, prev, final)
	if !st.moved || st.summaryErr != nil || st.summaryStale {
		t.Errorf("after the final publish: moved=%v summary error=%v stale summary=%v", st.moved, st.summaryErr, st.summaryStale)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(repoDir, "tmp", "staging-*")); len(leftovers) != 0 {
		t.Errorf("staging directories left after a clean publish: %v", leftovers)
	}
	env := toolEnv(t)
	if out := mustRunCmd(t, env, "ostree", "--repo="+repoDir, "fsck"); !strings.Contains(out, "no errors found") {
		t.Errorf("stock ostree fsck:\n%s", out)
	}

	// The stock client pulls the result from the mxos-server binary.
	url := startServerBinary(t, data)
	c := newClient(t, env, url, gpgRemote(keys.pgpPub)...)
	c.mustRun("pull", "origin", testRef)
	if got := c.revParse("origin:" + testRef); got != st.ref.String() {
		t.Errorf("stock pull got %s, want %s", got, st.ref)
	}
}

// startServerBinary runs `mxos-server --data data --listen 127.0.0.1:0`
// with any extra flags and returns the repository URL it prints (https
// with --tls-cert).
func startServerBinary(t testing.TB, data string, extra ...string) string {
	t.Helper()
	return e2ekit.StartServer(t, data, extra...)
}

// startServerProcess is startServerBinary that also returns stop
// (e2ekit.StartServerProcess).
func startServerProcess(t testing.TB, data string, extra ...string) (string, func()) {
	t.Helper()
	return e2ekit.StartServerProcess(t, data, extra...)
}

// launchServer starts mxos-server under the wrap command line
// (e2ekit.LaunchServer).
func launchServer(t testing.TB, wrap []string, data string, extra ...string) *e2ekit.ServerProc {
	t.Helper()
	return e2ekit.LaunchServer(t, wrap, data, extra...)
}

// TestKillPublishAtCrashPoints stops `mxosctl publish` at every rename and
// fsync of its final phase, deterministically: strace kills the process
// (SIGKILL) when it makes that call on the step's final path, so the call
// never happens. A point the publish does not reach fails the test; each
// point reached is logged. After each kill the repository must be
// consistent (checkRepoAfterCrash); then the mxos-server binary starts on
// it, and at once (its startup recovery) summary.sig must sign summary,
// and the stock client must pull with GPG verification of the summary
// and the commit; a following publish must leave a clean repository.
//
// The paths must be known before the run: the first release is published
// with a timestamp a year ahead, so every later commit's timestamp is its
// parent's plus one and its checksum the same in every run. A dry run
// learns the checksums; each point then starts from a copy of the first
// release.
func TestKillPublishAtCrashPoints(t *testing.T) {
	const crashFiles = 400
	requireOstreeGPG(t)
	strace := requireStrace(t)
	keys := newKeys(t)
	src := filepath.Join(t.TempDir(), "src")
	makeBulkTree(t, src, crashFiles)
	tmpl := newSite(t, keys)
	ahead := time.Now().Add(365 * 24 * time.Hour)
	p := &release.Publisher{Repo: tmpl.repo, Signers: keys.signers, Now: func() time.Time { return ahead }}
	v1, err := p.Publish(context.Background(), release.Request{Ref: testRef, Version: "10.0.1", Source: src})
	if err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(t.TempDir(), "src")
	copyDir(t, src, work)
	mutateBulkTree(t, work, crashFiles, 2)
	const version = "10.0.2"

	// The dry run: what the publish of version writes.
	dry := cloneSite(t, tmpl)
	if out, err := publishCmd(dry.data, keys.dir, version, work).CombinedOutput(); err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	commit := mustResolve(t, dry.repo)
	cm, err := dry.repo.ReadCommit(commit)
	if err != nil {
		t.Fatal(err)
	}
	blob := lookupFile(t, dry.repo, cm.RootTree, "usr/lib/blob-2.bin")
	obj := func(c ostree.Checksum, typ ostree.ObjectType) string {
		return filepath.FromSlash(ostree.ObjectPath(c, typ))
	}
	refPath := filepath.Join("refs", "heads", filepath.FromSlash(testRef))
	points := []struct {
		name  string
		calls string
		path  string // relative to the repository
		// summaryNew: after recovery the summary lists the new commit.
		summaryNew bool
	}{
		{name: "staged objects synced", calls: syncfsCalls, path: "tmp"},
		{name: "content object renamed in", calls: renameCalls, path: obj(blob, ostree.ObjFile)},
		{name: "root dirtree renamed in", calls: renameCalls, path: obj(cm.RootTree, ostree.ObjDirTree)},
		{name: "commit renamed in", calls: renameCalls, path: obj(commit, ostree.ObjCommit)},
		{name: "visible objects synced", calls: syncfsCalls, path: "objects"},
		{name: "commitmeta renamed in", calls: renameCalls, path: obj(commit, ostree.ObjCommitMeta)},
		{name: "commitmeta directory synced", calls: fsyncCalls, path: filepath.Dir(obj(commit, ostree.ObjCommitMeta))},
		{name: "ref renamed", calls: renameCalls, path: refPath},
		{name: "ref directory synced", calls: fsyncCalls, path: filepath.Dir(refPath)},
		{name: "summary journaled", calls: renameCalls, path: "tmp/summary-next"},
		{name: "summary journal synced", calls: fsyncCalls, path: "tmp", summaryNew: true},
		{name: "summary renamed", calls: renameCalls, path: "summary", summaryNew: true},
		{name: "summary rename synced", calls: fsyncCalls, path: ".", summaryNew: true},
		{name: "summary.sig renamed", calls: renameCalls, path: "summary.sig", summaryNew: true},
	}
	var reached []string
	for _, pt := range points {
		t.Run(pt.name, func(t *testing.T) {
			s := cloneSite(t, tmpl)
			target := filepath.Join(s.repoDir(), pt.path)
			cmd := publishCmd(s.data, keys.dir, version, work, stracePoint(strace, pt.calls, target)...)
			out, err := cmd.CombinedOutput()
			if !killed(err) {
				t.Fatalf("crash point never reached: the publish made no %s on %s (err %v)\n%s", pt.calls, pt.path, err, out)
			}
			reached = append(reached, pt.name)
			t.Logf("reached: killed at the %s on %s", strings.SplitN(pt.calls, ",", 2)[0], pt.path)
			if pt.calls == renameCalls && strings.HasPrefix(pt.path, "objects") {
				if _, err := os.Lstat(target); err == nil {
					t.Errorf("%s exists although the kill came before its rename", pt.path)
				}
			}
			st := checkRepoAfterCrash(t, s.repoDir(), keys, v1.Commit, version)
			if st.moved && st.ref != commit {
				t.Fatalf("ref moved to %s, not to the dry run's %s: the points are not on this run's paths", st.ref, commit)
			}
			if pt.name == "summary.sig renamed" && st.summaryErr == nil {
				t.Errorf("killed between the summary's two renames, yet summary.sig signs summary: the point does not test recovery")
			}

			// The server's startup recovery finishes the summary swap.
			url := startServerBinary(t, s.data)
			if err := verifySummaryPair(s.repoDir(), keys.verifiers); err != nil {
				t.Errorf("after the server started, summary.sig does not sign summary: %v", err)
			}
			sum, _, err := s.repo.ReadSummary()
			if err != nil {
				t.Fatal(err)
			}
			listed, _ := sum.Lookup(testRef)
			if want := map[bool]ostree.Checksum{true: commit, false: v1.Commit}[pt.summaryNew]; listed.Checksum != want {
				t.Errorf("after recovery the summary lists %s, want %s", listed.Checksum, want)
			}
			if leftovers, _ := filepath.Glob(filepath.Join(s.repoDir(), "tmp", "*")); len(leftovers) != 0 {
				t.Errorf("left in tmp/ after the server started: %v", leftovers)
			}
			c := newClient(t, toolEnv(t), url, gpgRemote(keys.pgpPub)...)
			if out, err := c.run("pull", "origin", testRef); err != nil {
				t.Errorf("stock pull after a kill at %q: %v\n%s", pt.name, err, out)
			} else if got := c.revParse("origin:" + testRef); got != listed.Checksum.String() {
				t.Errorf("stock pull got %s, want %s", got, listed.Checksum)
			}

			// The next publish repairs whatever the kill left.
			prev := mustResolve(t, s.repo)
			next := filepath.Join(t.TempDir(), "src")
			copyDir(t, work, next)
			mutateBulkTree(t, next, crashFiles, 9)
			if out, err := publishCmd(s.data, keys.dir, "10.0.9", next).CombinedOutput(); err != nil {
				t.Fatalf("publish after the kill: %v\n%s", err, out)
			}
			st = checkRepoAfterCrash(t, s.repoDir(), keys, prev, "10.0.9")
			if !st.moved || st.summaryErr != nil || st.summaryStale {
				t.Errorf("after the next publish: moved=%v summary error=%v stale summary=%v", st.moved, st.summaryErr, st.summaryStale)
			}
		})
	}
	t.Logf("%d of %d crash points reached: %s", len(reached), len(points), strings.Join(reached, "; "))
}

// The system calls a crash point stops at.
const (
	renameCalls = "rename,renameat,renameat2"
	fsyncCalls  = "fsync,fdatasync"
	syncfsCalls = "syncfs"
)

// stracePoint is the command prefix that runs a program under strace and
// kills it (SIGKILL) at its first call from calls on path (a path
// argument, or a descriptor open on path), before the call is made.
func stracePoint(strace, calls, path string) []string {
	return []string{strace, "-f", "-qq", "-o", os.DevNull, "-P", path, "-e", "trace=" + calls,
		"-e", "inject=" + calls + ":signal=SIGKILL"}
}

// requireStrace returns a strace that can trace here; without one the
// test fails under CI and is skipped elsewhere.
func requireStrace(t testing.TB) string {
	t.Helper()
	requireTool(t, "strace")
	s := usableStrace()
	if s == "" {
		testtool.Missing(t, "strace cannot trace here (ptrace refused)")
	}
	return s
}

// cloneSite copies a site's data directory.
func cloneSite(t testing.TB, s *site) *site {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	copyDir(t, s.data, data)
	repo, err := ostree.Open(filepath.Join(data, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	return &site{data: data, repo: repo, keys: s.keys}
}

// lookupFile returns the content checksum of the file at rel in tree.
func lookupFile(t testing.TB, repo *ostree.Repo, tree ostree.Checksum, rel string) ostree.Checksum {
	t.Helper()
	parts := strings.Split(rel, "/")
	for i, name := range parts {
		dt, err := repo.ReadDirTree(tree)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		if i == len(parts)-1 {
			for _, f := range dt.Files {
				if f.Name == name {
					return f.Checksum
				}
			}
		}
		for _, d := range dt.Dirs {
			if d.Name == name {
				tree, found = d.Tree, true
			}
		}
		if !found {
			break
		}
	}
	t.Fatalf("%s not in the tree", rel)
	return ostree.Checksum{}
}

// usableStrace returns the path of strace if it can trace a program here
// (ptrace may be forbidden in containers), or "".
func usableStrace() string {
	p, err := exec.LookPath("strace")
	if err != nil {
		return ""
	}
	if err := exec.Command(p, "-f", "-qq", "-o", os.DevNull, "--seccomp-bpf", "-e", "trace=fsync", "true").Run(); err != nil {
		return ""
	}
	return p
}

func mustResolve(t testing.TB, repo *ostree.Repo) ostree.Checksum {
	t.Helper()
	c, err := repo.ResolveRef(testRef)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
