package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/auth"
	apiclient "github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
	"github.com/mxos-linux/mxos-update/internal/testserver"
	"github.com/mxos-linux/mxos-update/internal/testtool/e2ekit"
)

// The device side's crash safety: `mxos-updater upgrade` is killed with
// SIGKILL at random moments (and, with strace, at each rename and fsync
// it makes), and after every kill the device must still boot (current
// names a complete deployment whose files match its commit), its local
// store must fsck clean, and the next upgrade must finish on the newest
// version.

const updaterTestRef = "mxos/10/x86_64/testing"

// mxosUpdater builds the mxos-updater binary once for the test binary.
func mxosUpdater(t testing.TB) string {
	t.Helper()
	return e2ekit.MxosUpdater(t)
}

// updaterSite is a running server with signed channel metadata and a
// device sysroot configured for mxos-updater.
type updaterSite struct {
	t        testing.TB
	ctx      context.Context
	rem      *release.Remote
	admin    *apiclient.Client
	verifier []sign.Verifier
	config   string // the device's config file
	metaDir  string // the server's DATA/metadata
	online   string // the server's online key directory
	root     string // the device's sysroot
	src      string // the release tree, mutated per version
	rollout  string
	commits  map[string]ostree.Checksum
	ts       *testserver.Server
	next     int // next patch version to publish
}

// memTempDir is a temporary directory on tmpfs when the machine has one.
// A SIGKILL loses nothing the page cache holds, so tmpfs changes nothing
// these tests check, and it spares them the cost of syncfs on a disk
// shared with other work.
func memTempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("/dev/shm", "mxos-crash-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func newUpdaterSite(t testing.TB) *updaterSite { return newUpdaterSiteChannels(t, "") }

// newUpdaterSiteChannels is newUpdaterSite with the server's channel
// definitions from channelsDir (this repository's when empty).
func newUpdaterSiteChannels(t testing.TB, channelsDir string) *updaterSite {
	t.Helper()
	ctx := context.Background()
	// Set up as the README says: the online key signs the summary, the
	// device trusts the release keys and root.json.
	ts := testserver.Start(t, testserver.Options{DataDir: memTempDir(t), Metadata: true, OnlineSummaryKey: true, Serve: true,
		Roles: []auth.Role{auth.RoleRelease, auth.RoleDevice}, ChannelsDir: channelsDir})
	rel, relMeta, metaDir, tokens, url := keySetOf(ts.Release), ts.MetaSigners, ts.MetaDir, ts.Tokens, ts.URL
	admin := ts.Client(t, auth.RoleRelease)
	work, err := ostree.Create(filepath.Join(memTempDir(t), "work"))
	if err != nil {
		t.Fatal(err)
	}
	s := &updaterSite{t: t, ctx: ctx, admin: admin, verifier: rel.verifiers, commits: map[string]ostree.Checksum{}, ts: ts,
		metaDir: metaDir, online: ts.Online.Dir,
		rem: &release.Remote{Server: admin, Work: work, Signers: rel.signers, MetaSigners: relMeta}}

	// A small tree: 120 files in 12 directories, a symlink, /etc defaults.
	s.src = filepath.Join(t.TempDir(), "src")
	for i := range 120 {
		p := filepath.Join(s.src, fmt.Sprintf("usr/share/pkg%02d/file%03d.txt", i%12, i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, bytes.Repeat([]byte(fmt.Sprintf("archivo %d de MxOS\n", i)), 20+i), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for p, c := range map[string]string{"usr/etc/hostname": "mxos\n", "usr/etc/motd": "Bienvenido\n"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(s.src, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.src, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("share/pkg00/file000.txt", filepath.Join(s.src, "usr/first")); err != nil {
		t.Fatal(err)
	}

	// The device: installed with the first release, configured for the
	// binary.
	dev := memTempDir(t)
	s.root = filepath.Join(dev, "sysroot")
	rootJSON, err := os.ReadFile(filepath.Join(metaDir, "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"root.json": string(rootJSON),
		"token":     tokens[auth.RoleDevice] + "\n",
		"config.yaml": "server: " + url + "\ndevice_id: lab-pc-crash\nchannel: testing\narch: x86_64\n" +
			"token_file: " + filepath.Join(dev, "token") + "\ntrusted_keys: " + rel.dir + "\ntrusted_root: " +
			filepath.Join(dev, "root.json") + "\nsysroot: " + s.root + "\nhealth_dir: " + filepath.Join(dev, "health") + "\n",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dev, n), []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dev, "health", "required.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	s.config = filepath.Join(dev, "config.yaml")
	v0 := s.publish()
	sys, err := sysroot.Open(s.root)
	if err != nil {
		t.Fatal(err)
	}
	local, err := ostree.Create(sys.RepoPath())
	if err != nil {
		t.Fatal(err)
	}
	c, err := (&pull.Puller{URLs: []string{url + "/repo"}}).Pull(ctx, local, updaterTestRef,
		pull.Options{SummaryKeys: ts.Online.Verifiers, CommitKeys: rel.verifiers})
	if err != nil {
		t.Fatal(err)
	}
	d, err := sys.Deploy(ctx, local, c, sysroot.Origin{Ref: updaterTestRef, Version: v0, Commit: c.String()})
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.Switch(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := sys.MarkGood(); err != nil {
		t.Fatal(err)
	}
	return s
}

// publish makes the next version on testing, changing a tenth of the
// files, and rolls it out to everyone. It returns the version.
func (s *updaterSite) publish() string {
	s.t.Helper()
	gen := s.next
	s.next++
	version := fmt.Sprintf("10.0.%d", gen)
	for i := gen % 10; i < 120; i += 10 {
		p := filepath.Join(s.src, fmt.Sprintf("usr/share/pkg%02d/file%03d.txt", i%12, i))
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			s.t.Fatal(err)
		}
		fmt.Fprintf(f, "versión %s\n", version)
		if err := f.Close(); err != nil {
			s.t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(s.src, "usr/etc/os-release"), []byte("VERSION_ID="+version+"\n"), 0o644); err != nil {
		s.t.Fatal(err)
	}
	if s.rollout != "" {
		if _, err := s.admin.RolloutAction(s.ctx, s.rollout, apiclient.ActionComplete, "next release"); err != nil {
			s.t.Fatal(err)
		}
	}
	u0 := uint32(0)
	_, c, err := s.rem.Publish(s.ctx, release.RemoteRequest{Channel: "testing", Arch: "x86_64", Ref: updaterTestRef,
		Version: version, Source: s.src, Ramp: "100%", Options: ostree.CommitOptions{OwnerUID: &u0, OwnerGID: &u0, NoXattrs: true}})
	if err != nil {
		s.t.Fatalf("publish %s: %v", version, err)
	}
	ros, err := s.admin.Rollouts(s.ctx, "testing")
	if err != nil {
		s.t.Fatal(err)
	}
	for _, ro := range ros {
		if ro.Version == version {
			s.rollout = ro.ID
		}
	}
	s.commits[version] = c
	return version
}

// cmd is `mxos-updater ARGS` in its own process group, optionally under
// a wrapper (strace).
func (s *updaterSite) cmd(wrap []string, args ...string) *exec.Cmd {
	all := append(append([]string{}, wrap...), mxosUpdater(s.t), "--config", s.config)
	all = append(all, args...)
	c := exec.Command(all[0], all[1:]...)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return c
}

// run runs mxos-updater to completion.
func (s *updaterSite) run(args ...string) string {
	s.t.Helper()
	out, err := s.cmd(nil, args...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("mxos-updater %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// checkDevice checks, without repairing anything first, what must hold
// whenever the updater stops: current (and previous, if set) name
// complete deployments whose files match their commits, and the local
// store fscks clean. It returns the current deployment's version.
func (s *updaterSite) checkDevice() string {
	s.t.Helper()
	repo, err := ostree.Open(filepath.Join(s.root, "repo"))
	if err != nil {
		s.t.Fatal(err)
	}
	var version string
	for _, link := range []string{"current", "previous"} {
		target, err := os.Readlink(filepath.Join(s.root, link))
		if link == "previous" && errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			s.t.Fatalf("%s: %v", link, err)
		}
		name := strings.TrimPrefix(target, "deploy/")
		sum, err := ostree.ParseChecksum(strings.SplitN(name, ".", 2)[0])
		if err != nil {
			s.t.Fatalf("%s -> %s: %v", link, target, err)
		}
		var origin sysroot.Origin
		b, err := os.ReadFile(filepath.Join(s.root, target+".origin"))
		if err == nil {
			err = json.Unmarshal(b, &origin)
		}
		if err != nil {
			s.t.Errorf("%s -> %s: origin: %v", link, target, err)
		}
		if err := checkDeploymentFiles(repo, filepath.Join(s.root, target), sum); err != nil {
			s.t.Errorf("%s -> %s does not match its commit: %v", link, target, err)
		}
		if link == "current" {
			version = origin.Version
		}
	}
	// A switched update must still get its health verdict at the next
	// boot: the updater's state names the current deployment as pending,
	// or the sysroot's own pending boot does.
	cur, _ := os.Readlink(filepath.Join(s.root, "current"))
	cur = strings.TrimPrefix(cur, "deploy/")
	var agent struct {
		Deployment string `json:"deployment"`
		Pending    bool   `json:"pending"`
	}
	var sysState struct {
		Pending string `json:"pending"`
		Booted  string `json:"booted"`
	}
	readJSON := func(name string, v any) {
		b, err := os.ReadFile(filepath.Join(s.root, name))
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if err == nil {
			err = json.Unmarshal(b, v)
		}
		if err != nil {
			s.t.Errorf("%s: %v", name, err)
		}
	}
	readJSON("mxos-updater.json", &agent)
	readJSON("state.json", &sysState)
	if cur != sysState.Booted && !(agent.Pending && agent.Deployment == cur) {
		s.t.Errorf("current is the new deployment %s, but the updater state (%+v) does not wait for its health verdict", cur, agent)
	}
	if cur != sysState.Booted && sysState.Pending != cur {
		s.t.Errorf("current is the new deployment %s, but the sysroot's pending boot is %q", cur, sysState.Pending)
	}
	rep, err := repo.Fsck(s.ctx, ostree.FsckOptions{VerifyCommit: release.CommitVerifier(s.verifier)})
	if err != nil {
		s.t.Fatalf("fsck: %v", err)
	}
	for _, e := range rep.Errors {
		s.t.Errorf("fsck of the device's store: %v", e)
	}
	return version
}

// checkDeploymentFiles compares a deployment with its commit: every
// directory, regular file (bytes and permission bits) and symlink of the
// commit is there (etc/ is generated from usr/etc and merged, so only its
// existence is checked).
func checkDeploymentFiles(repo *ostree.Repo, dir string, commit ostree.Checksum) error {
	cm, err := repo.ReadCommit(commit)
	if err != nil {
		return err
	}
	var walk func(rel string, tree ostree.Checksum) error
	walk = func(rel string, tree ostree.Checksum) error {
		dt, err := repo.ReadDirTree(tree)
		if err != nil {
			return err
		}
		for _, f := range dt.Files {
			p := filepath.Join(dir, rel, f.Name)
			cr, err := repo.OpenContent(f.Checksum)
			if err != nil {
				return err
			}
			want, err := io.ReadAll(cr)
			cr.Close()
			if err != nil {
				return err
			}
			if cr.Header.IsSymlink() {
				if got, err := os.Readlink(p); err != nil || got != cr.Header.SymlinkTarget {
					return fmt.Errorf("symlink %s: %q, %v", p, got, err)
				}
				continue
			}
			st, err := os.Lstat(p)
			if err != nil {
				return err
			}
			if st.Mode().Perm() != ostree.FileMode(cr.Header.Mode).Perm() || !st.Mode().IsRegular() {
				return fmt.Errorf("%s: mode %v, want %v", p, st.Mode(), ostree.FileMode(cr.Header.Mode))
			}
			got, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if !bytes.Equal(got, want) {
				return fmt.Errorf("%s: content differs", p)
			}
		}
		for _, d := range dt.Dirs {
			if rel == "" && d.Name == "etc" {
				continue
			}
			if err := walk(filepath.Join(rel, d.Name), d.Tree); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk("", cm.RootTree); err != nil {
		return err
	}
	if st, err := os.Stat(filepath.Join(dir, "etc")); err != nil || !st.IsDir() {
		return fmt.Errorf("no etc/ in %s: %v", dir, err)
	}
	return nil
}

// killRuns is the number of killed upgrades: 50 by default, MXOS_SOAK=N
// for a soak run.
func killRuns(t testing.TB) int {
	if v := os.Getenv("MXOS_SOAK"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("MXOS_SOAK=%q: want a number of runs", v)
		}
		return n
	}
	return 50
}

// killedUpgrade runs `mxos-updater upgrade` under wrap and kills it after
// delay (0: no timer, the wrapper kills it). It returns whether the
// process died of SIGKILL.
func (s *updaterSite) killedUpgrade(wrap []string, delay time.Duration) bool {
	s.t.Helper()
	cmd := s.cmd(wrap, "upgrade")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	var timer *time.Timer
	if delay > 0 {
		timer = time.AfterFunc(delay, func() { killGroup(cmd) })
	}
	err := cmd.Wait()
	if timer != nil {
		timer.Stop()
	}
	if err != nil && !killed(err) {
		s.t.Fatalf("upgrade failed by itself: %v\n%s", err, out.String())
	}
	return killed(err)
}

// finish runs the upgrade to its end and the boot step, and checks the
// newest version is the default.
func (s *updaterSite) finish(want string) {
	s.t.Helper()
	s.run("upgrade")
	if got := s.checkDevice(); got != want {
		s.t.Fatalf("after a full upgrade the default is %q, want %q", got, want)
	}
	// A deployment completed by a killed run is reused, not made again.
	if _, err := os.Lstat(filepath.Join(s.root, "deploy", s.commits[want].String()+".1")); err == nil {
		s.t.Errorf("%s was deployed twice: the deployment left by the killed run was not reused", want)
	}
	s.run("boot")
	ents, err := os.ReadDir(filepath.Join(s.root, "deploy"))
	if err != nil {
		s.t.Fatal(err)
	}
	if n := len(ents); n > 4 { // current and previous, each with its .origin
		names := []string{}
		for _, e := range ents {
			names = append(names, e.Name())
		}
		s.t.Errorf("after a good boot %d deployment entries are left (old ones not collected): %v", n, names)
	}
}

// stage says how far a killed upgrade to want got.
func (s *updaterSite) stage(want, current string) string {
	c := s.commits[want]
	switch {
	case current == want:
		return "switched"
	case dirExists(filepath.Join(s.root, "deploy", c.String()+".0")):
		return "deployed"
	case fileExists(filepath.Join(s.root, "repo", ostree.ObjectPath(c, ostree.ObjCommit))):
		return "downloaded"
	default:
		return "downloading or earlier"
	}
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// TestKillUpgradeAtRandom kills `mxos-updater upgrade` at random moments:
// 50 times (MXOS_SOAK=N for more), each followed by the device checks
// and, every second or third kill, by an upgrade run to the end, the boot
// step and the publication of a newer version.
func TestKillUpgradeAtRandom(t *testing.T) {
	s := newUpdaterSite(t)
	runs := killRuns(t)
	mxosUpdater(t)
	// The typical duration of an upgrade: the longer of two.
	var typical time.Duration
	for range 3 {
		want := s.publish()
		start := time.Now()
		s.run("upgrade")
		d := time.Since(start)
		t.Logf("upgrade: %s", d)
		typical = max(typical, d)
		s.finish(want)
	}
	want := s.publish()
	t.Logf("an unkilled upgrade takes up to %s", typical)
	start := time.Now()

	seed := uint64(time.Now().UnixNano())
	t.Logf("kill delays from seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	var nKilled, nFinished, nSwitched int
	stages := map[string]int{}
	// Runs go on until runs upgrades were really killed: on a loaded
	// machine many upgrades may finish before their kill, which only
	// costs time (and checks a finished upgrade).
	for i := 0; nKilled < runs; i++ {
		if i >= 4*runs {
			t.Fatalf("only %d of %d runs were killed: the delays miss the upgrade", nKilled, i)
		}
		delay := time.Duration(1 + rng.Int64N(int64(typical)))
		wasKilled := s.killedUpgrade(nil, delay)
		if wasKilled {
			nKilled++
		} else {
			nFinished++
		}
		got := s.checkDevice()
		if got == want {
			nSwitched++
		}
		if wasKilled {
			stages[s.stage(want, got)]++
		}
		if t.Failed() {
			t.Fatalf("run %d (kill after %s) left the device broken", i, delay)
		}
		if !wasKilled || i%3 == 2 {
			s.finish(want)
			want = s.publish()
		}
	}
	t.Logf("%d killed runs, %d finished first, %d left the new version as default; %s",
		nKilled, nFinished, nSwitched, time.Since(start).Round(time.Millisecond))
	t.Logf("kills by the step reached: %v", stages)
	s.finish(want)
}

// TestKillBootGCAtCrashPoints stops `mxos-updater boot` through strace
// (SIGKILL) at each step of removing the oldest deployment after a good
// boot: the deployment renamed aside, the deploy directory synced, its
// commit pruned from the local repository, the repository synced before
// trees and content go, its root dirtree pruned. A point never reached
// fails the test. After each kill the device must still boot (current and
// previous complete, the store fscks clean), the next `boot` must finish
// the clean-up, and the next upgrade must finish.
func TestKillBootGCAtCrashPoints(t *testing.T) {
	strace := requireStrace(t)
	s := newUpdaterSite(t)
	repo := filepath.Join(s.root, "repo")
	obj := func(c ostree.Checksum, typ ostree.ObjectType) string {
		return filepath.Join(repo, ostree.ObjectPath(c, typ))
	}
	root := func(c ostree.Checksum) ostree.Checksum {
		r, err := ostree.Open(repo)
		if err != nil {
			t.Fatal(err)
		}
		cm, err := r.ReadCommit(c)
		if err != nil {
			t.Fatal(err)
		}
		return cm.RootTree
	}
	points := []struct {
		name  string
		calls string
		path  func(old ostree.Checksum) string
	}{
		{"old deployment renamed aside", renameCalls, func(c ostree.Checksum) string { return filepath.Join(s.root, "deploy", c.String()+".0") }},
		{"deploy directory synced", fsyncCalls, func(ostree.Checksum) string { return filepath.Join(s.root, "deploy") }},
		{"old commit pruned", unlinkCalls, func(c ostree.Checksum) string { return obj(c, ostree.ObjCommit) }},
		{"commits' removal synced", syncfsCalls, func(ostree.Checksum) string { return filepath.Join(repo, "objects") }},
		{"old root dirtree pruned", unlinkCalls, func(c ostree.Checksum) string { return obj(root(c), ostree.ObjDirTree) }},
	}
	// Two good boots, then an upgrade not yet judged: the next good boot
	// removes the oldest of three deployments.
	var versions []string
	for range 2 {
		v := s.publish()
		s.finish(v)
		versions = append(versions, v)
	}
	for _, pt := range points {
		v := s.publish()
		s.run("upgrade")
		versions = append(versions, v)
		old := s.commits[versions[len(versions)-3]]
		p := pt.path(old)
		if _, err := os.Lstat(p); err != nil {
			t.Fatalf("%s: %s is not there before the boot: %v", pt.name, p, err)
		}
		cmd := s.cmd(stracePoint(strace, pt.calls, p), "boot")
		out, err := cmd.CombinedOutput()
		if !killed(err) {
			t.Errorf("%s: crash point never reached: the boot made no %s on %s (%v)\n%s", pt.name, pt.calls, p, err, out)
			s.run("boot")
			continue
		}
		t.Logf("reached %q: killed at the %s on %s", pt.name, strings.SplitN(pt.calls, ",", 2)[0], strings.TrimPrefix(p, s.root+"/"))
		if got := s.checkDevice(); got != v {
			t.Errorf("%s: after the kill the default is %q, want %q", pt.name, got, v)
		}
		if t.Failed() {
			t.Fatalf("killed at %q: the device is broken", pt.name)
		}
		s.run("boot")
		if _, err := os.Lstat(filepath.Join(s.root, "deploy", old.String()+".0")); err == nil {
			t.Errorf("%s: the next boot did not remove the old deployment", pt.name)
		}
		if _, err := os.Lstat(obj(old, ostree.ObjCommit)); err == nil {
			t.Errorf("%s: the next boot did not prune the old commit", pt.name)
		}
		s.checkDevice()
	}
	s.finish(s.publish())
}

// TestKillUpgradeAtEachStep stops the upgrade deterministically at each
// step that makes something visible or durable: strace kills mxos-updater
// when it renames a file onto the step's path, or fsyncs the step's
// directory (strace -P), so the call never happens. A step never reached
// fails the test. After each kill the device is checked and the next
// upgrade must finish.
func TestKillUpgradeAtEachStep(t *testing.T) {
	strace := requireStrace(t)
	s := newUpdaterSite(t)
	obj := func(c ostree.Checksum, typ ostree.ObjectType) string {
		return filepath.Join(s.root, "repo", ostree.ObjectPath(c, typ))
	}
	points := []struct {
		name  string
		calls string // renameCalls unless set
		path  func(c ostree.Checksum) string
	}{
		{"trusted timestamp saved", "", func(ostree.Checksum) string { return filepath.Join(s.root, "channel-metadata", "timestamp.json") }},
		{"trusted snapshot saved", "", func(ostree.Checksum) string { return filepath.Join(s.root, "channel-metadata", "snapshot.json") }},
		{"trusted targets saved", "", func(ostree.Checksum) string { return filepath.Join(s.root, "channel-metadata", "targets.json") }},
		{"commit object stored", "", func(c ostree.Checksum) string { return obj(c, ostree.ObjCommit) }},
		{"commit signatures stored", "", func(c ostree.Checksum) string { return obj(c, ostree.ObjCommitMeta) }},
		{"local ref moved", "", func(ostree.Checksum) string { return filepath.Join(s.root, "repo", "refs", "heads", updaterTestRef) }},
		{"local ref synced", fsyncCalls, func(ostree.Checksum) string {
			return filepath.Join(s.root, "repo", "refs", "heads", filepath.Dir(updaterTestRef))
		}},
		{"deployment origin file synced", fsyncCalls, func(c ostree.Checksum) string {
			return filepath.Join(s.root, "deploy", c.String()+".0.origin.tmp")
		}},
		{"deployment origin written", "", func(c ostree.Checksum) string { return filepath.Join(s.root, "deploy", c.String()+".0.origin") }},
		{"deployment origin synced", fsyncCalls, func(ostree.Checksum) string { return filepath.Join(s.root, "deploy") }},
		{"deployment renamed into place", "", func(c ostree.Checksum) string { return filepath.Join(s.root, "deploy", c.String()+".0") }},
		{"updater state file synced", fsyncCalls, func(ostree.Checksum) string { return filepath.Join(s.root, "mxos-updater.json.tmp") }},
		{"updater state written", "", func(ostree.Checksum) string { return filepath.Join(s.root, "mxos-updater.json") }},
		// The first fsync of the sysroot directory: the ones after
		// state.json, previous and current sync the same directory, which
		// strace -P cannot tell apart; a SIGKILL there leaves what a kill
		// at the next rename leaves.
		{"updater state directory synced", fsyncCalls, func(ostree.Checksum) string { return s.root }},
		{"pending boot file synced", fsyncCalls, func(ostree.Checksum) string { return filepath.Join(s.root, "state.json.tmp") }},
		{"pending boot recorded", "", func(ostree.Checksum) string { return filepath.Join(s.root, "state.json") }},
		{"previous moved", "", func(ostree.Checksum) string { return filepath.Join(s.root, "previous") }},
		{"current moved", "", func(ostree.Checksum) string { return filepath.Join(s.root, "current") }},
	}
	for _, pt := range points {
		want := s.publish()
		p := pt.path(s.commits[want])
		calls := pt.calls
		if calls == "" {
			calls = renameCalls
		}
		if !s.killedUpgrade(stracePoint(strace, calls, p), 0) {
			t.Errorf("%s: crash point never reached: the upgrade made no %s on %s", pt.name, calls, p)
			continue
		}
		t.Logf("reached %q: killed at the %s on %s", pt.name, strings.SplitN(calls, ",", 2)[0], strings.TrimPrefix(p, s.root+"/"))
		if _, err := os.Lstat(p); err == nil && calls == renameCalls && strings.Contains(p, s.commits[want].String()) {
			t.Errorf("%s: %s exists although the kill came before its rename", pt.name, p)
		}
		if pt.name == "updater state directory synced" {
			// The kill came after the agent state was renamed in and
			// before the switch: the point is the one it is named for.
			if _, err := os.Lstat(filepath.Join(s.root, "mxos-updater.json.tmp")); err == nil {
				t.Errorf("%s: mxos-updater.json.tmp is still there: the kill came before the state's rename", pt.name)
			}
			if cur, _ := os.Readlink(filepath.Join(s.root, "current")); strings.Contains(cur, s.commits[want].String()) {
				t.Errorf("%s: current already names the new deployment: the kill came after the switch", pt.name)
			}
		}
		s.checkDevice()
		if t.Failed() {
			t.Fatalf("killed at %q: the device is broken", pt.name)
		}
		s.finish(want)
	}
}
