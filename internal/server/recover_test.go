package server

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/oci/registry"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/sign"
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

// TestRecoverReleases: a channel ref one commit ahead of its newest
// recorded release, with a version the database lacks, is what a release
// cut short leaves; it is moved back and the summary re-signed. Anything
// else that disagrees with the database is left alone.
func TestRecoverReleases(t *testing.T) {
	const ref = "mxos/10/x86_64/testing"
	ctx := context.Background()
	keys := filepath.Join(t.TempDir(), "keys")
	if err := sign.GenerateKeys(keys, sign.GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	signers, err := sign.LoadSigners(keys)
	if err != nil {
		t.Fatal(err)
	}
	verifiers, err := sign.LoadVerifiers(keys)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		published []string // versions published, in order
		recorded  []string // versions the database has
		wantBack  bool     // the ref moves back to the newest recorded
	}{
		{"cut short", []string{"10.0.1", "10.0.2"}, []string{"10.0.1"}, true},
		{"recorded", []string{"10.0.1", "10.0.2"}, []string{"10.0.1", "10.0.2"}, false},
		{"no releases recorded (local publishing)", []string{"10.0.1", "10.0.2"}, nil, false},
		{"two ahead", []string{"10.0.1", "10.0.2", "10.0.3"}, []string{"10.0.1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := t.TempDir()
			repo, err := ostree.Create(filepath.Join(data, "repo"))
			if err != nil {
				t.Fatal(err)
			}
			src := filepath.Join(t.TempDir(), "src")
			p := &release.Publisher{Repo: repo, Signers: signers}
			commits := map[string]ostree.Checksum{}
			for _, v := range tt.published {
				writeFile(t, filepath.Join(src, "etc/os-release"), []byte("VERSION_ID="+v+"\n"))
				res, err := p.Publish(ctx, release.Request{Ref: ref, Version: v, Source: src})
				if err != nil {
					t.Fatal(err)
				}
				commits[v] = res.Commit
			}
			last := commits[tt.published[len(tt.published)-1]]
			store, set := openAPI(t, data)
			for _, v := range tt.recorded {
				if err := store.AddRelease(ctx, db.Release{Channel: "testing", Arch: "x86_64", Version: v, Ref: ref,
					Commit: commits[v].String(), PublishedAt: time.Now(), PublishedBy: "test"}); err != nil {
					t.Fatal(err)
				}
			}
			moved, err := RecoverReleases(ctx, data, store, set, signers, time.Now(), nil)
			if err != nil {
				t.Fatal(err)
			}
			want := last
			if tt.wantBack {
				want = commits[tt.recorded[len(tt.recorded)-1]]
			}
			if got, _ := repo.ResolveRef(ref); got != want {
				t.Errorf("ref is %s after recovery, want %s (moved back: %v)", got, want, moved)
			}
			if (len(moved) == 1) != tt.wantBack {
				t.Errorf("moved back %v, want a move: %v", moved, tt.wantBack)
			}
			sum, raw, err := repo.ReadSummary()
			if err != nil {
				t.Fatal(err)
			}
			if r, ok := sum.Lookup(ref); !ok || r.Checksum != want {
				t.Errorf("the summary lists %s, want %s", r.Checksum, want)
			}
			sig, err := os.ReadFile(filepath.Join(data, "repo", "summary.sig"))
			if err != nil {
				t.Fatal(err)
			}
			md, err := ostree.ParseMetadata(sig)
			if err != nil {
				t.Fatal(err)
			}
			if err := sign.VerifyAll(verifiers, raw, release.SignatureMap(md)); err != nil {
				t.Errorf("summary.sig does not sign the summary: %v", err)
			}
		})
	}
}
