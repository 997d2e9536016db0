package server

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// TestCorkedResponses covers bodies around net/http's 4 KiB connection
// buffer, where writeBody corks the connection: from memory, from an open
// descriptor and through the general path (a mutable file), with GET,
// HEAD, Range and conditional requests on one keep-alive connection.
func TestCorkedResponses(t *testing.T) {
	data := newDataDir(t)
	repo := filepath.Join(data, "repo")
	sizes := []int{3584, 4096, 4300, 16 << 10, 24 << 10}
	type file struct {
		name string
		body []byte
	}
	var files []file
	for i, size := range sizes {
		body := make([]byte, size)
		if _, err := rand.Read(body); err != nil {
			t.Fatal(err)
		}
		hex := fmt.Sprintf("%02x%062x", i, i)
		name := "objects/" + hex[:2] + "/" + hex[2:] + ".filez"
		writeFile(t, filepath.Join(repo, filepath.FromSlash(name)), body)
		files = append(files, file{name, body})
		mutable := fmt.Sprintf("deltas/%02x/%d/superblock", i, size)
		writeFile(t, filepath.Join(repo, filepath.FromSlash(mutable)), body)
		files = append(files, file{mutable, body})
	}
	base := startServer(t, newTestServer(t, data))
	// One connection: a response left corked, or bytes left behind, would
	// stall or corrupt the next one.
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, DisableCompression: true}}
	defer client.CloseIdleConnections()
	send := func(method, url string, headers ...string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(resp.Body); err != nil {
			t.Fatalf("%s %s: reading body: %v", method, url, err)
		}
		// The kernel sends corked data after 200 ms on its own; a
		// response that waits for that was left corked.
		if d := time.Since(start); d > 150*time.Millisecond {
			t.Logf("%s %s took %v", method, url, d)
		}
		return resp, buf.Bytes()
	}

	start := time.Now()
	const rounds = 3 // the miss, then hits
	for range rounds {
		for _, f := range files {
			url := base + "/repo/" + f.name
			resp, body := send(http.MethodGet, url)
			if resp.StatusCode != http.StatusOK || !bytes.Equal(body, f.body) {
				t.Fatalf("GET %s: status %d, %d bytes, want %d identical bytes", f.name, resp.StatusCode, len(body), len(f.body))
			}
			if resp.ContentLength != int64(len(f.body)) {
				t.Errorf("GET %s: Content-Length %d, want %d", f.name, resp.ContentLength, len(f.body))
			}
			etag := resp.Header.Get("Etag")

			resp, body = send(http.MethodHead, url)
			if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.ContentLength != int64(len(f.body)) {
				t.Errorf("HEAD %s: status %d, %d body bytes, Content-Length %d", f.name, resp.StatusCode, len(body), resp.ContentLength)
			}

			resp, body = send(http.MethodGet, url, "Range", "bytes=100-4199")
			end := min(4200, len(f.body))
			if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, f.body[100:end]) {
				t.Errorf("Range %s: status %d, %d bytes, want %d", f.name, resp.StatusCode, len(body), end-100)
			}
			want := fmt.Sprintf("bytes 100-%d/%d", end-1, len(f.body))
			if got := resp.Header.Get("Content-Range"); got != want {
				t.Errorf("Range %s: Content-Range %q, want %q", f.name, got, want)
			}

			resp, body = send(http.MethodGet, url, "If-None-Match", etag)
			if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
				t.Errorf("If-None-Match %s: status %d, %d bytes", f.name, resp.StatusCode, len(body))
			}
		}
	}
	// 120 requests; a cork left set costs 200 ms each.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("%d requests took %v: responses wait for the cork timeout", rounds*len(files)*4, d)
	}
}
