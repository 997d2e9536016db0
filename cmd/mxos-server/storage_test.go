package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/storage/s3store"
	"github.com/mxos-linux/mxos-update/internal/storage/storagetest"
)

// TestStorageFlag runs the server command with --storage naming a bucket
// on a real S3 server: it starts with the registry's blobs there (no
// blob directory in --data), and with a wrong secret it refuses to start
// with an error that does not show the secret.
func TestStorageFlag(t *testing.T) {
	srv := storagetest.StartS3(t)
	bucket := srv.Bucket(t)
	conf, secretFile := srv.StorageFile(t, bucket.Bucket)

	data := filepath.Join(t.TempDir(), "data")
	cmd := newRootCmd()
	pr, pw := io.Pipe()
	cmd.SetOut(pw)
	cmd.SetArgs([]string{"--data", data, "--listen", "127.0.0.1:0", "--log-level", "warn", "--storage", conf})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		err := cmd.ExecuteContext(ctx)
		pw.Close()
		done <- err
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the startup line: %v (command: %v)", err, <-done)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	base := strings.TrimSuffix(strings.TrimSpace(line[strings.Index(line, "http://"):]), "/repo")
	resp, err := http.Get(base + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /v2/: %d, want 401 (registry on)", resp.StatusCode)
	}
	if _, err := os.Stat(filepath.Join(data, "oci", "blobs")); err == nil {
		t.Fatal("--storage s3, yet the registry made data/oci/blobs")
	}
	// The repository was mirrored at start and /repo/ comes from the bucket.
	st, err := s3store.New(context.Background(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Stat(context.Background(), "repo/config")
	if err != nil {
		t.Fatalf("repo/config is not in the bucket: %v", err)
	}
	resp, err = http.Get(base + "/repo/config")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("ETag") != info.ETag {
		t.Fatalf("GET /repo/config: %d, ETag %q; the bucket's is %q", resp.StatusCode, resp.Header.Get("ETag"), info.ETag)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("command: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop")
	}

	wrong := "not-the-secret-" + srv.SecretKey[:6]
	if err := os.WriteFile(secretFile, []byte(wrong+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd = newRootCmd()
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"--data", data, "--listen", "127.0.0.1:0", "--log-level", "error", "--storage", conf})
	err = cmd.ExecuteContext(context.Background())
	if err == nil {
		t.Fatal("the server started with a wrong S3 secret")
	}
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), srv.SecretKey) {
		t.Fatalf("the error shows the secret: %v", err)
	}
	if !strings.Contains(err.Error(), "--storage") {
		t.Fatalf("the error does not name --storage: %v", err)
	}
	t.Logf("refused: %v", err)
}
