package registry

import (
	"crypto/rand"
	"io"
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"
)

// BenchmarkBlobGet pulls a 4 MiB blob over loopback HTTP: the hot path of
// an image pull (link stat, open, sendfile).
func BenchmarkBlobGet(b *testing.B) {
	dir := b.TempDir()
	st, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 4<<20)
	if _, err := rand.Read(data); err != nil {
		b.Fatal(err)
	}
	d := digest.FromBytes(data)
	if err := st.putBlob("bench/repo", d, int64(len(data)), bytesReader(data)); err != nil {
		b.Fatal(err)
	}
	srv := newBenchServer(b, NewHandler(st, nil, nil))
	url := srv + "/v2/bench/repo/blobs/" + d.String()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || n != int64(len(data)) {
			b.Fatalf("GET: %d, %d bytes", resp.StatusCode, n)
		}
	}
}
