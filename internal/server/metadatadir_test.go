package server

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// TestMetadataDirReadOnly: Config.MetadataDir (a school mirror's copy) is
// served at /metadata/ as the signed metadata is, read-only: metadata
// names only, nothing else in the directory, no symlink out of it, no
// writes, and no API.
func TestMetadataDirReadOnly(t *testing.T) {
	data := newDataDir(t)
	meta := filepath.Join(data, "metadata")
	writeFile(t, filepath.Join(meta, "timestamp.json"), []byte(`{"signed":{}}`))
	writeFile(t, filepath.Join(meta, "3.snapshot.json"), []byte(`{"snapshot":3}`))
	writeFile(t, filepath.Join(meta, ".tmp-x.json"), []byte(`temp`))
	writeFile(t, filepath.Join(data, "secret.json"), []byte(`secret`))
	if err := os.Symlink(filepath.Join(data, "secret.json"), filepath.Join(meta, "4.snapshot.json")); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{DataDir: data, MetadataDir: meta})
	if err != nil {
		t.Fatal(err)
	}
	url := serveHandler(t, s)
	// A symlink out of the directory is not followed (the handler says
	// 500 for it, as for the signing server's directory).
	if resp, body := do(t, "GET", url+"/metadata/4.snapshot.json"); resp.StatusCode == http.StatusOK || string(body) == "secret" {
		t.Errorf("a symlink out of the metadata directory was followed: %d %q", resp.StatusCode, body)
	}
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/metadata/timestamp.json", http.StatusOK, `{"signed":{}}`},
		{"GET", "/metadata/3.snapshot.json", http.StatusOK, `{"snapshot":3}`},
		{"GET", "/metadata/.tmp-x.json", http.StatusNotFound, ""},
		{"GET", "/metadata/9.root.json", http.StatusNotFound, ""},
		{"PUT", "/metadata/timestamp.json", http.StatusMethodNotAllowed, ""},
		{"GET", "/api/v1/channels", http.StatusNotFound, ""},
	} {
		resp, body := do(t, tc.method, url+tc.path)
		if resp.StatusCode != tc.status || (tc.body != "" && string(body) != tc.body) {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, resp.StatusCode, body, tc.status, tc.body)
		}
	}
}
