package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
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
func killGroup(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

// killed reports whether Wait's error says the process died of SIGKILL.
func killed(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && (ws.Signaled() && ws.Signal() == syscall.SIGKILL || ws.ExitStatus() == 128+int(syscall.SIGKILL))
}

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
// with extra flags and returns the repository URL it prints.
func startServerBinary(t testing.TB, data string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	args := append([]string{"--data", data, "--listen", "127.0.0.1:0", "--log-level", "warn"}, extra...)
	cmd := exec.CommandContext(ctx, mxosServer(), args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		err := cmd.Wait() // context.Canceled even after a clean exit
		if ps := cmd.ProcessState; ps == nil || !ps.Success() {
			t.Errorf("mxos-server did not stop cleanly on SIGTERM: %v, %v\n%s", ps, err, stderr.String())
		}
	})
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		re := regexp.MustCompile(`http://127\.0\.0\.1:[0-9]+/repo`)
		for sc.Scan() {
			if u := re.FindString(sc.Text()); u != "" {
				urls <- u
				break
			}
		}
		for sc.Scan() { // keep draining
		}
	}()
	select {
	case u := <-urls:
		return u
	case <-time.After(20 * time.Second):
		t.Fatalf("mxos-server printed no URL:\n%s", stderr.String())
		return ""
	}
}

// TestKillPublishAtCrashPoints stops `mxosctl publish` at each step of its
// final phase, deterministically: a watcher sees the temporary file of the
// step appear (inotify) and kills the process before that file is renamed
// into place (with strace, every fsync is slowed down so the kill always
// lands first). After each kill the repository must be consistent (see
// checkRepoAfterCrash), summary.sig must still sign summary, the stock
// client must pull with GPG verification, and a following publish must
// leave a clean repository.
func TestKillPublishAtCrashPoints(t *testing.T) {
	const crashFiles = 400
	requireOstreeGPG(t)
	keys := newKeys(t)
	src := filepath.Join(t.TempDir(), "src")
	makeBulkTree(t, src, crashFiles)
	strace := usableStrace()
	if strace == "" {
		t.Log("no usable strace: kills race the renames they must precede; points missed 5 times are skipped")
	}

	points := []struct {
		name  string
		dir   string         // relative to the repository; "objects/*" = any object dir
		match *regexp.Regexp // temporary file name
	}{
		{name: "objects being renamed into place", dir: "objects/*", match: regexp.MustCompile(`^[0-9a-f]{62}\.(filez|dirtree|dirmeta|commit)$`)},
		{name: "commitmeta being written", dir: "objects/*", match: regexp.MustCompile(`^\.tmp-[0-9a-f]{62}\.commitmeta-`)},
		{name: "ref being written", dir: "refs/heads/mxos/10/x86_64", match: regexp.MustCompile(`^\.tmp-testing-`)},
		{name: "summary being written", dir: ".", match: regexp.MustCompile(`^\.tmp-summary-`)},
		{name: "summary.sig being written", dir: ".", match: regexp.MustCompile(`^\.tmp-summary\.sig-`)},
	}
	for _, pt := range points {
		t.Run(pt.name, func(t *testing.T) {
			s := newSite(t, keys)
			v1 := s.publish(t, "10.0.1", src)
			work := filepath.Join(t.TempDir(), "src")
			copyDir(t, src, work)
			mutateBulkTree(t, work, crashFiles, 2)

			var hit string
			var st crashState
			for attempt := 0; attempt < 5 && hit == ""; attempt++ {
				version := fmt.Sprintf("10.0.%d", 2+attempt)
				prev := mustResolve(t, s.repo)
				var wrap []string
				if strace != "" {
					wrap = []string{strace, "-f", "-qq", "-o", os.DevNull, "--seccomp-bpf", "-e", "trace=fsync,fdatasync,syncfs",
						"-e", "inject=fsync,fdatasync,syncfs:delay_enter=200000"}
				}
				cmd := publishCmd(s.data, keys.dir, version, work, wrap...)
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				w := newKillWatcher(t, s.repoDir(), pt.dir, pt.match)
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				w.start(cmd)
				err := cmd.Wait()
				path := w.stop()
				switch {
				case !killed(err):
					if err != nil {
						t.Fatalf("publish %s failed by itself: %v\n%s", version, err, out.String())
					}
					t.Logf("attempt %d: publish finished before the crash point was seen", attempt)
				case path == "":
					t.Fatalf("publish %s was killed, but not by the watcher", version)
				case strings.HasPrefix(filepath.Base(path), ".tmp-"):
					if _, err := os.Lstat(path); err == nil {
						hit = path
					} else {
						t.Logf("attempt %d: killed too late, %s was already renamed", attempt, filepath.Base(path))
					}
				default:
					hit = path // killed while objects were being renamed in
				}
				st = checkRepoAfterCrash(t, s.repoDir(), keys, prev, version)
				if t.Failed() {
					break
				}
			}
			if hit == "" && !t.Failed() {
				t.Skipf("could not stop the publish at %q in 5 attempts (install strace to make this deterministic)", pt.name)
			}
			t.Logf("killed with %s present", strings.TrimPrefix(hit, s.repoDir()+"/"))
			if st.summaryErr != nil {
				t.Errorf("after a kill at %q, summary.sig does not sign summary, so every client with gpg-verify-summary=true is refused until the next publish: %v", pt.name, st.summaryErr)
			}
			if st.summaryStale {
				t.Logf("after a kill at %q the summary still lists the previous commit although the ref moved: clients get the old release until the next publish", pt.name)
			}
			url, _ := serve(t, s.data)
			c := newClient(t, toolEnv(t), url, gpgRemote(keys.pgpPub)...)
			if out, err := c.run("pull", "origin", testRef); err != nil {
				t.Errorf("stock pull after a kill at %q: %v\n%s", pt.name, err, out)
			}

			// The next publish repairs whatever the kill left.
			prev := mustResolve(t, s.repo)
			mutateBulkTree(t, work, crashFiles, 9)
			cmd := publishCmd(s.data, keys.dir, "10.0.9", work)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("publish after the kill: %v\n%s", err, out)
			}
			st = checkRepoAfterCrash(t, s.repoDir(), keys, prev, "10.0.9")
			if !st.moved || st.summaryErr != nil || st.summaryStale {
				t.Errorf("after the next publish: moved=%v summary error=%v stale summary=%v", st.moved, st.summaryErr, st.summaryStale)
			}
			if v1.Commit == st.ref {
				t.Errorf("ref did not move")
			}
		})
	}
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

// killWatcher kills a process group when a file whose name matches
// appears (is created, or renamed into) one of the watched directories.
type killWatcher struct {
	t     testing.TB
	f     *os.File
	match *regexp.Regexp
	done  chan struct{}
	path  string // what matched

	mu   sync.Mutex
	dirs map[int32]string
}

func newKillWatcher(t testing.TB, repoDir, dir string, match *regexp.Regexp) *killWatcher {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatalf("inotify: %v", err)
	}
	w := &killWatcher{t: t, f: os.NewFile(uintptr(fd), "inotify"), dirs: map[int32]string{}, match: match, done: make(chan struct{})}
	var dirs []string
	if dir == "objects/*" {
		dirs, _ = filepath.Glob(filepath.Join(repoDir, "objects", "??"))
		dirs = append(dirs, filepath.Join(repoDir, "objects"))
	} else {
		dirs = []string{filepath.Join(repoDir, dir)}
	}
	for _, d := range dirs {
		if err := w.add(d); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func (w *killWatcher) add(dir string) error {
	wd, err := unix.InotifyAddWatch(int(w.f.Fd()), dir, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_ONLYDIR)
	if err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	w.mu.Lock()
	w.dirs[int32(wd)] = dir
	w.mu.Unlock()
	return nil
}

// start watches in the background for cmd, which must have been started.
// Temporary files (".tmp-…") match when created, objects when renamed in.
func (w *killWatcher) start(cmd *exec.Cmd) {
	go func() {
		defer close(w.done)
		buf := make([]byte, 64<<10)
		for {
			n, err := w.f.Read(buf)
			if err != nil {
				return // closed
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				wd := int32(binary.NativeEndian.Uint32(buf[off:]))
				mask := binary.NativeEndian.Uint32(buf[off+4:])
				nameLen := int(binary.NativeEndian.Uint32(buf[off+12:]))
				name := string(bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+nameLen], "\x00"))
				off += unix.SizeofInotifyEvent + nameLen
				w.mu.Lock()
				dir := w.dirs[wd]
				w.mu.Unlock()
				if mask&unix.IN_ISDIR != 0 {
					if filepath.Base(dir) == "objects" {
						_ = w.add(filepath.Join(dir, name)) // a new objects/XX
					}
					continue
				}
				tmp := strings.HasPrefix(name, ".tmp-")
				if w.match.MatchString(name) && (tmp && mask&unix.IN_CREATE != 0 || !tmp && mask&unix.IN_MOVED_TO != 0) {
					killGroup(cmd)
					w.path = filepath.Join(dir, name)
					return
				}
			}
		}
	}()
}

// stop ends the watch and returns the path that triggered the kill, or "".
func (w *killWatcher) stop() string {
	w.f.Close()
	<-w.done
	return w.path
}
