package server

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/tlog"
	"github.com/mxos-linux/mxos-update/internal/tlogstore"
)

// TestLogServed: /log/ serves the checkpoint and tiles, revalidated and
// immutable respectively, and never the private .state/ directory or
// anything outside tile paths.
func TestLogServed(t *testing.T) {
	data := newDataDir(t)
	l, err := tlogstore.Open(context.Background(), tlogstore.Options{Dir: filepath.Join(data, "log"),
		KeyFile: filepath.Join(data, "log-key"), CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	e := tlog.Entry{Kind: tlog.KindMetadataRotation, Time: time.Unix(1_800_000_000, 0).UTC()}
	if _, _, err := l.AppendPublished(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{DataDir: data, TransparencyLog: l})
	if err != nil {
		t.Fatal(err)
	}
	base := serveHandler(t, s)
	if _, err := os.Stat(filepath.Join(data, "log", ".state", "treeState")); err != nil {
		t.Fatalf("tessera's private state is not where this test expects it: %v", err)
	}
	for path, want := range map[string]struct {
		code  int
		cache string
	}{
		"/log/checkpoint":             {200, "no-cache"},
		"/log/tile/0/000.p/1":         {200, "public, max-age=3600"},
		"/log/tile/entries/000.p/1":   {200, "public, max-age=3600"},
		"/log/.state/treeState":       {404, ""},
		"/log/tile/../.state/version": {400, ""}, // unclean paths are refused first
		"/log/tile/.state":            {404, ""},
		"/log/":                       {404, ""},
		"/log/tile/0/001":             {404, ""},
		"/log/tile":                   {404, ""},
	} {
		resp, body := rawGet(t, base, path)
		if resp.StatusCode != want.code || (want.code == 200 && resp.Header.Get("Cache-Control") != want.cache) {
			t.Errorf("GET %s: %d %q, want %d %q", path, resp.StatusCode, resp.Header.Get("Cache-Control"), want.code, want.cache)
		}
		if path == "/log/checkpoint" && !strings.HasPrefix(string(body), tlogstore.DefaultOrigin+"\n1\n") {
			t.Errorf("checkpoint: %q", body)
		}
	}
	if resp, _ := do(t, "POST", base+"/log/checkpoint"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}
