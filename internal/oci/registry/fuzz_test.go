package registry

import (
	"net/http"
	"strings"
	"testing"
)

func FuzzParseManifest(f *testing.F) {
	f.Add("", []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`))
	f.Add(MediaTypeOCIManifest, []byte(`{"schemaVersion":2,"config":{"mediaType":"a","digest":"sha256:`+strings.Repeat("a", 64)+`","size":1},"layers":[]}`))
	f.Add(MediaTypeOCIIndex, []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha512:`+strings.Repeat("b", 128)+`","size":-1}],"layers":null}`))
	f.Add("text/plain; charset=", []byte(`{"schemaVersion":2}{}`))
	f.Add(MediaTypeDockerManifest, []byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{},"subject":{"digest":"sha256:../x"}}`))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		m, err := parseManifest(contentType, body)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		// Whatever is accepted is unambiguous and names only valid digests.
		if isIndexType(m.MediaType) == isManifestType(m.MediaType) {
			t.Fatalf("accepted type %q", m.MediaType)
		}
		if isIndexType(m.MediaType) && (m.Config != nil || len(m.Layers) > 0) {
			t.Fatal("accepted an index with config or layers")
		}
		if isManifestType(m.MediaType) && (m.Config == nil || len(m.Manifests) > 0) {
			t.Fatal("accepted an image manifest without config or with manifests")
		}
		for _, d := range append(m.blobRefs(), m.Manifests...) {
			if _, err := parseDigest(string(d.Digest)); err != nil {
				t.Fatalf("accepted descriptor digest %q", d.Digest)
			}
		}
	})
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/a/b/manifests/latest", "/v2/a/blobs/uploads/", "/v2/a/blobs/uploads/0123",
		"/v2/blobs/blobs/uploads/x", "/v2/r/referrers/sha256:00", "/v2/r/tags/list", "/v2/r/blobs/sha256:../../x", "/v2//x", "/v2/a/./b"} {
		f.Add(s, "0-10")
	}
	f.Fuzz(func(t *testing.T, p, contentRange string) {
		if !cleanSegments(p) {
			_ = badPathError(p)
		} else if rt, ok := parsePath(p); ok && rt.kind != "base" {
			if checkName(rt.name) == nil {
				// A valid name is a safe relative path.
				for _, seg := range strings.Split(rt.name, "/") {
					if seg == "" || seg == "." || seg == ".." || strings.HasPrefix(seg, "_") {
						t.Fatalf("name %q passed", rt.name)
					}
				}
			}
			if rt.kind == "manifest" {
				if tag, d, err := parseReference(rt.arg); err == nil && tag == "" && strings.ContainsAny(string(d), "/.") {
					t.Fatalf("digest %q passed", d)
				}
			}
		}
		r, _ := http.NewRequest("PATCH", "http://x/", nil)
		r.Header.Set("Content-Range", contentRange)
		r.ContentLength = -1
		if start, n, err := parseContentRange(r); err == nil && (start < -1 || n < -1 || (start >= 0 && n <= 0)) {
			t.Fatalf("Content-Range %q gave %d, %d", contentRange, start, n)
		}
	})
}
