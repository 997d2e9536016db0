package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestKillRegistryPushAtCrashPoints kills the mxos-server binary (strace,
// SIGKILL) at every rename and directory fsync of a `skopeo copy` push
// into its registry, on the step's final path: the layer blob renamed
// into the store and its directory synced, the layer linked into the
// repository, the manifest's bytes renamed in, its link renamed and
// synced, the tag renamed and synced. A point never reached fails the
// test; each point reached is logged. After each kill the server binary
// starts again (server.Recover runs) and then: the tag names the previous
// image or the new one, and whichever it names pulls whole with skopeo
// (nothing half-visible); the previous image still pulls by digest; stale
// upload sessions (a day old, OSTree and registry) are gone; and the same
// push, run again, succeeds and moves the tag.
//
// The fsync of a blob's temporary file and of an upload session's data
// are not points here: their names are random, so strace -P cannot name
// them, and a kill there leaves what a kill at the following rename does.
func TestKillRegistryPushAtCrashPoints(t *testing.T) {
	requireTool(t, "skopeo")
	strace := requireStrace(t)
	tmpl := &serverSite{data: filepath.Join(t.TempDir(), "data"), release: newKeys(t), online: newKeys(t)}
	tmpl.token = hostToken(t, tmpl.data, "--role", "release", "--name", "team")
	const repo, tag = "mxos/crash", "stable"
	push := func(base, layout string) ([]byte, error) {
		return skopeo(t, "copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", "release:"+tmpl.token,
			"oci:"+layout+":v", "docker://"+strings.TrimPrefix(base, "http://")+"/"+repo+":"+tag)
	}
	hostOf := func(url string) string { return strings.TrimSuffix(url, "/repo") }

	// The previous image, pushed and tagged.
	old := filepath.Join(t.TempDir(), "old")
	v1 := ociLayout(t, old, "v")
	url, stop := startServerProcess(t, tmpl.data, tmpl.flags()...)
	if out, err := push(hostOf(url), old); err != nil {
		t.Fatalf("pushing the first image: %v\n%s", err, out)
	}
	stop()
	// Sessions a crash left a day ago, in the repository and the registry.
	stale := []string{"repo/tmp/uploads/0123456789abcdef0123456789abcdef", "oci/uploads/0123456789abcdef0123456789abcdef"}
	plantStale := func(data string) {
		t.Helper()
		dayAgo := time.Now().Add(-25 * time.Hour)
		for _, p := range stale {
			p = filepath.Join(data, p)
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(p, "data"), []byte("half an upload"), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{filepath.Join(p, "data"), p} {
				if err := os.Chtimes(q, dayAgo, dayAgo); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	// The new image and the paths its push writes.
	layout := filepath.Join(t.TempDir(), "new")
	v2 := ociLayout(t, layout, "v")
	mb, err := os.ReadFile(filepath.Join(layout, "blobs", "sha256", v2.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Layers []struct {
			Digest digest.Digest `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(mb, &m); err != nil || len(m.Layers) != 1 {
		t.Fatalf("manifest of the new image: %v", err)
	}
	blob := func(d digest.Digest) string {
		return filepath.Join("blobs", "sha256", d.Encoded()[:2], d.Encoded())
	}
	repoDir := filepath.Join("repos", filepath.FromSlash(repo))
	layer := m.Layers[0].Digest
	points := []struct {
		name  string
		calls string
		path  string // relative to DATA/oci
	}{
		{"layer renamed into the store", renameCalls, blob(layer)},
		{"layer directory synced", fsyncCalls, filepath.Dir(blob(layer))},
		{"layer link synced", fsyncCalls, filepath.Join(repoDir, "_layers", "sha256")},
		{"manifest bytes renamed into the store", renameCalls, blob(v2)},
		{"manifest link renamed", renameCalls, filepath.Join(repoDir, "_manifests", "sha256", v2.Encoded())},
		{"manifest link directory synced", fsyncCalls, filepath.Join(repoDir, "_manifests", "sha256")},
		{"tag renamed", renameCalls, filepath.Join(repoDir, "_tags", tag)},
		{"tag directory synced", fsyncCalls, filepath.Join(repoDir, "_tags")},
	}
	var reached []string
	for _, pt := range points {
		t.Run(pt.name, func(t *testing.T) {
			s := tmpl.clone(t)
			plantStale(s.data)
			target := filepath.Join(s.data, "oci", pt.path)
			_, existed := os.Lstat(target)
			p := launchServer(t, stracePoint(strace, pt.calls, target), s.data, s.flags()...)
			out, perr := push(hostOf(p.URL), layout)
			if ok, err := p.KilledAtPoint(10 * time.Second); !ok {
				t.Fatalf("crash point never reached: the server made no %s on %s (server: %v; push: %v)\n%s\n%s",
					pt.calls, pt.path, err, perr, out, p.Stderr.String())
			}
			reached = append(reached, pt.name)
			t.Logf("reached: killed at the %s on %s", strings.SplitN(pt.calls, ",", 2)[0], pt.path)
			if pt.calls == renameCalls && existed != nil {
				if _, err := os.Lstat(target); err == nil {
					t.Errorf("%s exists although the kill came before its rename", pt.path)
				}
			}

			url, stop := startServerProcess(t, s.data, s.flags()...)
			base := hostOf(url)
			for _, p := range stale {
				if _, err := os.Stat(filepath.Join(s.data, p)); err == nil {
					t.Errorf("the stale upload session %s is still there after the server started", p)
				}
			}
			got, code := manifestDigest(t, base, repo, tag)
			if code != http.StatusOK || (got != v1 && got != v2) {
				t.Fatalf("after the kill %s:%s is %q (HTTP %d), want the old %s or the new %s", repo, tag, got, code, v1, v2)
			}
			pullWhole(t, base, repo, tag, got)
			pullWhole(t, base, repo, v1.String(), v1)

			if out, err := push(base, layout); err != nil {
				t.Fatalf("pushing again after the kill: %v\n%s", err, out)
			}
			if got, code := manifestDigest(t, base, repo, tag); code != http.StatusOK || got != v2 {
				t.Errorf("after pushing again %s:%s is %s (HTTP %d), want %s", repo, tag, got, code, v2)
			}
			pullWhole(t, base, repo, tag, v2)
			stop()
		})
	}
	t.Logf("%d of %d crash points reached: %s", len(reached), len(points), strings.Join(reached, "; "))
}

// pullWhole copies repo:ref (a tag or digest) out of the registry at base
// with skopeo, which fetches and checks every blob, and checks the
// manifest digest.
func pullWhole(t *testing.T, base, repo, ref string, want digest.Digest) {
	t.Helper()
	sep := ":"
	if strings.HasPrefix(ref, "sha256:") {
		sep = "@"
	}
	out := filepath.Join(t.TempDir(), "pulled")
	src := "docker://" + strings.TrimPrefix(base, "http://") + "/" + repo + sep + ref
	if o, err := skopeo(t, "copy", "--preserve-digests", "--src-tls-verify=false", src, "oci:"+out+":p"); err != nil {
		t.Errorf("skopeo copy %s: %v\n%s", src, err, o)
		return
	}
	if got := layoutManifest(t, out); got != want {
		t.Errorf("pulled %s as %s, want %s", src, got, want)
	}
}

// unlinkCalls are the calls that remove a file.
const unlinkCalls = "unlink,unlinkat"

// TestKillRegistryGCAtCrashPoints kills the mxos-server binary (strace,
// SIGKILL) during registry garbage collection (POST /api/v1/registry/gc)
// at each step on a collected image's final paths: its manifest link
// removed, its layer link removed, the removals synced before any blob
// goes, its layer blob and its manifest bytes deleted. A point never
// reached fails the test. After each kill the server binary starts again
// and: the tagged image pulls whole; the collected image either still
// resolves and pulls whole or is gone (never a manifest without its
// blobs); and GC, run again, finishes and removes it.
func TestKillRegistryGCAtCrashPoints(t *testing.T) {
	requireTool(t, "skopeo")
	strace := requireStrace(t)
	tmpl := &serverSite{data: filepath.Join(t.TempDir(), "data"), release: newKeys(t), online: newKeys(t)}
	tmpl.token = hostToken(t, tmpl.data, "--role", "release", "--name", "team")
	const repo, tag = "mxos/gc", "stable"
	hostOf := func(url string) string { return strings.TrimSuffix(url, "/repo") }
	push := func(base, layout string) {
		t.Helper()
		if out, err := skopeo(t, "copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", "release:"+tmpl.token,
			"oci:"+layout+":v", "docker://"+strings.TrimPrefix(base, "http://")+"/"+repo+":"+tag); err != nil {
			t.Fatalf("push: %v\n%s", err, out)
		}
	}
	// Image a, then image b under the same tag: a is garbage.
	la, lb := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	a, b := ociLayout(t, la, "v"), ociLayout(t, lb, "v")
	url, stop := startServerProcess(t, tmpl.data, tmpl.flags()...)
	push(hostOf(url), la)
	push(hostOf(url), lb)
	stop()
	// Everything is made older than GC's grace period (one hour) in each
	// copy (copying sets the times to now).
	age := func(data string) {
		t.Helper()
		past := time.Now().Add(-2 * time.Hour)
		err := filepath.Walk(filepath.Join(data, "oci"), func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Chtimes(p, past, past)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	ab, err := os.ReadFile(filepath.Join(la, "blobs", "sha256", a.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Layers []struct {
			Digest digest.Digest `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(ab, &m); err != nil || len(m.Layers) != 1 {
		t.Fatalf("manifest of image a: %v", err)
	}
	layer := m.Layers[0].Digest
	blob := func(d digest.Digest) string {
		return filepath.Join("blobs", "sha256", d.Encoded()[:2], d.Encoded())
	}
	repoDir := filepath.Join("repos", filepath.FromSlash(repo))
	points := []struct {
		name  string
		calls string
		path  string // relative to DATA/oci
	}{
		{"manifest link removed", unlinkCalls, filepath.Join(repoDir, "_manifests", "sha256", a.Encoded())},
		{"layer link removed", unlinkCalls, filepath.Join(repoDir, "_layers", "sha256", layer.Encoded())},
		{"removals synced before blobs go", syncfsCalls, "repos"},
		{"layer blob deleted", unlinkCalls, blob(layer)},
		{"manifest bytes deleted", unlinkCalls, blob(a)},
	}
	gc := func(base string) (int, error) {
		req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/registry/gc", nil)
		req.Header.Set("Authorization", "Bearer "+tmpl.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	var reached []string
	for _, pt := range points {
		t.Run(pt.name, func(t *testing.T) {
			s := tmpl.clone(t)
			age(s.data)
			target := filepath.Join(s.data, "oci", pt.path)
			p := launchServer(t, stracePoint(strace, pt.calls, target), s.data, s.flags()...)
			code, gerr := gc(hostOf(p.URL))
			if ok, err := p.KilledAtPoint(10 * time.Second); !ok {
				t.Fatalf("crash point never reached: GC made no %s on %s (server: %v; GC: HTTP %d %v)\n%s",
					pt.calls, pt.path, err, code, gerr, p.Stderr.String())
			}
			reached = append(reached, pt.name)
			t.Logf("reached: killed at the %s on %s", strings.SplitN(pt.calls, ",", 2)[0], pt.path)
			if pt.calls == unlinkCalls {
				if _, err := os.Lstat(target); err != nil {
					t.Errorf("%s is gone although the kill came before its removal: %v", pt.path, err)
				}
			}

			url, stop := startServerProcess(t, s.data, s.flags()...)
			base := hostOf(url)
			pullWhole(t, base, repo, tag, b)
			switch _, code := manifestDigest(t, base, repo, a.String()); code {
			case http.StatusOK:
				pullWhole(t, base, repo, a.String(), a)
			case http.StatusNotFound:
			default:
				t.Errorf("the collected image %s: HTTP %d", a, code)
			}
			if code, err := gc(base); err != nil || code != http.StatusOK {
				t.Fatalf("GC after the kill: HTTP %d %v", code, err)
			}
			if _, code := manifestDigest(t, base, repo, a.String()); code != http.StatusNotFound {
				t.Errorf("after GC ran again the collected image %s answers HTTP %d", a, code)
			}
			for _, d := range []digest.Digest{a, layer} {
				if _, err := os.Stat(filepath.Join(s.data, "oci", blob(d))); err == nil {
					t.Errorf("after GC ran again blob %s is still stored", d)
				}
			}
			pullWhole(t, base, repo, tag, b)
			stop()
		})
	}
	t.Logf("%d of %d crash points reached: %s", len(reached), len(points), strings.Join(reached, "; "))
}
