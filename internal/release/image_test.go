package release

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/mxos-linux/mxos-update/internal/oci/imagename"
	"github.com/mxos-linux/mxos-update/internal/oci/ocisig"
	"github.com/mxos-linux/mxos-update/internal/oci/ocitest"
	"github.com/mxos-linux/mxos-update/internal/ostree"
)

func newImageStep(t *testing.T, store *ocitest.MemStore) *ImageStep {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	s, err := signature.LoadED25519Signer(key)
	if err != nil {
		t.Fatal(err)
	}
	return &ImageStep{Store: store, Blobs: store.GetBlob, Signer: s, Host: "updates.example", TempDir: t.TempDir()}
}

func TestImageStepBuildSignTagDerive(t *testing.T) {
	ctx := context.Background()
	repo, err := ostree.Create(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	store := ocitest.NewMemStore()
	step := newImageStep(t, store)
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	c1 := ocitest.Commit(t, repo, "mxos/10/x86_64/testing", "10.0.1", t0, ocitest.OSTree())
	im, err := step.Build(ctx, repo, "mxos/10/x86_64/testing", "10.0.1", c1)
	if err != nil {
		t.Fatal(err)
	}
	if tags, _ := store.ListTags(ctx, "mxos/10/x86_64"); len(tags) != 1 || !strings.HasSuffix(tags[0], ".sig") {
		t.Fatalf("before Tag, tags are %v (want only the signatures)", tags)
	}
	pub, _ := step.Signer.PublicKey()
	// One signature per tag the image gets.
	if n, err := ocisig.Verify(ctx, store, store.GetBlob, im.Repository, im.Digest, pub); err != nil || n != 2 {
		t.Fatalf("verify: %d %v", n, err)
	}
	if err := step.Tag(ctx, im, "mxos/10/x86_64/testing", "10.0.1"); err != nil {
		t.Fatal(err)
	}
	c2 := ocitest.Commit(t, repo, "mxos/10/x86_64/stable", "10.0.1", t0.Add(time.Hour), ocitest.OSTree())

	// The source must be the release's commit and signed by our key.
	if _, err := step.Derive(ctx, "mxos/10/x86_64/stable", "testing", "10.0.1", c2, c2); err == nil || !strings.Contains(err.Error(), "names commit") {
		t.Errorf("wrong source commit: %v", err)
	}
	other := newImageStep(t, store)
	if _, err := other.Derive(ctx, "mxos/10/x86_64/stable", "testing", "10.0.1", c1, c2); err == nil || !strings.Contains(err.Error(), "no valid signature") {
		t.Errorf("source signed by another key: %v", err)
	}
	if _, err := step.Derive(ctx, "mxos/10/x86_64/stable", "testing", "10.0.2", c1, c2); err == nil {
		t.Error("unknown version derived")
	}

	d, err := step.Derive(ctx, "mxos/10/x86_64/stable", "testing", "10.0.1", c1, c2)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Layers, im.Layers) {
		t.Error("layers changed")
	}
	if label, _ := imagename.CommitLabel(d.Config); label != c2.String() {
		t.Errorf("label %s", label)
	}
	if n, err := ocisig.Verify(ctx, store, store.GetBlob, d.Repository, d.Digest, pub); err != nil || n != 2 {
		t.Errorf("derived image signatures: %d %v", n, err)
	}
	if _, err := step.Build(ctx, repo, "os/stable", "10.0.1", c1); err == nil {
		t.Error("bad ref accepted")
	}
}
