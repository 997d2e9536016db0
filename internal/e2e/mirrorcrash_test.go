package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/mirror"
	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// TestKillMirrorAtCrashPoints kills `mxos-server mirror --once` (through
// strace) at each rename and directory fsync on the final paths of a sync
// that brings a new release: the commit, the ref, the static delta, the
// summary journal and swap, the metadata files. After each kill, once the
// mirror has started again (its startup recovery), it must serve a
// consistent copy: summary.sig signs the summary, which names the old or
// the new commit, complete in the repository, and the metadata loads as
// a device loads it. The next sync must then finish on the new release.
func TestKillMirrorAtCrashPoints(t *testing.T) {
	strace := requireStrace(t)
	s := newUpdaterSite(t)
	root := filepath.Join(s.metaDir, "1.root.json")
	tmpl := filepath.Join(t.TempDir(), "mirror")
	args := func(data string) []string {
		return []string{"mirror", "--once", "--data", data, "--upstream", s.ts.URL, "--trusted-root", root, "--trusted-keys", s.ts.Release.Dir}
	}
	if out, err := runCmd(os.Environ(), mxosServer(), args(tmpl)...); err != nil {
		t.Fatalf("first sync: %v\n%s", err, out)
	}
	old := s.commits["10.0.0"]
	v1 := s.publish()
	commit := s.commits[v1]

	// The dry run: what the sync of v1 writes.
	dry := filepath.Join(t.TempDir(), "dry")
	copyDir(t, tmpl, dry)
	if out, err := runCmd(os.Environ(), mxosServer(), args(dry)...); err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	dryRepo, err := ostree.Open(filepath.Join(dry, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	deltas, err := dryRepo.ListDeltas()
	if err != nil || len(deltas) != 1 {
		t.Fatalf("dry run stored deltas %v, %v; want one", deltas, err)
	}
	var deltaDir string
	for id := range deltas {
		deltaDir = filepath.Join("repo", filepath.FromSlash(id.Dir()))
	}
	st := metaState(t, root, filepath.Join(dry, "metadata"))
	snapshot := filepath.Join("metadata", fmt.Sprintf("%d.snapshot.json", st.SnapshotVersion))
	obj := filepath.Join("repo", filepath.FromSlash(ostree.ObjectPath(commit, ostree.ObjCommit)))
	ref := filepath.Join("repo", "refs", "heads", filepath.FromSlash(updaterTestRef))

	points := []struct {
		name, calls, path string
		summaryNew        bool
	}{
		{"commit renamed in", renameCalls, obj, false},
		{"ref renamed", renameCalls, ref, false},
		{"delta renamed in", renameCalls, deltaDir, false},
		{"delta rename synced", fsyncCalls, filepath.Dir(deltaDir), false},
		{"summary journaled", renameCalls, "repo/tmp/summary-next", false},
		{"summary renamed", renameCalls, "repo/summary", true},
		{"summary.sig renamed", renameCalls, "repo/summary.sig", true},
		{"snapshot renamed", renameCalls, snapshot, true},
		{"timestamp renamed", renameCalls, "metadata/timestamp.json", true},
		{"metadata directory synced", fsyncCalls, "metadata", true},
	}
	var reached []string
	for _, pt := range points {
		t.Run(pt.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "mirror")
			copyDir(t, tmpl, data)
			target := filepath.Join(data, pt.path)
			wrap := stracePoint(strace, pt.calls, target)
			cmd := exec.Command(wrap[0], append(append(wrap[1:], mxosServer()), args(data)...)...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			out, err := cmd.CombinedOutput()
			if !killed(err) {
				t.Fatalf("crash point never reached: no %s on %s (err %v)\n%s", pt.calls, pt.path, err, out)
			}
			reached = append(reached, pt.name)

			// What `mxos-server mirror` does first when it starts again.
			repo, err := mirror.Prepare(data)
			if err != nil {
				t.Fatal(err)
			}
			if err := verifySummaryPair(repo.Path(), s.ts.Online.Verifiers); err != nil {
				t.Errorf("summary.sig does not sign summary: %v", err)
			}
			sum, _, err := repo.ReadSummary()
			if err != nil {
				t.Fatal(err)
			}
			listed, _ := sum.Lookup(updaterTestRef)
			if want := map[bool]ostree.Checksum{true: commit, false: old}[pt.summaryNew]; listed.Checksum != want {
				t.Errorf("the summary lists %s, want %s", listed.Checksum, want)
			}
			if err := repo.CheckComplete(listed.Checksum); err != nil {
				t.Errorf("the summary's commit is not complete: %v", err)
			}
			metaState(t, root, filepath.Join(data, "metadata"))

			if out, err := runCmd(os.Environ(), mxosServer(), args(data)...); err != nil {
				t.Fatalf("sync after the kill: %v\n%s", err, out)
			}
			sum, _, err = repo.ReadSummary()
			if err != nil {
				t.Fatal(err)
			}
			if listed, _ := sum.Lookup(updaterTestRef); listed.Checksum != commit {
				t.Errorf("after the next sync the summary lists %s, want %s", listed.Checksum, commit)
			}
			if got := metaState(t, root, filepath.Join(data, "metadata")); got.TimestampVersion != st.TimestampVersion {
				t.Errorf("after the next sync the metadata is at timestamp %d, want %d", got.TimestampVersion, st.TimestampVersion)
			}
		})
	}
	t.Logf("%d of %d crash points reached: %s", len(reached), len(points), strings.Join(reached, "; "))
}

// metaState loads a metadata directory as a device with the shipped root
// and no history would.
func metaState(t testing.TB, root, dir string) *channelmeta.State {
	t.Helper()
	b, err := os.ReadFile(root)
	if err != nil {
		t.Fatal(err)
	}
	c, err := channelmeta.NewClient(channelmeta.ClientConfig{TrustedRoot: b, CacheDir: t.TempDir(), Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Load(context.Background())
	if err != nil {
		t.Fatalf("the mirror's metadata does not load: %v", err)
	}
	return st
}
