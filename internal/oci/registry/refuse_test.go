package registry

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestRefusals sends each kind of bad request the registry refuses and
// checks the spec error code and that nothing was stored.
func TestRefusals(t *testing.T) { testRefusals(t, newTestReg) }

func testRefusals(t *testing.T, newTestReg func(*testing.T) *testReg) {
	blob := []byte("the real blob")
	good := digest.FromBytes(blob)
	other := digest.FromBytes([]byte("other"))
	bigManifest := []byte(`{"schemaVersion":2,"mediaType":"` + MediaTypeOCIIndex + `","manifests":[],"annotations":{"x":"` +
		strings.Repeat("a", MaxManifestSize) + `"}}`)
	cfgDesc := func(d digest.Digest) string {
		return `{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + d.String() + `","size":13}`
	}
	manifest := func(extra string) []byte {
		return []byte(`{"schemaVersion":2` + extra + `}`)
	}
	type req struct {
		method, path string
		body         []byte
		headers      []string
	}
	tests := []struct {
		name   string
		setup  func(tr *testReg) string // returns an upload location, if any
		req    func(loc string) req
		status int
		code   string
	}{
		// Digests and names.
		{name: "digest with path characters (GET)", req: func(string) req { return req{"GET", "/v2/r/blobs/sha256:../../x", nil, nil} }, status: 400, code: "DIGEST_INVALID"},
		{name: "escaped slashes in digest", req: func(string) req { return req{"GET", "/v2/r/blobs/sha256:..%2F..%2Fx", nil, nil} }, status: 400, code: "DIGEST_INVALID"},
		{name: "digest with path characters (push)", req: func(string) req {
			return req{"POST", "/v2/r/blobs/uploads/?digest=sha256:../../x", blob, nil}
		}, status: 400, code: "DIGEST_INVALID"},
		{name: "digest with path characters (manifest)", req: func(string) req {
			return req{"PUT", "/v2/r/manifests/sha256:..%2F..%2Fx", manifest(`,"mediaType":"` + MediaTypeOCIIndex + `","manifests":[]`), []string{"Content-Type: " + MediaTypeOCIIndex}}
		}, status: 400, code: "DIGEST_INVALID"},
		{name: "digest with path characters (mount)", req: func(string) req {
			return req{"POST", "/v2/r/blobs/uploads/?mount=sha256:../x&from=s", nil, nil}
		}, status: 400, code: "DIGEST_INVALID"},
		{name: "md5 digest", req: func(string) req {
			return req{"POST", "/v2/r/blobs/uploads/?digest=md5:d41d8cd98f00b204e9800998ecf8427e", blob, nil}
		}, status: 400, code: "DIGEST_INVALID"},
		{name: "sha384 digest", req: func(string) req {
			return req{"GET", "/v2/r/blobs/" + digest.SHA384.FromBytes(blob).String(), nil, nil}
		}, status: 400, code: "DIGEST_INVALID"},
		{name: "upper-case name", req: func(string) req { return req{"POST", "/v2/Repo/blobs/uploads/?digest=" + good.String(), blob, nil} }, status: 400, code: "NAME_INVALID"},
		{name: "dot-dot name", req: func(string) req { return req{"POST", "/v2/a/../b/blobs/uploads/?digest=" + good.String(), blob, nil} }, status: 400, code: "NAME_INVALID"},
		{name: "name with double dot", req: func(string) req { return req{"GET", "/v2/a..b/tags/list", nil, nil} }, status: 400, code: "NAME_INVALID"},
		{name: "mount from bad name", req: func(string) req {
			return req{"POST", "/v2/r/blobs/uploads/?mount=" + good.String() + "&from=../x", nil, nil}
		}, status: 400, code: "NAME_INVALID"},
		{name: "bad tag", req: func(string) req {
			return req{"PUT", "/v2/r/manifests/-bad", manifest(`,"mediaType":"` + MediaTypeOCIIndex + `","manifests":[]`), []string{"Content-Type: " + MediaTypeOCIIndex}}
		}, status: 400, code: "MANIFEST_INVALID"},

		// Blob content.
		{name: "monolithic blob with wrong bytes", req: func(string) req {
			return req{"POST", "/v2/r/blobs/uploads/?digest=" + other.String(), blob, nil}
		}, status: 400, code: "DIGEST_INVALID"},
		{name: "sha512 blob with wrong bytes", req: func(string) req {
			return req{"POST", "/v2/r/blobs/uploads/?digest=" + digest.SHA512.FromBytes([]byte("x")).String(), blob, nil}
		}, status: 400, code: "DIGEST_INVALID"},
		{name: "POST then PUT with wrong bytes", setup: startUpload, req: func(loc string) req {
			return req{"PUT", loc + "?digest=" + other.String(), blob, []string{"Content-Type: application/octet-stream"}}
		}, status: 400, code: "DIGEST_INVALID"},

		// Upload sessions.
		{name: "chunk past the end", setup: startUpload, req: func(loc string) req {
			return req{"PATCH", loc, blob, []string{"Content-Range: 5-17"}}
		}, status: 416, code: "BLOB_UPLOAD_INVALID"},
		{name: "Content-Range longer than the body", setup: startUpload, req: func(loc string) req {
			return req{"PATCH", loc, blob, []string{fmt.Sprintf("Content-Range: 0-%d", len(blob))}}
		}, status: 416, code: "BLOB_UPLOAD_INVALID"},
		{name: "malformed Content-Range", setup: startUpload, req: func(loc string) req {
			return req{"PATCH", loc, blob, []string{"Content-Range: 0--1"}}
		}, status: 416, code: "BLOB_UPLOAD_INVALID"},
		{name: "Content-Range end before start", setup: startUpload, req: func(loc string) req {
			return req{"PATCH", loc, blob, []string{"Content-Range: 9-3"}}
		}, status: 416, code: "BLOB_UPLOAD_INVALID"},
		{name: "unknown upload", req: func(string) req {
			return req{"PATCH", "/v2/r/blobs/uploads/0123456789abcdef0123456789abcdef", blob, nil}
		}, status: 404, code: "BLOB_UPLOAD_UNKNOWN"},
		{name: "upload id with path characters", req: func(string) req {
			return req{"PUT", "/v2/r/blobs/uploads/..%2F..%2Fx?digest=" + good.String(), blob, nil}
		}, status: 400, code: "NAME_INVALID"},
		{name: "upload of another repository", setup: startUpload, req: func(loc string) req {
			return req{"PATCH", strings.Replace(loc, "/v2/r/", "/v2/other/", 1), blob, nil}
		}, status: 404, code: "BLOB_UPLOAD_UNKNOWN"},
		{name: "PUT without digest", setup: startUpload, req: func(loc string) req {
			return req{"PUT", loc, blob, nil}
		}, status: 400, code: "DIGEST_INVALID"},

		// Manifests.
		{name: "no mediaType, nothing to infer", req: func(string) req {
			return req{"PUT", "/v2/r/manifests/v1", manifest(``), nil}
		}, status: 400, code: "MANIFEST_INVALID"},
		{name: "mediaType differs from Content-Type", req: func(string) req {
			return req{"PUT", "/v2/r/manifests/v1", manifest(`,"mediaType":"` + MediaTypeOCIIndex + `","manifests":[]`), []string{"Content-Type: " + MediaTypeOCIManifest}}
		}, status: 400, code: "MANIFEST_INVALID"},
		{name: "index with layers", req: func(string) req {
			return req{"PUT", "/v2/r/manifests/v1", manifest(`,"mediaType":"` + MediaTypeOCIIndex + `","manifests":[],"layers":[]`), []string{"Content-Type: " + MediaTypeOCIIndex}}
		}, status: 400, code: "MANIFEST_INVALID"},
		{name: "manifest with manifests", req: func(string) req {
			return req{"PUT", "/v2/r/manifests/v1", manifest(`,"mediaType":"` + MediaTypeOCIManifest + `","config":` + cfgDesc(good) + `,"layers":[],"manifests":[]`), []string{"Content-Type: " + MediaTypeOCIManifest}}
		}, status: 400, code: "MANIFEST_INVALID"},
		{name: "untyped body that is an index under a manifest Content-Type", req: func(string) req {
			return req{"PUT", "/v2/r/manifests/v1", manifest(`,"manifests":[]`), []string{"Content-Type: " + MediaTypeOCIManifest}}
		}, status: 400, code: "MANIFEST_INVALID"},
		{name: "schema version 1", req: func(string) req {
			return req{"PUT", "/v2/r/manifests/v1", []byte(`{"schemaVersion":1,"mediaType":"` + MediaTypeOCIIndex + `","manifests":[]}`), []string{"Content-Type: " + MediaTypeOCIIndex}}
		}, status: 400, code: "MANIFEST_INVALID"},
		{name: "not JSON", req: func(string) req {
			return req{"PUT", "/v2/r/manifests/v1", []byte(`{"schemaVersion":2,`), []string{"Content-Type: " + MediaTypeOCIIndex}}
		}, status: 400, code: "MANIFEST_INVALID"},
		{name: "two JSON documents", req: func(string) req {
			return req{"PUT", "/v2/r/manifests/v1", []byte(`{"schemaVersion":2,"mediaType":"` + MediaTypeOCIIndex + `","manifests":[]}{}`), []string{"Content-Type: " + MediaTypeOCIIndex}}
		}, status: 400, code: "MANIFEST_INVALID"},
		{name: "descriptor with a bad digest", req: func(string) req {
			return req{"PUT", "/v2/r/manifests/v1", manifest(`,"mediaType":"` + MediaTypeOCIIndex + `","manifests":[{"mediaType":"` + MediaTypeOCIManifest + `","digest":"sha256:../../x","size":1}]`), []string{"Content-Type: " + MediaTypeOCIIndex}}
		}, status: 400, code: "MANIFEST_INVALID"},
		{name: "unsupported media type", req: func(string) req {
			return req{"PUT", "/v2/r/manifests/v1", manifest(`,"mediaType":"application/vnd.docker.distribution.manifest.v1+json","config":` + cfgDesc(good)), []string{"Content-Type: application/vnd.docker.distribution.manifest.v1+json"}}
		}, status: 400, code: "MANIFEST_INVALID"},
		{name: "manifest over the size cap", req: func(string) req {
			return req{"PUT", "/v2/r/manifests/v1", bigManifest, []string{"Content-Type: " + MediaTypeOCIIndex}}
		}, status: 413, code: "SIZE_INVALID"},
		{name: "manifest whose config was never pushed", req: func(string) req {
			return req{"PUT", "/v2/r/manifests/v1", manifest(`,"mediaType":"` + MediaTypeOCIManifest + `","config":` + cfgDesc(other) + `,"layers":[]`), []string{"Content-Type: " + MediaTypeOCIManifest}}
		}, status: 400, code: "MANIFEST_BLOB_UNKNOWN"},
		{name: "manifest whose blob is in another repository", setup: func(tr *testReg) string {
			tr.pushBlob("elsewhere", blob)
			return ""
		}, req: func(string) req {
			return req{"PUT", "/v2/r/manifests/v1", manifest(`,"mediaType":"` + MediaTypeOCIManifest + `","config":` + cfgDesc(good) + `,"layers":[]`), []string{"Content-Type: " + MediaTypeOCIManifest}}
		}, status: 400, code: "MANIFEST_BLOB_UNKNOWN"},
		{name: "manifest not matching its digest", req: func(string) req {
			return req{"PUT", "/v2/r/manifests/" + other.String(), manifest(`,"mediaType":"` + MediaTypeOCIIndex + `","manifests":[]`), []string{"Content-Type: " + MediaTypeOCIIndex}}
		}, status: 400, code: "DIGEST_INVALID"},

		// Authorization.
		{name: "push without a token", req: func(string) req {
			return req{"POST", "/v2/r/blobs/uploads/?digest=" + good.String(), blob, []string{"Authorization: "}}
		}, status: 401, code: "UNAUTHORIZED"},
		{name: "push with a device token", req: func(string) req {
			return req{"POST", "/v2/r/blobs/uploads/?digest=" + good.String(), blob, []string{"Authorization: Bearer device"}}
		}, status: 403, code: "DENIED"},
		{name: "delete with a device token", setup: func(tr *testReg) string {
			tr.pushBlob("r", blob)
			return ""
		}, req: func(string) req {
			return req{"DELETE", "/v2/r/blobs/" + good.String(), nil, []string{"Authorization: Bearer device"}}
		}, status: 403, code: "DENIED"},
		{name: "continue an upload without a token", setup: startUpload, req: func(loc string) req {
			return req{"PUT", loc + "?digest=" + good.String(), blob, []string{"Authorization: Bearer wrong"}}
		}, status: 401, code: "UNAUTHORIZED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTestReg(t)
			loc := ""
			if tt.setup != nil {
				loc = tt.setup(tr)
			}
			before := tr.files()
			rq := tt.req(loc)
			authz := "Bearer good"
			var headers []string
			for _, h := range rq.headers {
				if v, ok := strings.CutPrefix(h, "Authorization: "); ok {
					authz = v
					continue
				}
				headers = append(headers, h)
			}
			r := tr.doAs(authz, rq.method, rq.path, rq.body, headers...)
			if r.status != tt.status || r.code() != tt.code {
				t.Fatalf("%s %s: HTTP %d %s, want %d %s", rq.method, rq.path, r.status, r.body, tt.status, tt.code)
			}
			if r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("error Content-Type %q", r.header.Get("Content-Type"))
			}
			if tt.status == 401 && r.header.Get("WWW-Authenticate") != `Basic realm="mxos"` {
				t.Fatalf("WWW-Authenticate = %q", r.header.Get("WWW-Authenticate"))
			}
			tr.assertFiles(before)
			if loc != "" {
				// A refused chunk leaves the session as it was: it is still
				// empty and can be finished correctly.
				st := tr.do("GET", loc, nil)
				if st.status == http.StatusNoContent && st.header.Get("Range") != "0-0" {
					t.Fatalf("session after refusal: Range %q", st.header.Get("Range"))
				}
			}
		})
	}
}

// startUpload opens an upload session in repository r and returns its
// location.
func startUpload(tr *testReg) string {
	tr.t.Helper()
	r := tr.do("POST", "/v2/r/blobs/uploads/", nil)
	if r.status != http.StatusAccepted || r.header.Get("Location") == "" {
		tr.t.Fatalf("start upload: %d %s", r.status, r.body)
	}
	return r.header.Get("Location")
}

// TestRefusedChunkCanBeResent: after a chunk is refused the upload goes on
// from where it was.
func TestRefusedChunkCanBeResent(t *testing.T) {
	tr := newTestReg(t)
	loc := startUpload(tr)
	data := bytes.Repeat([]byte("0123456789"), 100)
	if r := tr.do("PATCH", loc, data[:500], "Content-Range: 0-499"); r.status != 202 || r.header.Get("Range") != "0-499" {
		t.Fatalf("first chunk: %d %v %s", r.status, r.header, r.body)
	}
	if r := tr.do("PATCH", loc, data[500:], "Content-Range: 400-899"); r.status != 416 || r.code() != "BLOB_UPLOAD_INVALID" {
		t.Fatalf("overlapping chunk: %d %s", r.status, r.body)
	}
	if r := tr.do("GET", loc, nil); r.status != 204 || r.header.Get("Range") != "0-499" {
		t.Fatalf("status after refusal: %d Range %q", r.status, r.header.Get("Range"))
	}
	if r := tr.do("PATCH", loc, data[500:], "Content-Range: 500-999"); r.status != 202 || r.header.Get("Range") != "0-999" {
		t.Fatalf("second chunk: %d %s", r.status, r.body)
	}
	d := digest.FromBytes(data)
	if r := tr.do("PUT", loc+"?digest="+d.String(), nil); r.status != 201 || r.header.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("finish: %d %s", r.status, r.body)
	}
	if r := tr.do("GET", "/v2/r/blobs/"+d.String(), nil); r.status != 200 || !bytes.Equal(r.body, data) {
		t.Fatalf("get: %d", r.status)
	}
	if r := tr.do("GET", loc, nil); r.status != 404 || r.code() != "BLOB_UPLOAD_UNKNOWN" {
		t.Fatalf("finished session still answers: %d %s", r.status, r.body)
	}
}
