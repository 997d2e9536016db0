package ocisig_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"testing"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/mxos-linux/mxos-update/internal/oci/ocisig"
	"github.com/mxos-linux/mxos-update/internal/oci/ocitest"
)

// FuzzVerify feeds arbitrary .sig manifests (and payload bytes) to Verify
// and Attach: no panic, no success without a valid signature, and Attach
// either keeps every existing layer or refuses.
func FuzzVerify(f *testing.F) {
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	ctx := context.Background()
	s := ocitest.NewMemStore()
	if err := ocisig.SignImage(ctx, s, repo, image, "h.example/"+repo+":stable", key); err != nil {
		f.Fatal(err)
	}
	_, valid, _, _ := s.GetManifest(ctx, repo, ocisig.SignatureTag(image))
	f.Add(valid, []byte(`{"critical":{}}`))
	f.Add([]byte(`{"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":-1}]}`), []byte{})
	f.Add([]byte(`not json`), []byte(`x`))
	f.Fuzz(func(t *testing.T, manifest, payload []byte) {
		st := ocitest.NewMemStore()
		st.PutBlob(ctx, repo, digestOf(payload), int64(len(payload)), bytesReader(payload))
		st.PutManifest(ctx, repo, ocisig.SignatureTag(image), v1.MediaTypeImageManifest, manifest)
		n, err := ocisig.Verify(ctx, st, st.GetBlob, repo, image, key.Public())
		if err == nil && n < 1 {
			t.Fatalf("no error and %d signatures", n)
		}
		var before v1.Manifest
		parsed := json.Unmarshal(manifest, &before) == nil
		if err := ocisig.SignImage(ctx, st, repo, image, "h.example/"+repo+":stable", key); err != nil {
			if parsed {
				t.Fatalf("a parseable manifest was refused: %v", err)
			}
			return
		}
		var after v1.Manifest
		_, b, _, _ := st.GetManifest(ctx, repo, ocisig.SignatureTag(image))
		if err := json.Unmarshal(b, &after); err != nil {
			t.Fatal(err)
		}
		if len(after.Layers) < len(before.Layers) {
			t.Fatalf("signing dropped layers: %d → %d", len(before.Layers), len(after.Layers))
		}
	})
}
