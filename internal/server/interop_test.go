package server

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/testtool"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// requireOstree returns the path of the ostree CLI (see testtool.Require).
func requireOstree(t *testing.T) string {
	t.Helper()
	return testtool.Require(t, "ostree")
}

// runOstree runs the ostree CLI and returns its trimmed standard output.
func runOstree(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ostree %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// served returns "STATUS PATH" for each request the server logged since
// the last call.
func served(logs *observer.ObservedLogs) []string {
	var out []string
	for _, e := range logs.TakeAll() {
		if e.Message != "request" {
			continue
		}
		f := e.ContextMap()
		out = append(out, fmt.Sprint(f["status"], " ", f["path"]))
	}
	return out
}

func hasRequest(reqs []string, status, pathPrefix string) bool {
	for _, r := range reqs {
		if strings.HasPrefix(r, status+" "+pathPrefix) {
			return true
		}
	}
	return false
}

// TestOstreeInterop builds a repository with the real ostree CLI, serves
// it, and has the stock ostree client pull from it: plain pull, a repeat
// pull that revalidates the cached summary, an update through a static
// delta, a mirror pull, and fsck of everything.
func TestOstreeInterop(t *testing.T) {
	ostree := requireOstree(t)
	data := newDataDir(t)
	repo := filepath.Join(data, "repo")
	work := t.TempDir()
	tree := filepath.Join(work, "tree")

	big := make([]byte, 300<<10) // larger than smallFileMax: the sendfile path
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(tree, "usr", "bin", "tool"), big)
	writeFile(t, filepath.Join(tree, "etc", "os-release"), []byte("NAME=MxOS\nVERSION_ID=10\n"))
	writeFile(t, filepath.Join(tree, "usr", "share", "empty"), nil)
	if err := os.MkdirAll(filepath.Join(tree, "usr", "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../bin/tool", filepath.Join(tree, "usr", "lib", "tool")); err != nil {
		t.Fatal(err)
	}

	runOstree(t, ostree, "init", "--mode=archive", "--repo="+repo)
	c1 := runOstree(t, ostree, "commit", "--repo="+repo, "-b", "main", "--tree=dir="+tree, "-s", "one")
	runOstree(t, ostree, "summary", "-u", "--repo="+repo)
	// Any summary.sig makes the client cache the summary and revalidate it
	// with If-None-Match / If-Modified-Since ("… UTC") on the next pull.
	// Signature checking is off for this remote, so its bytes are opaque.
	writeFile(t, filepath.Join(repo, "summary.sig"), []byte("opaque signature v1"))

	core, logs := observer.New(zapcore.DebugLevel)
	base := startServer(t, newTestServerWithLogger(t, data, zap.New(core)))
	url := base + "/repo"

	client := filepath.Join(work, "client")
	runOstree(t, ostree, "--repo="+client, "init", "--mode=archive")
	runOstree(t, ostree, "--repo="+client, "remote", "add", "--no-gpg-verify", "origin", url)
	runOstree(t, ostree, "--repo="+client, "pull", "origin", "main")
	if got := runOstree(t, ostree, "--repo="+client, "rev-parse", "origin:main"); got != c1 {
		t.Fatalf("first pull: origin:main = %s, want %s", got, c1)
	}
	if reqs := served(logs); !hasRequest(reqs, "200", "/repo/summary") || !hasRequest(reqs, "200", "/repo/objects/") {
		t.Fatalf("first pull did not fetch the summary and objects: %v", reqs)
	}

	// Nothing changed: the cached summary is revalidated, not re-sent.
	runOstree(t, ostree, "--repo="+client, "pull", "origin", "main")
	if reqs := served(logs); !hasRequest(reqs, "304", "/repo/summary.sig") {
		t.Fatalf("second pull did not get 304 for summary.sig: %v", reqs)
	}

	// A delta-capable client (bare-user-only needs no xattrs or root).
	deltaClient := filepath.Join(work, "delta-client")
	runOstree(t, ostree, "--repo="+deltaClient, "init", "--mode=bare-user-only")
	runOstree(t, ostree, "--repo="+deltaClient, "remote", "add", "--no-gpg-verify", "origin", url)
	runOstree(t, ostree, "--repo="+deltaClient, "pull", "origin", "main")

	// Publish a second commit with a static delta while the server runs.
	writeFile(t, filepath.Join(tree, "etc", "os-release"), []byte("NAME=MxOS\nVERSION_ID=10.1\n"))
	writeFile(t, filepath.Join(tree, "usr", "share", "new"), []byte("new file"))
	c2 := runOstree(t, ostree, "commit", "--repo="+repo, "-b", "main", "--tree=dir="+tree, "-s", "two")
	runOstree(t, ostree, "static-delta", "generate", "--repo="+repo, "--from="+c1, "--to="+c2)
	runOstree(t, ostree, "summary", "-u", "--repo="+repo)
	replaceFile(t, filepath.Join(repo, "summary.sig"), []byte("opaque signature v2"))
	served(logs)

	runOstree(t, ostree, "--repo="+client, "pull", "origin", "main")
	if got := runOstree(t, ostree, "--repo="+client, "rev-parse", "origin:main"); got != c2 {
		t.Fatalf("update: origin:main = %s, want %s", got, c2)
	}
	runOstree(t, ostree, "--repo="+deltaClient, "pull", "origin", "main")
	if got := runOstree(t, ostree, "--repo="+deltaClient, "rev-parse", "origin:main"); got != c2 {
		t.Fatalf("delta update: origin:main = %s, want %s", got, c2)
	}
	if reqs := served(logs); !hasRequest(reqs, "200", "/repo/deltas/") || !hasRequest(reqs, "200", "/repo/delta-indexes/") {
		t.Fatalf("delta update did not use the static delta: %v", reqs)
	}

	mirror := filepath.Join(work, "mirror")
	runOstree(t, ostree, "--repo="+mirror, "init", "--mode=archive")
	runOstree(t, ostree, "--repo="+mirror, "remote", "add", "--no-gpg-verify", "origin", url)
	runOstree(t, ostree, "--repo="+mirror, "pull", "--mirror", "origin")
	if got := runOstree(t, ostree, "--repo="+mirror, "rev-parse", "main"); got != c2 {
		t.Fatalf("mirror: main = %s, want %s", got, c2)
	}

	for _, r := range []string{client, deltaClient, mirror} {
		runOstree(t, ostree, "--repo="+r, "fsck")
	}
}
