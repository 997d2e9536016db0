package updater

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/bundle"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/testserver"
)

// makeBundle writes a bundle of version (empty: the channel's current
// release) of channel from the honest server, as mxosctl bundle create
// does.
func (e *hostileEnv) makeBundle(channel, version string) string {
	e.t.Helper()
	root, err := os.ReadFile(e.agent.Cfg.TrustedRoot)
	if err != nil {
		e.t.Fatal(err)
	}
	dir := filepath.Join(e.t.TempDir(), "usb")
	if _, err := bundle.Create(e.ctx, bundle.CreateOptions{Server: e.upstream, Channel: channel, Arch: "x86_64", Version: version,
		TrustedRoot: root, ReleaseKeys: e.verifier, Out: dir}); err != nil {
		e.t.Fatalf("bundle of %s %s: %v", channel, version, err)
	}
	return dir
}

// noNetwork makes every request of the device fail, and the test too.
func (e *hostileEnv) noNetwork() {
	e.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		e.t.Errorf("the device used the network during an offline install: %s %s", r.Method, r.URL.Path)
		http.Error(w, "no network", http.StatusServiceUnavailable)
		return true
	})
}

// A bundle installed on a device with no network (every request fails the
// test): the same deploy as a network update, the reports queued on disk.
// When the server can be reached again, the next check sends them, each
// once, oldest first; a later check sends nothing more.
func TestBundleInstallOfflineThenReportsSentOnce(t *testing.T) {
	e := newHostileEnv(t)
	e.release("10.0.3", nil)
	dir := e.makeBundle("stable", "")

	e.noNetwork()
	changed, err := e.agent.UpgradeFrom(e.ctx, dir)
	if err != nil || !changed {
		t.Fatalf("install from the bundle: changed=%v err=%v\n%s", changed, err, e.out)
	}
	st, err := e.agent.Status(e.ctx)
	if err != nil || st.Current == nil || st.Current.Version != "10.0.3" || st.Current.Commit != e.commits["stable/10.0.3"] {
		t.Fatalf("status after the bundle: %+v %v", st.Current, err)
	}
	e.fsck()
	if n := e.agent.QueuedReports(); n != 3 { // download started, finished, deployed
		t.Fatalf("%d reports queued, want 3", n)
	}
	// The booted check runs with the server still down: its report waits
	// too, behind the others.
	e.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return true
	})
	if err := e.agent.Boot(e.ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.agent.QueuedReports(); n != 4 {
		t.Fatalf("%d reports queued after boot, want 4\n%s", n, e.out)
	}

	// The server is back: count what reaches it.
	var mu sync.Mutex
	var got []api.ReportRequest
	e.setHook(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/api/v1/report" {
			b, _ := io.ReadAll(r.Body)
			var rep api.ReportRequest
			json.Unmarshal(b, &rep)
			mu.Lock()
			got = append(got, rep)
			mu.Unlock()
			r.Body = io.NopCloser(strings.NewReader(string(b)))
		}
		return false
	})
	for range 2 {
		if _, err := e.agent.Check(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var events []string
	for i, r := range got {
		events = append(events, string(r.Event))
		if i > 0 && r.Seq <= got[i-1].Seq {
			t.Errorf("reports out of order: %+v", got)
		}
	}
	want := "download-started download-finished deployed health-ok"
	if strings.Join(events, " ") != want {
		t.Errorf("reports that reached the server: %q, want %q", events, want)
	}
	if n := e.agent.QueuedReports(); n != 0 {
		t.Errorf("%d reports still queued", n)
	}
}

// Bundles a technician must not be able to install: each is refused with
// a message that says why, and the device is left exactly as it was.
func TestBundleRefused(t *testing.T) {
	e := newHostileEnv(t)
	e.release("10.0.3", nil)
	good := e.makeBundle("stable", "")
	testingB := e.makeBundle("testing", "10.0.3")
	// Warm the device's metadata cache as an honest run would, so that
	// nothing a refusal leaves behind can hide in the snapshot.
	if _, err := e.agent.channelState(e.ctx); err != nil {
		t.Fatal(err)
	}
	m, err := bundle.Open(good)
	if err != nil {
		t.Fatal(err)
	}
	commit, _ := ostree.ParseChecksum(m.Commit)

	cases := []struct {
		name   string
		src    string
		mutate func(t *testing.T, dir string)
		now    time.Duration
		want   []string
	}{
		{"not a bundle", good, func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, bundle.ManifestFile)) },
			0, []string{"not a usable update bundle"}},
		{"tampered object", good, func(t *testing.T, dir string) { flipLargestFile(t, filepath.Join(dir, "repo", "objects"), ".filez") },
			0, []string{"do not match their signatures", "download of 10.0.3"}},
		{"tampered commit", good, func(t *testing.T, dir string) {
			flip(t, filepath.Join(dir, "repo", filepath.FromSlash(ostree.ObjectPath(commit, ostree.ObjCommit))))
		}, 0, []string{"download of 10.0.3"}},
		{"signatures removed", good, func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "repo", filepath.FromSlash(ostree.ObjectPath(commit, ostree.ObjCommitMeta))))
		}, 0, []string{"download of 10.0.3", "not signed"}},
		{"tampered summary", good, func(t *testing.T, dir string) { flip(t, filepath.Join(dir, "repo", "summary")) },
			0, []string{"download of 10.0.3", "summary"}},
		{"tampered metadata", good, func(t *testing.T, dir string) { extendExpiry(t, filepath.Join(dir, "metadata", "timestamp.json")) },
			0, []string{"update refused", "channel metadata", "timestamp"}},
		{"manifest names another version", good, func(t *testing.T, dir string) { editManifest(t, dir, "10.0.3", "10.0.9") },
			0, []string{"does not allow version 10.0.9"}},
		{"manifest names another commit", good, func(t *testing.T, dir string) {
			editManifest(t, dir, m.Commit, e.commits["stable/10.0.2"])
		}, 0, []string{"does not allow version 10.0.3"}},
		{"another arch", good, func(t *testing.T, dir string) { editManifest(t, dir, "x86_64", "aarch64") },
			0, []string{"this bundle is for channel stable on aarch64, but this machine follows stable on x86_64"}},
		{"another channel", testingB, nil, 0, []string{"this bundle is for channel testing on x86_64, but this machine follows stable"}},
		{"older release", good, func(t *testing.T, dir string) {
			// A stick made when 10.0.1 was current (the e2e test makes a real one).
			editManifest(t, dir, m.Commit, e.commits["stable/10.0.1"])
			editManifest(t, dir, `"10.0.3"`, `"10.0.1"`)
		}, 0, []string{"this bundle holds version 10.0.1, older than the installed 10.0.2"}},
		{"expired metadata", good, nil, 8 * 24 * time.Hour, []string{"update refused", "expired", "date and time"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "usb")
			copyTree(t, c.src, dir)
			if c.mutate != nil {
				c.mutate(t, dir)
			}
			before := e.snapshot()
			if c.now != 0 {
				e.agent.Now = func() time.Time { return time.Now().Add(c.now) }
				defer func() { e.agent.Now = nil }()
			}
			e.noNetwork()
			defer e.setHook(nil)
			changed, err := e.agent.UpgradeFrom(e.ctx, dir)
			if err == nil || changed {
				t.Fatalf("changed=%v err=%v, want a refusal", changed, err)
			}
			t.Logf("refused: %v", err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if b, a := fmt.Sprintf("%+v", before), fmt.Sprintf("%+v", e.snapshot()); b != a {
				t.Errorf("the bundle changed the device:\nbefore %s\nafter  %s", b, a)
			}
			e.fsck()
			if st, err := e.agent.Status(e.ctx); err != nil || st.Current == nil || st.Current.Version != "10.0.2" {
				t.Errorf("status: %+v %v", st.Current, err)
			}
		})
	}
	// After all that, the untouched bundle still installs.
	e.noNetwork()
	defer e.setHook(nil)
	if changed, err := e.agent.UpgradeFrom(e.ctx, good); err != nil || !changed {
		t.Fatalf("the good bundle: changed=%v err=%v", changed, err)
	}
}

func flip(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// flipLargestFile flips a byte of the largest file under dir whose name
// ends in suffix.
func flipLargestFile(t *testing.T, dir, suffix string) {
	t.Helper()
	var best string
	var size int64 = -1
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() && strings.HasSuffix(p, suffix) && info.Size() > size {
			best, size = p, info.Size()
		}
		return nil
	})
	if best == "" {
		t.Fatalf("no %s file under %s", suffix, dir)
	}
	flip(t, best)
}

func editManifest(t *testing.T, dir, old, new string) {
	t.Helper()
	p := filepath.Join(dir, bundle.ManifestFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), old, new)
	if s == string(b) {
		t.Fatalf("manifest has no %q", old)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// extendExpiry moves a signed metadata file's expiry a year on, as
// someone who wants an old stick to keep working would, without signing.
func extendExpiry(t *testing.T, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	signed := f["signed"].(map[string]any)
	exp, err := time.Parse(time.RFC3339, signed["expires"].(string))
	if err != nil {
		t.Fatal(err)
	}
	signed["expires"] = exp.AddDate(1, 0, 0).Format(time.RFC3339)
	if b, err = json.Marshal(f); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A delta bundle (--from-release): only the commit, its signatures and
// the server's static delta from the named release, no loose objects. It
// installs on a machine that runs that release, through every check, and
// is refused on one that runs another.
func TestBundleDelta(t *testing.T) {
	e := newHostileEnv(t)
	e.release("10.0.3", map[string]string{"usr/share/new": "new in 10.0.3\n"})
	root, err := os.ReadFile(e.agent.Cfg.TrustedRoot)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(from ...string) string {
		dir := filepath.Join(t.TempDir(), "usb")
		if _, err := bundle.Create(e.ctx, bundle.CreateOptions{Server: e.upstream, Channel: "stable", Arch: "x86_64",
			TrustedRoot: root, ReleaseKeys: e.verifier, Out: dir, FromReleases: from}); err != nil {
			t.Fatalf("delta bundle from %v: %v", from, err)
		}
		return dir
	}
	fromOld := mk("10.0.1")
	dir := mk("10.0.2")
	m, err := bundle.Open(dir)
	if err != nil || len(m.From) != 1 || m.From[0].Version != "10.0.2" || m.From[0].Commit != e.commits["stable/10.0.2"] {
		t.Fatalf("manifest %+v %v", m, err)
	}
	var loose, deltaFiles int
	filepath.Walk(filepath.Join(dir, "repo"), func(p string, info os.FileInfo, err error) error {
		switch {
		case err != nil || info.IsDir():
		case strings.Contains(p, "/objects/") && !strings.HasSuffix(p, ".commit") && !strings.HasSuffix(p, ".commitmeta"):
			loose++
		case strings.Contains(p, "/deltas/"):
			deltaFiles++
		}
		return nil
	})
	if loose != 0 || deltaFiles < 2 {
		t.Errorf("delta bundle holds %d loose objects and %d delta files; want none and a superblock with parts", loose, deltaFiles)
	}

	if _, err := e.agent.channelState(e.ctx); err != nil { // warm the cache, as in TestBundleRefused
		t.Fatal(err)
	}
	e.noNetwork()
	defer e.setHook(nil)
	before := e.snapshot()
	if changed, err := e.agent.UpgradeFrom(e.ctx, fromOld); err == nil || changed ||
		!strings.Contains(err.Error(), "this bundle holds only the changes from version 10.0.1, and this machine runs 10.0.2") {
		t.Fatalf("delta bundle from another release: changed=%v err=%v", changed, err)
	}
	if b, a := fmt.Sprintf("%+v", before), fmt.Sprintf("%+v", e.snapshot()); b != a {
		t.Errorf("the refused bundle changed the device:\nbefore %s\nafter  %s", b, a)
	}
	var used []string
	e.agent.Puller.OnDelta = func(id ostree.DeltaID, err error) { used = append(used, fmt.Sprint(id.Name(), err)) }
	if changed, err := e.agent.UpgradeFrom(e.ctx, dir); err != nil || !changed {
		t.Fatalf("delta bundle: changed=%v err=%v\n%s", changed, err, e.out)
	}
	if st, _ := e.agent.Status(e.ctx); st.Current == nil || st.Current.Version != "10.0.3" {
		t.Fatalf("not on 10.0.3: %+v", st.Current)
	}
	if want := e.commits["stable/10.0.2"] + "-" + e.commits["stable/10.0.3"] + "<nil>"; len(used) != 1 || used[0] != want {
		t.Errorf("deltas used: %v, want %s", used, want)
	}
	e.fsck()
}

// What bundle create refuses, at the office, before anyone carries it: a
// version the signed metadata does not list, a delta from a release the
// server has none from, a folder already in use, metadata that does not
// verify with the trust roots the machines ship. A failed bundle leaves
// its folder empty.
func TestBundleCreateRefuses(t *testing.T) {
	e := newHostileEnv(t)
	root, err := os.ReadFile(e.agent.Cfg.TrustedRoot)
	if err != nil {
		t.Fatal(err)
	}
	used := filepath.Join(t.TempDir(), "used")
	os.MkdirAll(used, 0o755)
	os.WriteFile(filepath.Join(used, "photo.jpg"), []byte("x"), 0o644)
	cases := []struct {
		name string
		mod  func(o *bundle.CreateOptions)
		want string
	}{
		{"unknown version", func(o *bundle.CreateOptions) { o.Version = "10.9.9" }, "lists no version 10.9.9 of stable"},
		{"another arch", func(o *bundle.CreateOptions) { o.Arch = "aarch64" }, "lists no release of stable for aarch64"},
		{"no such base", func(o *bundle.CreateOptions) { o.FromReleases = []string{"9.0"} }, "--from-release 9.0"},
		{"no delta from itself", func(o *bundle.CreateOptions) { o.FromReleases = []string{"10.0.2"} }, "not another commit"},
		{"folder in use", func(o *bundle.CreateOptions) { o.Out = used }, "is not empty"},
		{"release keys of someone else", func(o *bundle.CreateOptions) { o.ReleaseKeys = testserver.GenerateKeys(t).Verifiers }, "downloading version 10.0.2"},
		{"metadata expired", func(o *bundle.CreateOptions) {
			o.Now = func() time.Time { return time.Now().Add(8 * 24 * time.Hour) }
		}, "expired"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := bundle.CreateOptions{Server: e.upstream, Channel: "stable", Arch: "x86_64", TrustedRoot: root,
				ReleaseKeys: e.verifier, Out: filepath.Join(t.TempDir(), "usb")}
			c.mod(&o)
			_, err := bundle.Create(e.ctx, o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
			if o.Out != used {
				if ents, _ := os.ReadDir(o.Out); len(ents) != 0 {
					t.Errorf("the failed bundle left %d entries in %s", len(ents), o.Out)
				}
			} else if ents, _ := os.ReadDir(used); len(ents) != 1 {
				t.Errorf("the folder in use was changed: %d entries", len(ents))
			}
		})
	}
}

// A stick made before the machine last saw newer signed metadata (it was
// online since) is a metadata rollback: refused, with what to do.
func TestBundleOlderMetadataThanSeen(t *testing.T) {
	e := newHostileEnv(t)
	e.release("10.0.3", nil)
	dir := e.makeBundle("stable", "")
	e.publish("10.0.4", nil) // the server signs newer metadata
	if _, err := e.agent.channelState(e.ctx); err != nil {
		t.Fatal(err)
	}
	before := e.snapshot()
	e.noNetwork()
	defer e.setHook(nil)
	changed, err := e.agent.UpgradeFrom(e.ctx, dir)
	if err == nil || changed || !strings.Contains(err.Error(), "older than what this machine has already seen") {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	if b, a := fmt.Sprintf("%+v", before), fmt.Sprintf("%+v", e.snapshot()); b != a {
		t.Errorf("the bundle changed the device:\nbefore %s\nafter  %s", b, a)
	}
}
