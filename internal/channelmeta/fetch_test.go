package channelmeta

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mxos-linux/mxos-update/internal/httplimit"
)

// TestHTTPFetcherLimits: a hostile metadata mirror on 127.0.0.1 that
// never answers, trickles or sends without end is cut off with a clear
// error, and an endless file costs about its limit in memory.
func TestHTTPFetcherLimits(t *testing.T) {
	chunk := make([]byte, 64<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/silent/timestamp.json":
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		case "/trickle/timestamp.json":
			for end := time.Now().Add(5 * time.Second); r.Context().Err() == nil && time.Now().Before(end); {
				w.Write([]byte(" "))
				w.(http.Flusher).Flush()
				time.Sleep(50 * time.Millisecond)
			}
		case "/endless/1.targets.json":
			for {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		default:
			w.Write([]byte(`{}`))
		}
	}))
	defer srv.Close()
	f := &httpFetcher{ctx: context.Background(), client: srv.Client(),
		headerTimeout: 200 * time.Millisecond, minRate: 1000, grace: 200 * time.Millisecond}

	if _, err := f.DownloadFile(srv.URL+"/silent/timestamp.json", 16<<10, 0); !errors.Is(err, httplimit.ErrNoHeaders) || KindOf(err) != ErrFetch {
		t.Errorf("silent: err = %v, want ErrNoHeaders (ErrFetch)", err)
	}
	if _, err := f.DownloadFile(srv.URL+"/trickle/timestamp.json", 16<<10, 0); !errors.Is(err, httplimit.ErrTooSlow) {
		t.Errorf("trickle: err = %v, want ErrTooSlow", err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := f.DownloadFile(srv.URL+"/endless/1.targets.json", 0, 0) // 0: the overall cap
	runtime.ReadMemStats(&after)
	var tooLarge *metadata.ErrDownloadLengthMismatch
	if !errors.As(err, &tooLarge) {
		t.Errorf("endless: err = %v, want ErrDownloadLengthMismatch", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
		t.Errorf("endless targets cost %d MiB of allocations", grew>>20)
	}
	if b, err := f.DownloadFile(srv.URL+"/ok/timestamp.json", 16<<10, 0); err != nil || string(b) != `{}` {
		t.Errorf("honest file: %q %v", b, err)
	}
}

// A directory mirror cannot make the device read outside it.
func TestDirFetcherConfined(t *testing.T) {
	f := &dirFetcher{dir: t.TempDir()}
	for _, name := range []string{"../etc/passwd", "a/b.json", "timestamp.txt", "", ".json"} {
		if _, err := f.DownloadFile(dirBase+name, 100, 0); err == nil {
			t.Errorf("DownloadFile(%q) succeeded", name)
		}
	}
	var he *metadata.ErrDownloadHTTP
	if _, err := f.DownloadFile(dirBase+"7.root.json", 100, 0); !errors.As(err, &he) || he.StatusCode != http.StatusNotFound {
		t.Errorf("missing file: %v, want a 404 ErrDownloadHTTP (go-tuf's end of the root chain)", err)
	}
}
