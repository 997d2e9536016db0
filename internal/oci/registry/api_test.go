package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestContentStore(t *testing.T) {
	ctx := context.Background()
	tr := newTestReg(t)
	var cs ContentStore = tr.store
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	cd := digest.FromBytes(cfg)

	before := tr.files()
	for _, tc := range []struct {
		name string
		repo string
		d    digest.Digest
		size int64
	}{
		{"wrong digest", "os/x", digest.FromBytes([]byte("no")), int64(len(cfg))},
		{"wrong size", "os/x", cd, 3},
		{"path digest", "os/x", "sha256:../../etc", int64(len(cfg))},
		{"bad repo", "../x", cd, int64(len(cfg))},
	} {
		if err := cs.PutBlob(ctx, tc.repo, tc.d, tc.size, bytes.NewReader(cfg)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: PutBlob = %v, want ErrInvalid", tc.name, err)
		}
	}
	tr.assertFiles(before)

	if ok, err := cs.HasBlob(ctx, "os/x", cd); ok || err != nil {
		t.Fatalf("HasBlob before push = %v, %v", ok, err)
	}
	if err := cs.PutBlob(ctx, "os/x", cd, int64(len(cfg)), bytes.NewReader(cfg)); err != nil {
		t.Fatal(err)
	}
	// Present already: a no-op that does not need the bytes again.
	if err := cs.PutBlob(ctx, "os/x", cd, int64(len(cfg)), strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	if ok, err := cs.HasBlob(ctx, "os/x", cd); !ok || err != nil {
		t.Fatalf("HasBlob = %v, %v", ok, err)
	}
	if ok, _ := cs.HasBlob(ctx, "os/other", cd); ok {
		t.Fatal("blob visible in another repository")
	}
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[]}`,
		MediaTypeOCIManifest, cd, len(cfg)))
	md, err := cs.PutManifest(ctx, "os/x", "stable", MediaTypeOCIManifest, m)
	if err != nil || md != digest.FromBytes(m) {
		t.Fatalf("PutManifest = %s, %v", md, err)
	}
	for _, ref := range []string{"stable", md.String()} {
		mt, body, d, err := cs.GetManifest(ctx, "os/x", ref)
		if err != nil || mt != MediaTypeOCIManifest || !bytes.Equal(body, m) || d != md {
			t.Fatalf("GetManifest(%s) = %s, %d bytes, %s, %v", ref, mt, len(body), d, err)
		}
	}
	if tags, err := cs.ListTags(ctx, "os/x"); err != nil || !slices.Equal(tags, []string{"stable"}) {
		t.Fatalf("ListTags = %v, %v", tags, err)
	}
	if _, err := cs.PutManifest(ctx, "os/y", "v1", MediaTypeOCIManifest, m); !errors.Is(err, ErrInvalid) {
		t.Fatalf("manifest naming blobs of another repository: %v", err)
	}
	for _, ref := range []string{"missing", digest.FromBytes([]byte("x")).String()} {
		if _, _, _, err := cs.GetManifest(ctx, "os/x", ref); !errors.Is(err, ErrNotFound) {
			t.Fatalf("GetManifest(%s) = %v, want ErrNotFound", ref, err)
		}
	}
	if _, err := cs.ListTags(ctx, "os/none"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ListTags of unknown repo = %v", err)
	}
	if _, _, _, err := cs.GetManifest(ctx, "os/none", "stable"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetManifest in unknown repo = %v", err)
	}
	// What the Go API stored is served over HTTP.
	r := tr.do("GET", "/v2/os/x/manifests/stable", nil)
	if r.status != 200 || r.header.Get("Content-Type") != MediaTypeOCIManifest || r.header.Get("Docker-Content-Digest") != md.String() || !bytes.Equal(r.body, m) {
		t.Fatalf("GET manifest: %d %v", r.status, r.header)
	}
}

func TestTagPagination(t *testing.T) {
	tr := newTestReg(t)
	idx := []byte(`{"schemaVersion":2,"mediaType":"` + MediaTypeOCIIndex + `","manifests":[]}`)
	want := []string{"a", "b", "c", "d", "e"}
	for _, tag := range []string{"d", "b", "e", "a", "c"} {
		if r := tr.pushManifest("r", tag, MediaTypeOCIIndex, idx); r.status != 201 {
			t.Fatalf("push %s: %d %s", tag, r.status, r.body)
		}
	}
	var got []string
	next := "/v2/r/tags/list?n=2"
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		r := tr.do("GET", next, nil)
		var l struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if r.status != 200 || json.Unmarshal(r.body, &l) != nil || l.Name != "r" || len(l.Tags) > 2 {
			t.Fatalf("GET %s: %d %s", next, r.status, r.body)
		}
		got = append(got, l.Tags...)
		next = ""
		if link := r.header.Get("Link"); link != "" {
			u, _, ok := strings.Cut(strings.TrimPrefix(link, "<"), ">")
			if !ok || !strings.HasSuffix(link, `rel="next"`) {
				t.Fatalf("Link %q", link)
			}
			next = u
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged tags %v, want %v", got, want)
	}
	r := tr.do("GET", "/v2/r/tags/list?n=0", nil)
	if r.status != 200 || r.header.Get("Link") != "" || !strings.Contains(string(r.body), `"tags":[]`) {
		t.Fatalf("n=0: %d %s %v", r.status, r.body, r.header)
	}
	r = tr.do("GET", "/v2/r/tags/list?last=c", nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"tags":["d","e"]`) {
		t.Fatalf("last=c: %s", r.body)
	}
	if r := tr.do("GET", "/v2/r/tags/list?n=-1", nil); r.status != 400 {
		t.Fatalf("n=-1: %d", r.status)
	}
	if r := tr.do("GET", "/v2/nothing/tags/list", nil); r.status != 404 || r.code() != "NAME_UNKNOWN" {
		t.Fatalf("unknown repo: %d %s", r.status, r.body)
	}
}

func TestReferrers(t *testing.T) {
	tr := newTestReg(t)
	subjBody := tr.image("r", "subject", nil)
	subj := tr.put("r", "v1", subjBody)
	sd := &descriptor{MediaType: MediaTypeOCIManifest, Digest: subj, Size: int64(len(subjBody))}
	refBody := tr.image("r", "sig", sd)
	r := tr.pushManifest("r", digest.FromBytes(refBody).String(), MediaTypeOCIManifest, refBody)
	if r.status != 201 || r.header.Get("OCI-Subject") != subj.String() {
		t.Fatalf("push referrer: %d OCI-Subject %q", r.status, r.header.Get("OCI-Subject"))
	}
	ref := digest.Digest(r.header.Get("Docker-Content-Digest"))
	// A referrer whose subject does not exist is accepted too.
	orphanBody := tr.image("r", "orphan", &descriptor{MediaType: MediaTypeOCIManifest, Digest: digest.FromBytes([]byte("ghost")), Size: 5})
	if r := tr.pushManifest("r", "orphan", MediaTypeOCIManifest, orphanBody); r.status != 201 {
		t.Fatalf("push referrer of a missing subject: %d %s", r.status, r.body)
	}

	list := func(query string) ([]descriptor, http.Header) {
		t.Helper()
		r := tr.do("GET", "/v2/r/referrers/"+subj.String()+query, nil)
		var idx struct {
			SchemaVersion int          `json:"schemaVersion"`
			MediaType     string       `json:"mediaType"`
			Manifests     []descriptor `json:"manifests"`
		}
		if r.status != 200 || r.header.Get("Content-Type") != MediaTypeOCIIndex || json.Unmarshal(r.body, &idx) != nil ||
			idx.SchemaVersion != 2 || idx.MediaType != MediaTypeOCIIndex || idx.Manifests == nil {
			t.Fatalf("referrers%s: %d %s", query, r.status, r.body)
		}
		return idx.Manifests, r.header
	}
	got, h := list("")
	if len(got) != 1 || got[0].Digest != ref || got[0].ArtifactType != "application/vnd.example.sig" || h.Get("OCI-Filters-Applied") != "" {
		t.Fatalf("referrers: %+v", got)
	}
	if got, h := list("?artifactType=application/vnd.example.sig"); len(got) != 1 || h.Get("OCI-Filters-Applied") != "artifactType" {
		t.Fatalf("filtered referrers: %+v %v", got, h)
	}
	if got, _ := list("?artifactType=application/other"); len(got) != 0 {
		t.Fatalf("filter kept %+v", got)
	}
	if r := tr.do("DELETE", "/v2/r/manifests/"+ref.String(), nil); r.status != 202 {
		t.Fatalf("delete referrer: %d", r.status)
	}
	if got, _ := list(""); len(got) != 0 {
		t.Fatalf("deleted referrer still listed: %+v", got)
	}
	if r := tr.do("GET", "/v2/r/referrers/sha256:nothex", nil); r.status != 400 || r.code() != "DIGEST_INVALID" {
		t.Fatalf("bad digest: %d %s", r.status, r.body)
	}
}

func TestBlobGet(t *testing.T) { testBlobGet(t, newTestReg(t)) }

func testBlobGet(t *testing.T, tr *testReg) {
	data := []byte("0123456789abcdefghij")
	d := tr.pushBlob("r", data)
	r := tr.do("GET", "/v2/r/blobs/"+d.String(), nil, "Range: bytes=5-9")
	if r.status != http.StatusPartialContent || string(r.body) != "56789" || r.header.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("range: %d %q %v", r.status, r.body, r.header)
	}
	r = tr.do("HEAD", "/v2/r/blobs/"+d.String(), nil)
	if r.status != 200 || r.header.Get("Content-Length") != fmt.Sprint(len(data)) || r.header.Get("Docker-Content-Digest") != d.String() || len(r.body) != 0 {
		t.Fatalf("head: %d %v", r.status, r.header)
	}
	if r := tr.do("GET", "/v2/other/blobs/"+d.String(), nil); r.status != 404 || r.code() != "BLOB_UNKNOWN" {
		t.Fatalf("blob of another repository: %d %s", r.status, r.body)
	}
	// Mounting makes it visible there; then deleting unlinks it again.
	if r := tr.do("POST", "/v2/other/blobs/uploads/?mount="+d.String()+"&from=r", nil); r.status != 201 {
		t.Fatalf("mount: %d %s", r.status, r.body)
	}
	if r := tr.do("GET", "/v2/other/blobs/"+d.String(), nil); r.status != 200 {
		t.Fatalf("mounted blob: %d", r.status)
	}
	if r := tr.do("DELETE", "/v2/other/blobs/"+d.String(), nil); r.status != 202 {
		t.Fatalf("delete: %d", r.status)
	}
	if r := tr.do("GET", "/v2/other/blobs/"+d.String(), nil); r.status != 404 {
		t.Fatalf("deleted blob: %d", r.status)
	}
	if r := tr.do("GET", "/v2/r/blobs/"+d.String(), nil); r.status != 200 {
		t.Fatalf("blob in the first repository after delete elsewhere: %d", r.status)
	}
	// A mount of something missing falls back to an upload session.
	if r := tr.do("POST", "/v2/other/blobs/uploads/?mount="+digest.FromBytes([]byte("x")).String()+"&from=r", nil); r.status != 202 || r.header.Get("Location") == "" {
		t.Fatalf("mount of missing blob: %d %s", r.status, r.body)
	}
}
