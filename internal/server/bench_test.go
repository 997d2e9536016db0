package server

import (
	"crypto/rand"
	"io"
	"net/http"
	"path/filepath"
	"testing"
)

// benchmarkServe measures parallel GETs of one object of the given size
// over loopback, with keep-alive connections, as a pulling client does.
func benchmarkServe(b *testing.B, size int) {
	data := newDataDir(b)
	content := make([]byte, size)
	if _, err := rand.Read(content); err != nil {
		b.Fatal(err)
	}
	writeFile(b, filepath.Join(data, "repo", "objects", "ab", hexA+".filez"), content)
	url := startServer(b, newTestServer(b, data)) + "/repo/objects/ab/" + hexA + ".filez"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}}
	b.Cleanup(client.CloseIdleConnections)

	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || n != int64(size) {
				b.Errorf("status %d, %d bytes, err %v", resp.StatusCode, n, err)
				return
			}
		}
	})
}

func BenchmarkServeSmallObject(b *testing.B) { benchmarkServe(b, 1<<10) }

func BenchmarkServeLargeObject(b *testing.B) { benchmarkServe(b, 1<<20) }
