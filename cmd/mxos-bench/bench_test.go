package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/storage/storagetest"
	"github.com/mxos-linux/mxos-update/internal/testtool"
	"github.com/mxos-linux/mxos-update/internal/testtool/pgtest"
)

// TestMain lets the test binary stand in for mxos-bench when the benchmark
// re-executes itself for its server and publisher children.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// requirePeers skips without the peers on a developer machine, and fails
// in CI, where .ci/run must have installed them.
func requirePeers(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"ostree", "nginx"} {
		testtool.Require(t, tool)
	}
}

// TestQuick runs every subcommand with --quick, in process (its children
// are this test binary re-executed), and checks the table and the JSON.
func TestQuick(t *testing.T) {
	testtool.SkipIfShort(t, "runs servers and ostree")
	requirePeers(t)
	work := t.TempDir()
	tests := []struct {
		sub  string
		rows []string // row name prefixes the table must have
	}{
		{"serve", []string{
			"serve small objects (", "serve small objects: server CPU", "serve small objects: server peak RSS",
			"serve large objects (", "serve large objects: server CPU", "serve large objects: server peak RSS",
		}},
		{"publish", []string{
			"publish dir (", "publish dir: CPU time", "publish dir: peak RSS", "publish dir: repository size",
			"publish tar (", "publish tar: CPU time", "publish tar: peak RSS", "publish tar: repository size",
		}},
		{"pull", []string{"pull (", "pull: server CPU", "pull: server peak RSS", "pull: ostree client CPU"}},
		{"check", []string{"check requests/s (2000 devices, SQLite, c=8)", "check p99 latency (SQLite)", "check p50 latency (SQLite)", "check: server CPU (SQLite)", "check: server memory per registered device (SQLite)",
			"check p99 latency, open loop at ", "check p50 latency, open loop at ", "check answered/s, open loop at "}},
		{"devpull", []string{
			"devpull cold (", "devpull cold: bytes sent", "devpull cold: requests", "devpull cold: bytes on the wire", "devpull cold: client CPU", "devpull cold: server CPU",
			"devpull update from release 1 (", "devpull update: bytes sent", "devpull update: requests", "devpull update: bytes on the wire", "devpull update: client CPU", "devpull update: server CPU",
		}},
		{"deltas", []string{
			"delta update 1→2: bytes", "delta update 1→2 vs loose-object pull", "delta update 1→2: generation",
			"delta from scratch: bytes", "delta from scratch vs loose-object pull", "delta from scratch: generation",
			"delta apply 1→2: our puller, our delta", "delta apply 1→2: our puller, client CPU", "delta apply 1→2: our puller, bytes sent",
			"delta apply 1→2: ostree pull, our delta", "delta apply 1→2: ostree pull of our delta, client CPU",
		}},
		// Builds distribution v3 with the go tool on first use (cached).
		{"registry", []string{"registry blob pulls 1 MB (", "registry blob pulls 1 MB: server CPU", "registry blob pulls 8 MB (", "registry blob pulls 8 MB: server CPU"}},
	}
	for _, tt := range tests {
		t.Run(tt.sub, func(t *testing.T) {
			jsonPath := filepath.Join(t.TempDir(), "results.json")
			args := []string{tt.sub, "--quick", "--work", work, "--json", jsonPath}
			var stdout, stderr bytes.Buffer
			if code := run(args, &stdout, &stderr); code != 0 {
				t.Fatalf("mxos-bench %s exited %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, &stdout, &stderr)
			}
			out := stdout.String()
			t.Logf("stdout:\n%s", out)
			if want := "$ mxos-bench " + strings.Join(args, " ") + "\n"; !strings.HasPrefix(out, want) {
				t.Errorf("output does not start with the command line %q", want)
			}
			var rep Report
			b, err := os.ReadFile(jsonPath)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &rep); err != nil {
				t.Fatalf("results JSON: %v", err)
			}
			if len(rep.Rows) != len(tt.rows) {
				t.Errorf("got %d rows, want %d", len(rep.Rows), len(tt.rows))
			}
			for i, prefix := range tt.rows {
				if i >= len(rep.Rows) {
					break
				}
				row := rep.Rows[i]
				if !strings.HasPrefix(row.Name, prefix) {
					t.Errorf("row %d is %q, want %q...", i, row.Name, prefix)
				}
				if row.Peer == "(none)" { // an absolute figure of ours alone (check memory)
					if !(row.Ours > 0 && row.Absolute) {
						t.Errorf("row %q: want an absolute figure > 0: %+v", row.Name, row)
					}
				} else if !(row.Ours > 0 && row.Theirs > 0 && row.Ratio > 0) {
					t.Errorf("row %q: figures must be > 0: ours %v, peer %v, ratio %v", row.Name, row.Ours, row.Theirs, row.Ratio)
				}
				if len(row.OursSamples) != 1 || len(row.TheirsSamples) != 1 {
					t.Errorf("row %q: want one sample per side with --quick, got %v and %v", row.Name, row.OursSamples, row.TheirsSamples)
				}
				if !strings.Contains(out, row.Name) {
					t.Errorf("table lacks row %q", row.Name)
				}
				if row.Target > 0 && row.Pass == nil {
					t.Errorf("row %q has a target but no result", row.Name)
				}
			}
			if tt.sub == "check" {
				if p99 := rep.Rows[1]; !p99.Absolute || p99.Target != checkP99Limit || p99.Unit != "ms" {
					t.Errorf("p99 row: want an absolute target of %d ms, got %+v", checkP99Limit, p99)
				}
				if p99 := rep.Rows[5]; !p99.Absolute || p99.Target != checkP99Limit || !strings.HasSuffix(p99.Name, "(SQLite)") {
					t.Errorf("open-loop p99 row: want an absolute target of %d ms, got %+v", checkP99Limit, p99)
				}
				if !strings.Contains(out, "< 10 ms") || !strings.Contains(out, "were 200 with a valid CheckResponse") || !strings.Contains(out, "Poisson arrivals") {
					t.Error("table lacks the p99 target or the answer check")
				}
			}
			if !strings.Contains(out, "targets met") {
				t.Error("table lacks the summary line")
			}
		})
	}
	t.Run("fleet", func(t *testing.T) { quickFleet(t, work) })
	// The work directory was given, so generated inputs stay for reuse,
	// but every measured repository is gone.
	if ents, err := os.ReadDir(filepath.Join(work, "runs")); err == nil {
		for _, e := range ents {
			sub, _ := os.ReadDir(filepath.Join(work, "runs", e.Name()))
			if len(sub) > 0 {
				t.Errorf("runs/%s was not cleaned up: %d entries", e.Name(), len(sub))
			}
		}
	}
}

// quickFleet runs `mxos-bench fleet` small (2,000 devices, 3 s of
// capacity and about 10 s at the fleet's cadence, 200 checks/s): three
// real mxos-server replicas behind nginx on one PostgreSQL and one
// versitygw bucket, a publish, a halt and a kill -9 of one replica in the
// middle. It asserts what the issue promises: no client-visible error
// outside the kill window, the halt obeyed by every replica within 2 s,
// every report the clients saw accepted in the database (a report wait
// spreads them over the kill), the release recorded once.
func quickFleet(t *testing.T, work string) {
	if storagetest.FindVersityGW() == "" {
		testtool.Missing(t, "versitygw not found in PATH or GOPATH/bin (go install github.com/versity/versitygw/cmd/versitygw@"+storagetest.VersityGWVersion+")")
		return
	}
	if _, err := pgtest.Find(); err != nil {
		testtool.Missing(t, err.Error())
		return
	}
	jsonPath := filepath.Join(t.TempDir(), "results.json")
	args := []string{"fleet", "--quick", "--work", work, "--json", jsonPath}
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run(args, &stdout, &stderr)
	t.Logf("stdout:\n%s\nstderr:\n%s", &stdout, &stderr)
	if code != 0 {
		t.Fatalf("mxos-bench %s exited %d", strings.Join(args, " "), code)
	}
	t.Logf("mxos-bench fleet --quick took %s", time.Since(start).Round(time.Second))
	var rep Report
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("results JSON: %v", err)
	}
	row := func(prefix string) Row {
		t.Helper()
		for _, r := range rep.Rows {
			if strings.HasPrefix(r.Name, prefix) {
				return r
			}
		}
		t.Fatalf("no row %q...", prefix)
		return Row{}
	}
	if r := row("fleet checks/s at capacity (2000 devices, 3 replicas behind nginx"); r.Ours <= 0 {
		t.Errorf("%s: %v", r.Name, r.Ours)
	}
	if r := row("fleet p99 latency at capacity"); r.Ours <= 0 || r.Target != fleetP99Limit || r.Pass == nil {
		t.Errorf("%s: want a figure with the %d ms target: %+v", r.Name, fleetP99Limit, r)
	}
	if r := row("fleet checks answered/s at the fleet's rate (200/s)"); r.Ours < 100 {
		t.Errorf("%s: %v, want about 200", r.Name, r.Ours)
	}
	if r := row("fleet client-visible errors outside the kill window"); r.Ours != 0 {
		t.Errorf("%s: %v", r.Name, r.Ours)
	}
	if r := row("fleet halt visible on every replica"); r.Ours <= 0 || r.Ours >= 2000 {
		t.Errorf("%s: %v ms, want under 2000", r.Name, r.Ours)
	}
	if r := row("fleet reports accepted"); r.Ours < 4 {
		t.Errorf("%s: %v, want at least the 4 of the device asked directly", r.Name, r.Ours)
	}
	if r := row("fleet reports lost"); r.Ours != 0 {
		t.Errorf("%s: %v", r.Name, r.Ours)
	}
	row("fleet requests nginx retried on another replica")
	row("fleet PostgreSQL transactions/s at capacity")
	out := stdout.String()
	for _, want := range []string{"recorded: testing 1, stable 1 (want 1 each)", "kill -9 of replica 2", "targets met"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestLatencyHist: buckets are contiguous, and quantiles land within the
// histogram's resolution of the true values.
func TestLatencyHist(t *testing.T) {
	for i := 1; i < 256+56*128; i++ {
		if histUpper(i-1)+1 != histLower(i) {
			t.Fatalf("bucket %d starts at %d, bucket %d ends at %d", i, histLower(i), i-1, histUpper(i-1))
		}
		if histIndex(histLower(i)) != i || histIndex(histUpper(i)) != i {
			t.Fatalf("bucket %d: [%d, %d] maps to %d and %d", i, histLower(i), histUpper(i), histIndex(histLower(i)), histIndex(histUpper(i)))
		}
	}
	h := &latencyHist{}
	for v := 1; v <= 10000; v++ {
		h.record(time.Duration(v) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5 * time.Millisecond}, {0.99, 9900 * time.Microsecond}, {1, 10 * time.Millisecond}} {
		got := h.quantile(c.q)
		if got < c.want || float64(got) > float64(c.want)*1.008 {
			t.Errorf("quantile(%v) = %v, want %v (+0.8%%)", c.q, got, c.want)
		}
	}
}

func TestMissingPeerFails(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"publish", "--quick", "--ostree", "/nonexistent/ostree"}, &stdout, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "apt-get install") {
		t.Fatalf("exit %d, stderr %q: want a failure naming the install command", code, &stderr)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"500MB": 500e6, "64MiB": 64 << 20, "1.5GB": 1.5e9, "4096": 4096, "16k": 16 << 10, "2 GiB": 2 << 30,
	} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
		if back, err := parseSize(formatSize(got)); err != nil || back != got {
			t.Errorf("formatSize(%d) = %q does not parse back: %d, %v", got, formatSize(got), back, err)
		}
	}
	for _, in := range []string{"", "MB", "-1", "1XB", "NaN"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) succeeded", in)
		}
	}
}

// TestGenerateTreeDeterministic: the same spec gives the same bytes, and
// the tree has every kind of entry.
func TestGenerateTreeDeterministic(t *testing.T) {
	spec := treeSpec{Files: 1200, Size: 3e6, Seed: 7}
	var sums [2]string
	var stats [2]treeStats
	for i := range sums {
		dir := filepath.Join(t.TempDir(), "tree")
		st, err := generateTree(dir, spec)
		if err != nil {
			t.Fatal(err)
		}
		stats[i] = st
		sums[i] = hashTree(t, dir)
	}
	if sums[0] != sums[1] {
		t.Error("two trees from the same spec differ")
	}
	st := stats[0]
	if st.Files+st.Symlinks+st.Hardlinks != spec.Files || st.Symlinks == 0 || st.Hardlinks == 0 || st.Dirs == 0 {
		t.Errorf("unexpected tree: %s", st)
	}
	if st.Bytes < spec.Size*9/10 || st.Bytes > spec.Size*11/10 {
		t.Errorf("tree has %d bytes, want about %d", st.Bytes, spec.Size)
	}
}

func hashTree(t *testing.T, root string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v %d\n", rel, fi.Mode(), fi.Size())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintln(h, target)
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
