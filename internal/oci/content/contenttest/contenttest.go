// Package contenttest is the shared contract suite of content.ContentStore:
// Run checks one implementation against what the interface promises, so
// every store (the registry's on-disk store, the regclient HTTP client, the
// test MemStore) behaves the same and a test written against one holds for
// the others. It is imported only from _test.go files.
//
// The contract, beyond the interface's doc comments, as the registry's
// store defines it:
//   - blobs belong to a repository: a blob put in one is not in another;
//   - PutBlob refuses, with content.ErrInvalid and nothing stored, a
//     malformed digest, content that does not match the digest or the size,
//     and a malformed repository name; putting a blob already there
//     succeeds;
//   - PutManifest returns the sha256 of the exact bytes; it refuses
//     (content.ErrInvalid, nothing stored or tagged) a body that is not an
//     OCI manifest, a malformed tag, and an image manifest whose config or
//     layers are not in the repository yet (push blobs first);
//   - GetManifest resolves tags and digests to the stored bytes and media
//     type; a tag moves to the last manifest put under it;
//   - unknown repositories, tags and digests are content.ErrNotFound
//     (ListTags of a repository never pushed to too); ListTags lists a
//     known repository's tags in lexical order;
//   - a cancelled context stops a put before anything is stored.
package contenttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/mxos-linux/mxos-update/internal/oci/content"
)

// Run runs the contract against stores made by newStore; each subtest
// gets a new, empty store.
func Run(t *testing.T, newStore func(t *testing.T) content.ContentStore) {
	t.Helper()
	for _, tc := range []struct {
		name string
		f    func(*testing.T, content.ContentStore)
	}{
		{"BlobRoundTrip", testBlobRoundTrip},
		{"BlobPutAgain", testBlobPutAgain},
		{"BlobRefused", testBlobRefused},
		{"ManifestByTagAndDigest", testManifestByTagAndDigest},
		{"ManifestUntagged", testManifestUntagged},
		{"TagMoves", testTagMoves},
		{"ManifestRefused", testManifestRefused},
		{"NotFound", testNotFound},
		{"CancelledContext", testCancelled},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, newStore(t)) })
	}
}

const repo = "mxos/contract"

var ctx = context.Background()

func putBlob(t *testing.T, s content.ContentStore, repo string, b []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(b)
	if err := s.PutBlob(ctx, repo, d, int64(len(b)), bytes.NewReader(b)); err != nil {
		t.Fatalf("PutBlob %s in %s: %v", d, repo, err)
	}
	return d
}

func hasBlob(t *testing.T, s content.ContentStore, repo string, d digest.Digest) bool {
	t.Helper()
	ok, err := s.HasBlob(ctx, repo, d)
	if err != nil {
		t.Fatalf("HasBlob %s in %s: %v", d, repo, err)
	}
	return ok
}

// image pushes a config and a layer made from seed to repo and returns an
// image manifest referencing them.
func image(t *testing.T, s content.ContentStore, repo, seed string) []byte {
	t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Labels":{"seed":"` + seed + `"}}}`)
	layer := []byte("layer bytes of " + seed)
	return manifest(t, s, repo, cfg, layer, true)
}

// manifest builds an image manifest of cfg and layer, pushing them to repo
// first when push is set.
func manifest(t *testing.T, s content.ContentStore, repo string, cfg, layer []byte, push bool) []byte {
	t.Helper()
	if push {
		putBlob(t, s, repo, cfg)
		putBlob(t, s, repo, layer)
	}
	m := v1.Manifest{
		MediaType: v1.MediaTypeImageManifest,
		Config:    v1.Descriptor{MediaType: v1.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))},
		Layers:    []v1.Descriptor{{MediaType: v1.MediaTypeImageLayer, Digest: digest.FromBytes(layer), Size: int64(len(layer))}},
	}
	m.SchemaVersion = 2
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func putManifest(t *testing.T, s content.ContentStore, repo, tag string, body []byte) digest.Digest {
	t.Helper()
	d, err := s.PutManifest(ctx, repo, tag, v1.MediaTypeImageManifest, body)
	if err != nil {
		t.Fatalf("PutManifest %s:%s: %v", repo, tag, err)
	}
	if want := digest.FromBytes(body); d != want {
		t.Fatalf("PutManifest returned %s, want the sha256 of the body %s", d, want)
	}
	return d
}

func checkManifest(t *testing.T, s content.ContentStore, repo, ref string, wantBody []byte) {
	t.Helper()
	mt, body, d, err := s.GetManifest(ctx, repo, ref)
	if err != nil {
		t.Fatalf("GetManifest %s %s: %v", repo, ref, err)
	}
	if mt != v1.MediaTypeImageManifest || !bytes.Equal(body, wantBody) || d != digest.FromBytes(wantBody) {
		t.Fatalf("GetManifest %s %s = %q, %d bytes, %s; want %q, the %d bytes put, %s",
			repo, ref, mt, len(body), d, v1.MediaTypeImageManifest, len(wantBody), digest.FromBytes(wantBody))
	}
}

func listTags(t *testing.T, s content.ContentStore, repo string) []string {
	t.Helper()
	tags, err := s.ListTags(ctx, repo)
	if err != nil {
		t.Fatalf("ListTags %s: %v", repo, err)
	}
	return tags
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: got %v, want an error wrapping %q", what, err, target)
	}
}

func testBlobRoundTrip(t *testing.T, s content.ContentStore) {
	b := []byte("a blob")
	d := digest.FromBytes(b)
	if hasBlob(t, s, repo, d) {
		t.Fatal("HasBlob is true before PutBlob")
	}
	putBlob(t, s, repo, b)
	if !hasBlob(t, s, repo, d) {
		t.Fatal("HasBlob is false after PutBlob")
	}
	if hasBlob(t, s, "mxos/other", d) {
		t.Error("a blob put in one repository is in another")
	}
	empty := putBlob(t, s, repo, nil)
	if !hasBlob(t, s, repo, empty) {
		t.Error("the empty blob is not stored")
	}
}

func testBlobPutAgain(t *testing.T, s content.ContentStore) {
	b := []byte("put twice")
	putBlob(t, s, repo, b)
	putBlob(t, s, repo, b) // fails the test if refused
	putBlob(t, s, "mxos/other", b)
	if !hasBlob(t, s, repo, digest.FromBytes(b)) || !hasBlob(t, s, "mxos/other", digest.FromBytes(b)) {
		t.Fatal("a blob put again is missing")
	}
}

func testBlobRefused(t *testing.T, s content.ContentStore) {
	b := []byte("the real content")
	d := digest.FromBytes(b)
	tests := []struct {
		name string
		repo string
		d    digest.Digest
		size int64
		body []byte
	}{
		{"content not matching the digest", repo, d, int64(len(b)), []byte("other content 16")},
		{"size larger than the content", repo, d, int64(len(b)) + 1, b},
		{"size smaller than the content", repo, d, int64(len(b)) - 1, b},
		{"malformed digest", repo, "sha256:not-hex", int64(len(b)), b},
		{"unknown algorithm", repo, "md5:d41d8cd98f00b204e9800998ecf8427e", int64(len(b)), b},
		{"repository name with capitals", "MxOS/Bad", d, int64(len(b)), b},
		{"repository name with dot-dot", "mxos/../etc", d, int64(len(b)), b},
	}
	for _, tc := range tests {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			err := s.PutBlob(ctx, tc.repo, tc.d, tc.size, bytes.NewReader(tc.body))
			wantErr(t, "PutBlob", err, content.ErrInvalid)
			if ok, _ := s.HasBlob(ctx, repo, d); ok {
				t.Errorf("a refused blob is stored")
			}
		})
	}
}

func testManifestByTagAndDigest(t *testing.T, s content.ContentStore) {
	m := image(t, s, repo, "1")
	d := putManifest(t, s, repo, "1.0", m)
	checkManifest(t, s, repo, "1.0", m)
	checkManifest(t, s, repo, d.String(), m)
	if tags := listTags(t, s, repo); !slices.Equal(tags, []string{"1.0"}) {
		t.Errorf("ListTags = %q, want [1.0]", tags)
	}
	if _, _, _, err := s.GetManifest(ctx, "mxos/other", d.String()); !errors.Is(err, content.ErrNotFound) {
		t.Errorf("GetManifest of a manifest put in another repository: %v, want not found", err)
	}
}

func testManifestUntagged(t *testing.T, s content.ContentStore) {
	tagged := putManifest(t, s, repo, "keep", image(t, s, repo, "tagged"))
	m := image(t, s, repo, "untagged")
	d := putManifest(t, s, repo, "", m)
	checkManifest(t, s, repo, d.String(), m)
	if tags := listTags(t, s, repo); !slices.Equal(tags, []string{"keep"}) {
		t.Errorf("ListTags = %q after an untagged put, want [keep]", tags)
	}
	if _, _, got, _ := s.GetManifest(ctx, repo, "keep"); got != tagged {
		t.Errorf("an untagged put moved tag keep to %s", got)
	}
}

func testTagMoves(t *testing.T, s content.ContentStore) {
	m1, m2 := image(t, s, repo, "one"), image(t, s, repo, "two")
	d1 := putManifest(t, s, repo, "stable", m1)
	putManifest(t, s, repo, "1.0", m1)
	putManifest(t, s, repo, "stable", m2)
	putManifest(t, s, repo, "2.0", m2)
	putManifest(t, s, repo, "10.0", m2)
	checkManifest(t, s, repo, "stable", m2)
	checkManifest(t, s, repo, "1.0", m1)
	checkManifest(t, s, repo, d1.String(), m1) // still there by digest
	if tags, want := listTags(t, s, repo), []string{"1.0", "10.0", "2.0", "stable"}; !slices.Equal(tags, want) {
		t.Errorf("ListTags = %q, want %q (lexical order)", tags, want)
	}
}

func testManifestRefused(t *testing.T, s content.ContentStore) {
	good := image(t, s, repo, "good")
	missing := manifest(t, s, repo, []byte(`{"config":"never pushed"}`), []byte("layer never pushed"), false)
	var index v1.Index
	index.SchemaVersion = 1
	index.MediaType = v1.MediaTypeImageIndex
	badSchema, _ := json.Marshal(index)
	tests := []struct {
		name, repo, tag string
		body            []byte
	}{
		{"not JSON", repo, "x", []byte("not a manifest")},
		{"trailing data", repo, "x", append(bytes.Clone(good), []byte(" {}")...)},
		{"schemaVersion 1", repo, "x", badSchema},
		{"blobs not pushed", repo, "x", missing},
		{"blobs pushed to another repository", "mxos/other", "x", good},
		{"malformed tag", repo, "bad tag!", good},
		{"tag starting with a dot", repo, ".hidden", good},
		{"malformed repository name", "Bad_Repo", "x", good},
	}
	for _, tc := range tests {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			_, err := s.PutManifest(ctx, tc.repo, tc.tag, v1.MediaTypeImageManifest, tc.body)
			wantErr(t, "PutManifest", err, content.ErrInvalid)
			if _, _, _, err := s.GetManifest(ctx, tc.repo, digest.FromBytes(tc.body).String()); err == nil {
				t.Error("a refused manifest is stored")
			}
		})
	}
	if _, _, _, err := s.GetManifest(ctx, repo, "x"); !errors.Is(err, content.ErrNotFound) {
		t.Errorf("a refused manifest was tagged: GetManifest x: %v", err)
	}
}

func testNotFound(t *testing.T, s content.ContentStore) {
	putManifest(t, s, repo, "1.0", image(t, s, repo, "1"))
	unknown := digest.FromString("never stored")
	for _, tc := range []struct{ repo, ref string }{
		{repo, "2.0"},
		{repo, unknown.String()},
		{"mxos/never-pushed", "1.0"},
		{"mxos/never-pushed", unknown.String()},
	} {
		_, _, _, err := s.GetManifest(ctx, tc.repo, tc.ref)
		wantErr(t, fmt.Sprintf("GetManifest %s %s", tc.repo, tc.ref), err, content.ErrNotFound)
	}
	_, err := s.ListTags(ctx, "mxos/never-pushed")
	wantErr(t, "ListTags of an unknown repository", err, content.ErrNotFound)
	if hasBlob(t, s, repo, unknown) {
		t.Error("HasBlob is true for a blob never put")
	}
}

func testCancelled(t *testing.T, s content.ContentStore) {
	c, cancel := context.WithCancel(ctx)
	cancel()
	b := []byte("put with a cancelled context")
	if err := s.PutBlob(c, repo, digest.FromBytes(b), int64(len(b)), bytes.NewReader(b)); err == nil {
		t.Error("PutBlob with a cancelled context succeeded")
	}
	if hasBlob(t, s, repo, digest.FromBytes(b)) {
		t.Error("PutBlob with a cancelled context stored the blob")
	}
	m := image(t, s, repo, "cancelled")
	if _, err := s.PutManifest(c, repo, "x", v1.MediaTypeImageManifest, m); err == nil {
		t.Error("PutManifest with a cancelled context succeeded")
	}
	if _, _, _, err := s.GetManifest(ctx, repo, "x"); !errors.Is(err, content.ErrNotFound) {
		t.Errorf("PutManifest with a cancelled context tagged it: %v", err)
	}
}
