package s3store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/mxos-linux/mxos-update/internal/storage/object"
	"github.com/mxos-linux/mxos-update/internal/storage/storagetest"
)

// BenchmarkServe measures a device's GET of a content-addressed file that
// lives in a bucket: streamed through the server (object.Serve) or
// answered with a presigned redirect that the client follows to the S3
// server. Both ends are on loopback, so this measures the server's cost
// and the extra round trip, not a WAN. Run with
//
//	go test -run XXX -bench Serve ./internal/storage/s3store/
func BenchmarkServe(b *testing.B) {
	st := storagetest.NewS3Store(b)
	for _, size := range []int{4 << 10, 256 << 10, 4 << 20} {
		data := make([]byte, size)
		_, _ = rand.Read(data)
		d := digest.FromBytes(data)
		key := object.BlobKey(d)
		if _, err := st.PutVerified(context.Background(), key, d, int64(size), bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		for _, redirect := range []bool{false, true} {
			mode := map[bool]string{false: "stream", true: "redirect"}[redirect]
			b.Run(fmt.Sprintf("%s/%dKiB", mode, size>>10), func(b *testing.B) {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					_ = object.Serve(w, r, st, key, object.ServeOptions{Immutable: true, Redirect: redirect})
				}))
				defer srv.Close()
				c := srv.Client()
				b.SetBytes(int64(size))
				b.ResetTimer()
				for b.Loop() {
					resp, err := c.Get(srv.URL)
					if err != nil {
						b.Fatal(err)
					}
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || n != int64(size) {
						b.Fatalf("GET: %d, %d bytes", resp.StatusCode, n)
					}
				}
			})
		}
	}
}
