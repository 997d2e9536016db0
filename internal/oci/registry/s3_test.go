package registry

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/mxos-linux/mxos-update/internal/oci/content"
	"github.com/mxos-linux/mxos-update/internal/oci/content/contenttest"
	"github.com/mxos-linux/mxos-update/internal/storage/object"
	"github.com/mxos-linux/mxos-update/internal/storage/s3store"
	"github.com/mxos-linux/mxos-update/internal/storage/storagetest"
)

// openS3Reg opens a registry whose blobs live in a new bucket of srv.
func openS3Reg(t *testing.T, srv *storagetest.S3Server, opts Options) *testReg {
	t.Helper()
	st, err := s3store.New(context.Background(), srv.Bucket(t))
	if err != nil {
		t.Fatal(err)
	}
	opts.Blobs, err = object.NewBlobs(st, "oci/blobs/")
	if err != nil {
		t.Fatal(err)
	}
	tr := openTestReg(t, t.TempDir(), opts)
	tr.objects = st
	return tr
}

// TestS3Blobs runs the registry with its blobs in an S3 bucket on a real
// S3 server (versitygw): the ContentStore contract, blob GETs with ranges
// and mounts, every refusal (nothing stored in the bucket either), a
// chunked upload, and garbage collection deleting from the bucket.
func TestS3Blobs(t *testing.T) {
	srv := storagetest.StartS3(t)
	t.Run("ContentStoreContract", func(t *testing.T) {
		contenttest.Run(t, func(t *testing.T) content.ContentStore { return openS3Reg(t, srv, Options{}).store })
	})
	t.Run("BlobGet", func(t *testing.T) { testBlobGet(t, openS3Reg(t, srv, Options{})) })
	t.Run("Refusals", func(t *testing.T) {
		testRefusals(t, func(t *testing.T) *testReg { return openS3Reg(t, srv, Options{}) })
	})
	t.Run("ChunkedUploadAndGC", func(t *testing.T) {
		tr := openS3Reg(t, srv, Options{GCGrace: time.Nanosecond})
		// A 5 MiB layer in two chunks: PutFile sends the upload's file.
		layer := make([]byte, 5<<20)
		_, _ = rand.Read(layer)
		ld := digest.FromBytes(layer)
		loc := tr.do("POST", "/v2/r/blobs/uploads/", nil).header.Get("Location")
		half := len(layer) / 2
		r := tr.do("PATCH", loc, layer[:half], "Content-Type: application/octet-stream", fmt.Sprintf("Content-Range: 0-%d", half-1))
		if r.status != http.StatusAccepted {
			t.Fatalf("patch: %d %s", r.status, r.body)
		}
		next := r.header.Get("Location")
		sep := "?"
		if strings.Contains(next, "?") {
			sep = "&"
		}
		r = tr.do("PUT", next+sep+"digest="+ld.String(), layer[half:], "Content-Type: application/octet-stream")
		if r.status != http.StatusCreated {
			t.Fatalf("put: %d %s", r.status, r.body)
		}
		if _, err := tr.objects.Stat(context.Background(), "oci/blobs/"+object.BlobKey(ld)); err != nil {
			t.Fatalf("the layer is not in the bucket: %v", err)
		}
		if _, err := os.Stat(filepath.Join(tr.dir, "blobs")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("blobs went to the local directory too: %v", err)
		}
		got := tr.do("GET", "/v2/r/blobs/"+ld.String(), nil)
		if got.status != 200 || digest.FromBytes(got.body) != ld {
			t.Fatalf("get layer: %d, %d bytes", got.status, len(got.body))
		}
		// Tag an image using the layer; push a blob nobody uses.
		body := tr.image("r", "cfg", nil)
		tr.put("r", "stable", body)
		unused := tr.pushBlob("r", []byte("nobody uses me"))
		time.Sleep(10 * time.Millisecond)
		st, err := tr.store.GC(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Blobs == 0 {
			t.Fatalf("GC removed no blob: %+v", st)
		}
		if _, err := tr.objects.Stat(context.Background(), "oci/blobs/"+object.BlobKey(unused)); !errors.Is(err, object.ErrNotFound) {
			t.Fatalf("unused blob still in the bucket: %v", err)
		}
		for _, d := range manifestBlobs(t, body) {
			if r := tr.do("GET", "/v2/r/blobs/"+d.String(), nil); r.status != 200 {
				t.Fatalf("blob %s of the tagged image: %d", d, r.status)
			}
		}
	})
}
