//go:build linux

package server

import (
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestSpecialFilesNotServed: a FIFO or socket planted in the repository
// gets a prompt 404; opening a FIFO must not block the request.
func TestSpecialFilesNotServed(t *testing.T) {
	data := newDataDir(t)
	repo := filepath.Join(data, "repo")
	fifos := []string{"summary", "refs/heads/main", "objects/ab/" + hexA + ".filez", "objects/ab/" + hexA + ".commitmeta"}
	for _, name := range fifos {
		p := filepath.Join(repo, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := startServer(t, newTestServer(t, data))
	client := &http.Client{Timeout: 5 * time.Second}
	for _, name := range fifos {
		resp, err := client.Get(base + "/repo/" + name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", name, resp.StatusCode)
		}
	}
}
