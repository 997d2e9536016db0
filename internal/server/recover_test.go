package server

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mxos-linux/mxos-update/internal/oci/registry"
	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// crashedData is a data directory as a crash between the summary's two
// renames leaves it, with a dead writer's staging directory and upload
// sessions, one stale and one fresh, in the repository and the registry.
func crashedData(t *testing.T, now time.Time) string {
	t.Helper()
	data := t.TempDir()
	repoDir := filepath.Join(data, "repo")
	if _, err := ostree.Create(repoDir); err != nil {
		t.Fatal(err)
	}
	old := now.Add(-48 * time.Hour)
	files := map[string]string{
		"repo/summary":                      "new summary",
		"repo/summary.sig":                  "old sig",
		"repo/tmp/summary-next/summary.sig": "new sig",
		"repo/tmp/staging-dead/obj-1":       "x",
		"repo/tmp/uploads/stale/x":          "x",
		"repo/tmp/uploads/fresh/x":          "x",
		"oci/uploads/stale/data":            "x",
		"oci/uploads/fresh/data":            "x",
	}
	for p, c := range files {
		p = filepath.Join(data, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"repo/tmp/uploads/stale", "oci/uploads/stale/data"} {
		if err := os.Chtimes(filepath.Join(data, p), old, old); err != nil {
			t.Fatal(err)
		}
	}
	return data
}

func TestRecoverFinishesWhatACrashLeft(t *testing.T) {
	now := time.Now()
	data := crashedData(t, now)
	st, err := Recover(data, registry.Options{}, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !st.RepoRecovered || !st.SummaryPending || st.StaleUploads != 1 || st.StaleRegistry != 1 {
		t.Errorf("stats %+v", st)
	}
	read := func(p string) string {
		b, _ := os.ReadFile(filepath.Join(data, p))
		return string(b)
	}
	if got := read("repo/summary.sig"); got != "new sig" {
		t.Errorf("summary.sig %q after recovery, want the journaled one", got)
	}
	for p, want := range map[string]bool{
		"repo/tmp/summary-next": false, "repo/tmp/staging-dead": false,
		"repo/tmp/uploads/stale": false, "repo/tmp/uploads/fresh": true,
		"oci/uploads/stale": false, "oci/uploads/fresh": true,
	} {
		if _, err := os.Stat(filepath.Join(data, p)); (err == nil) != want {
			t.Errorf("%s: exists=%v after recovery, want %v", p, err == nil, want)
		}
	}
}

func TestRecoverLeavesALiveWriterAlone(t *testing.T) {
	now := time.Now()
	data := crashedData(t, now)
	lf, err := os.OpenFile(filepath.Join(data, "repo", ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	st, err := Recover(data, registry.Options{}, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !st.RepoBusy || st.RepoRecovered {
		t.Errorf("stats %+v, want the repository left to its writer", st)
	}
	if _, err := os.Stat(filepath.Join(data, "repo", "tmp", "staging-dead")); err != nil {
		t.Errorf("a live writer's staging directory was touched: %v", err)
	}
}

func TestRecoverEmptyDataDir(t *testing.T) {
	if _, err := Recover(t.TempDir(), registry.Options{}, time.Now(), nil); err != nil {
		t.Fatalf("Recover on an empty data directory: %v", err)
	}
}
