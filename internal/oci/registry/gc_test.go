package registry

import (
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// backdate makes every file of the store look written ago.
func (tr *testReg) backdate(ago time.Duration) {
	tr.t.Helper()
	old := time.Now().Add(-ago)
	err := filepath.WalkDir(tr.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, old, old)
	})
	if err != nil {
		tr.t.Fatal(err)
	}
}

// manifestBlobs returns the digests a manifest body names as config and
// layers.
func manifestBlobs(t *testing.T, body []byte) []digest.Digest {
	t.Helper()
	m, err := parseManifest("", body)
	if err != nil {
		t.Fatal(err)
	}
	var out []digest.Digest
	for _, d := range m.blobRefs() {
		out = append(out, d.Digest)
	}
	return out
}

func (tr *testReg) put(repo, ref string, body []byte) digest.Digest {
	tr.t.Helper()
	var mt struct {
		MediaType string `json:"mediaType"`
	}
	_ = json.Unmarshal(body, &mt)
	r := tr.pushManifest(repo, ref, mt.MediaType, body)
	if r.status != http.StatusCreated {
		tr.t.Fatalf("put manifest %s: %d %s", ref, r.status, r.body)
	}
	return digest.Digest(r.header.Get("Docker-Content-Digest"))
}

func sigTag(d digest.Digest) string { return strings.Replace(d.String(), ":", "-", 1) + ".sig" }

func TestGC(t *testing.T) {
	tr := openTestReg(t, t.TempDir(), Options{GCGrace: time.Hour})
	const repo = "os/demo"
	desc := func(d digest.Digest, body []byte) *descriptor {
		return &descriptor{MediaType: MediaTypeOCIManifest, Digest: d, Size: int64(len(body))}
	}

	// A tagged image, its referrer and its signature.
	aBody := tr.image(repo, "a", nil)
	a := tr.put(repo, "stable", aBody)
	rBody := tr.image(repo, "r", desc(a, aBody))
	r := tr.put(repo, digest.FromBytes(rBody).String(), rBody)
	sBody := tr.image(repo, "s", nil)
	s := tr.put(repo, sigTag(a), sBody)

	// An index whose child is only reachable through it; another child
	// was never pushed (allowed for index children).
	bBody := tr.image(repo, "b", nil)
	b := tr.put(repo, digest.FromBytes(bBody).String(), bBody)
	missing := digest.FromBytes([]byte("never pushed"))
	iBody, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": MediaTypeOCIIndex,
		"manifests": []descriptor{*desc(b, bBody), {MediaType: MediaTypeOCIManifest, Digest: missing, Size: 12}}})
	i := tr.put(repo, "multi", iBody)

	// An image that is deleted, with its referrer and signature.
	cBody := tr.image(repo, "c", nil)
	c := tr.put(repo, "old", cBody)
	rcBody := tr.image(repo, "rc", desc(c, cBody))
	rc := tr.put(repo, digest.FromBytes(rcBody).String(), rcBody)
	scBody := tr.image(repo, "sc", nil)
	sc := tr.put(repo, sigTag(c), scBody)
	if res := tr.do("DELETE", "/v2/"+repo+"/manifests/"+c.String(), nil); res.status != http.StatusAccepted {
		t.Fatalf("delete: %d %s", res.status, res.body)
	}

	// An unreferenced blob and an abandoned upload.
	u := tr.pushBlob(repo, []byte("nobody uses me"))
	upload := tr.do("POST", "/v2/"+repo+"/blobs/uploads/", nil).header.Get("Location")

	tr.backdate(48 * time.Hour)
	// Pushed just now: kept by the grace period although unreferenced.
	fresh := tr.pushBlob(repo, []byte("a push in progress"))

	st, err := tr.store.GC(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", st)

	kept := map[string]digest.Digest{"a": a, "r": r, "s": s, "b": b, "i": i}
	gone := map[string]digest.Digest{"c": c, "rc": rc, "sc": sc}
	for name, d := range kept {
		if res := tr.do("GET", "/v2/"+repo+"/manifests/"+d.String(), nil); res.status != http.StatusOK {
			t.Errorf("manifest %s was collected: %d", name, res.status)
		}
	}
	for name, d := range gone {
		if res := tr.do("GET", "/v2/"+repo+"/manifests/"+d.String(), nil); res.status != http.StatusNotFound {
			t.Errorf("manifest %s survived: %d", name, res.status)
		}
		if _, err := tr.store.blobs.Stat(d); err == nil {
			t.Errorf("bytes of manifest %s survived", name)
		}
	}
	for name, body := range map[string][]byte{"a": aBody, "r": rBody, "s": sBody, "b": bBody} {
		for _, d := range manifestBlobs(t, body) {
			if res := tr.do("GET", "/v2/"+repo+"/blobs/"+d.String(), nil); res.status != http.StatusOK {
				t.Errorf("blob %s of %s was collected: %d", d, name, res.status)
			}
		}
	}
	for name, body := range map[string][]byte{"c": cBody, "rc": rcBody, "sc": scBody} {
		for _, d := range manifestBlobs(t, body) {
			if _, err := tr.store.blobs.Stat(d); err == nil {
				t.Errorf("blob %s of %s survived", d, name)
			}
		}
	}
	if _, err := tr.store.blobs.Stat(u); err == nil {
		t.Error("unreferenced blob survived")
	}
	if res := tr.do("GET", "/v2/"+repo+"/blobs/"+fresh.String(), nil); res.status != http.StatusOK {
		t.Errorf("a blob inside the grace period was collected: %d", res.status)
	}
	if res := tr.do("GET", upload, nil); res.status != http.StatusNotFound {
		t.Errorf("abandoned upload survived: %d", res.status)
	}
	tags, err := tr.store.ListTags(context.Background(), repo)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"multi", sigTag(a), "stable"}; !slices.Equal(tags, want) {
		t.Errorf("tags after GC %v, want %v", tags, want)
	}
	refs, err := tr.store.referrers(repo, a, "")
	if err != nil || len(refs) != 1 || refs[0].Digest != r {
		t.Errorf("referrers of a after GC: %v %v", refs, err)
	}
	if st.Manifests != 2 || st.Uploads != 1 || st.Tags != 1 || st.Blobs == 0 {
		t.Errorf("stats %+v: want 2 manifests (rc, sc; c was deleted by hand), 1 tag, 1 upload, some blobs", st)
	}

	// A second run finds nothing more to do.
	st, err = tr.store.GC(context.Background())
	if err != nil || st.Manifests+st.Blobs+st.Links+st.Tags+st.Uploads != 0 {
		t.Fatalf("second GC: %+v %v", st, err)
	}
}

// TestGCKeepsYoungUntaggedManifests: a manifest pushed by digest moments
// ago (a child pushed before its index) survives GC.
func TestGCKeepsYoungUntaggedManifests(t *testing.T) {
	tr := openTestReg(t, t.TempDir(), Options{GCGrace: time.Hour})
	body := tr.image("r", "young", nil)
	d := tr.put("r", digest.FromBytes(body).String(), body)
	if _, err := tr.store.GC(context.Background()); err != nil {
		t.Fatal(err)
	}
	if res := tr.do("GET", "/v2/r/manifests/"+d.String(), nil); res.status != http.StatusOK {
		t.Fatalf("young manifest collected: %d", res.status)
	}
	tr.backdate(2 * time.Hour)
	if _, err := tr.store.GC(context.Background()); err != nil {
		t.Fatal(err)
	}
	if res := tr.do("GET", "/v2/r/manifests/"+d.String(), nil); res.status != http.StatusNotFound {
		t.Fatalf("old untagged manifest kept: %d", res.status)
	}
}

// TestGCStopsOnUnreadableManifest: when a live manifest's bytes are
// missing, GC cannot know its blobs, so it deletes nothing.
func TestGCStopsOnUnreadableManifest(t *testing.T) {
	tr := openTestReg(t, t.TempDir(), Options{GCGrace: time.Hour})
	body := tr.image("r", "lost", nil)
	d := tr.put("r", "v1", body)
	if err := tr.store.blobs.Delete(d); err != nil {
		t.Fatal(err)
	}
	tr.backdate(2 * time.Hour)
	if _, err := tr.store.GC(context.Background()); err == nil {
		t.Fatal("GC succeeded with an unreadable live manifest")
	}
	for _, b := range manifestBlobs(t, body) {
		if _, err := tr.store.blobs.Stat(b); err != nil {
			t.Fatalf("blob %s was deleted: %v", b, err)
		}
	}
}

// TestConcurrentPushAndGC pushes images from several goroutines, sharing
// a config blob, while GC runs: every tagged image ends up complete.
func TestConcurrentPushAndGC(t *testing.T) {
	tr := openTestReg(t, t.TempDir(), Options{})
	const n = 6
	done := make(chan struct{})
	gcErr := make(chan error, 1)
	go func() {
		defer close(gcErr)
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := tr.store.GC(context.Background()); err != nil {
				gcErr <- err
				return
			}
		}
	}()
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			ctx := context.Background()
			cfg := []byte(`{"shared":true}`)
			layer := []byte("layer " + string(rune('a'+i)))
			for _, b := range [][]byte{cfg, layer} {
				if err := tr.store.PutBlob(ctx, "c/r", digest.FromBytes(b), int64(len(b)), bytesReader(b)); err != nil {
					errs <- err
					return
				}
			}
			body, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": MediaTypeOCIManifest,
				"config": descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: digest.FromBytes(cfg), Size: int64(len(cfg))},
				"layers": []descriptor{{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: digest.FromBytes(layer), Size: int64(len(layer))}}})
			_, err := tr.store.PutManifest(ctx, "c/r", "t"+string(rune('a'+i)), MediaTypeOCIManifest, body)
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	if err := <-gcErr; err != nil {
		t.Fatal(err)
	}
	tags, err := tr.store.ListTags(context.Background(), "c/r")
	if err != nil || len(tags) != n {
		t.Fatalf("tags %v %v", tags, err)
	}
	for _, tag := range tags {
		_, body, _, err := tr.store.GetManifest(context.Background(), "c/r", tag)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range manifestBlobs(t, body) {
			if ok, err := tr.store.HasBlob(context.Background(), "c/r", d); !ok || err != nil {
				t.Fatalf("%s: blob %s missing (%v)", tag, d, err)
			}
		}
	}
}
