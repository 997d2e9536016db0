package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/mxos-linux/mxos-update/internal/storage/object"
)

// testAuthorize accepts "Bearer good", denies "Bearer device" and asks
// everyone else to authenticate, like the server's token check.
func testAuthorize(r *http.Request) error {
	switch r.Header.Get("Authorization") {
	case "Bearer good":
		return nil
	case "Bearer device":
		return ErrDenied
	}
	return ErrUnauthorized
}

type testReg struct {
	t     *testing.T
	dir   string
	store *Store
	url   string
	// objects is the bucket holding the blobs when they are not in dir.
	objects object.Store
}

func newTestReg(t *testing.T) *testReg {
	t.Helper()
	return openTestReg(t, t.TempDir(), Options{})
}

func openTestReg(t *testing.T, dir string, opts Options) *testReg {
	t.Helper()
	st, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(NewHandler(st, testAuthorize, nil))
	t.Cleanup(ts.Close)
	return &testReg{t: t, dir: dir, store: st, url: ts.URL}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

// code is the first error code of a spec error body.
func (r resp) code() string {
	var e struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	if json.Unmarshal(r.body, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Code
}

// do sends an authorized request; headers are "Name: value".
func (tr *testReg) do(method, path string, body []byte, headers ...string) resp {
	tr.t.Helper()
	return tr.doAs("Bearer good", method, path, body, headers...)
}

func (tr *testReg) doAs(authz, method, path string, body []byte, headers ...string) resp {
	tr.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	u := path
	if strings.HasPrefix(path, "/") {
		u = tr.url + path
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		tr.t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		if k == "Content-Length" {
			fmt.Sscan(v, &req.ContentLength)
			continue
		}
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tr.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, b}
}

// pushBlob stores b in repo with a monolithic POST.
func (tr *testReg) pushBlob(repo string, b []byte) digest.Digest {
	tr.t.Helper()
	d := digest.FromBytes(b)
	r := tr.do("POST", "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), b)
	if r.status != http.StatusCreated {
		tr.t.Fatalf("push blob: %d %s", r.status, r.body)
	}
	return d
}

// pushManifest PUTs body at ref and returns the answer.
func (tr *testReg) pushManifest(repo, ref, mediaType string, body []byte) resp {
	tr.t.Helper()
	return tr.do("PUT", "/v2/"+repo+"/manifests/"+ref, body, "Content-Type: "+mediaType)
}

// image pushes a config and one layer to repo and returns an image
// manifest naming them (not pushed), optionally with a subject.
func (tr *testReg) image(repo string, seed string, subject *descriptor) []byte {
	tr.t.Helper()
	cfg := tr.pushBlob(repo, []byte(`{"seed":"`+seed+`"}`))
	layer := tr.pushBlob(repo, []byte("layer of "+seed))
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaTypeOCIManifest,
		"config":        descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: cfg, Size: int64(len(`{"seed":"` + seed + `"}`))},
		"layers":        []descriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: layer, Size: int64(len("layer of " + seed))}},
	}
	if subject != nil {
		m["subject"] = subject
		m["artifactType"] = "application/vnd.example.sig"
	}
	b, _ := json.Marshal(m)
	return b
}

// files lists every file of the store except temporary ones, so a test can
// check that a refused request stored nothing.
func (tr *testReg) files() []string {
	tr.t.Helper()
	var out []string
	err := filepath.WalkDir(tr.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".tmp" || d.Name() == "tmp") {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(tr.dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		tr.t.Fatal(err)
	}
	if tr.objects != nil {
		err := tr.objects.List(context.Background(), "", func(i object.Info) error {
			out = append(out, "bucket:"+i.Key)
			return nil
		})
		if err != nil {
			tr.t.Fatal(err)
		}
	}
	slices.Sort(out)
	return out
}

// assertFiles checks that no file was added since before.
func (tr *testReg) assertFiles(before []string) {
	tr.t.Helper()
	// Nothing may be added; a refused upload may end its session.
	for _, f := range tr.files() {
		if !slices.Contains(before, f) {
			tr.t.Fatalf("%s was stored:\nbefore %v", f, before)
		}
	}
	for _, d := range []string{filepath.Join(tr.dir, "tmp"), filepath.Join(tr.dir, "blobs", ".tmp")} {
		if ents, _ := os.ReadDir(d); len(ents) != 0 {
			tr.t.Fatalf("temporary files left in %s: %v", d, ents)
		}
	}
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// newBenchServer serves h on a real loopback listener (httptest uses one
// too), so the blob path includes sendfile.
func newBenchServer(b *testing.B, h http.Handler) string {
	b.Helper()
	ts := httptest.NewServer(h)
	b.Cleanup(ts.Close)
	return ts.URL
}
