package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestAtomicReplacementUnderLoad publishes new summaries by rename while
// many clients fetch it: every response must be exactly one published
// version, with the ETag of that version.
func TestAtomicReplacementUnderLoad(t *testing.T) {
	data := newDataDir(t)
	repo := filepath.Join(data, "repo")
	summary := filepath.Join(repo, "summary")

	// Versions of different sizes on both sides of copyMax, each
	// filled with its own byte, so any mix of two versions is detectable.
	sizes := []int{100, 4 << 10, copyMax, copyMax + 1, 700 << 10}
	versions := make(map[string][]byte) // ETag → content
	var contents [][]byte
	for i, n := range sizes {
		b := bytes.Repeat([]byte{byte('A' + i)}, n)
		copy(b, fmt.Sprintf("version %d\n", i))
		contents = append(contents, b)
		versions[sha256ETag(b)] = b
	}
	writeFile(t, summary, contents[0])
	base := startServer(t, newTestServer(t, data))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var publishes atomic.Int64
	wg.Add(1)
	go func() { // the publisher
		defer wg.Done()
		tmpDir := filepath.Join(repo, "tmp")
		if err := os.MkdirAll(tmpDir, 0o755); err != nil {
			t.Error(err)
			return
		}
		for i := 1; ctx.Err() == nil; i++ {
			tmp := filepath.Join(tmpDir, "summary.new")
			if err := os.WriteFile(tmp, contents[i%len(contents)], 0o644); err != nil {
				t.Error(err)
				return
			}
			if err := os.Rename(tmp, summary); err != nil {
				t.Error(err)
				return
			}
			publishes.Add(1)
		}
	}()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	var fetched atomic.Int64
	seen := make([]atomic.Int64, len(contents))
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				resp, err := client.Get(base + "/repo/summary")
				if err != nil {
					t.Error(err)
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Error(err)
					return
				}
				if resp.StatusCode != http.StatusOK {
					t.Errorf("status %d", resp.StatusCode)
					return
				}
				etag := resp.Header.Get("ETag")
				want, ok := versions[etag]
				if !ok {
					t.Errorf("unknown ETag %s for a %d-byte body", etag, len(body))
					return
				}
				if !bytes.Equal(body, want) {
					t.Errorf("body (%d bytes, starts %q) is not the version its ETag names", len(body), body[:min(len(body), 10)])
					return
				}
				for i, c := range contents {
					if len(c) == len(body) {
						seen[i].Add(1)
					}
				}
				fetched.Add(1)
			}
		}()
	}
	wg.Wait()

	t.Logf("%d publishes, %d fetches", publishes.Load(), fetched.Load())
	if publishes.Load() < 10 || fetched.Load() < 100 {
		t.Fatalf("too little concurrency to mean anything: %d publishes, %d fetches", publishes.Load(), fetched.Load())
	}
	distinct := 0
	for i := range seen {
		if seen[i].Load() > 0 {
			distinct++
		}
	}
	if distinct < 2 {
		t.Fatalf("clients saw only %d version(s)", distinct)
	}
}
