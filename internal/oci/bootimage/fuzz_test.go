package bootimage_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/mxos-linux/mxos-update/internal/oci/bootimage"
	"github.com/mxos-linux/mxos-update/internal/oci/imagename"
	"github.com/mxos-linux/mxos-update/internal/oci/ocitest"
	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// FuzzLoad feeds arbitrary manifests and configs to Load and Derive (what
// a promotion reads back from a registry): no panic, and what loads has a
// valid commit label that Derive replaces.
func FuzzLoad(f *testing.F) {
	cfg := `{"architecture":"amd64","os":"linux","config":{"Labels":{"ostree.commit":"` + strings.Repeat("ab", 32) + `"}},"rootfs":{"type":"layers","diff_ids":[]}}`
	cd := digest.FromString(cfg)
	f.Add(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"`+
		cd.String()+`","size":`+strconv.Itoa(len(cfg))+`},"layers":[]}`, cfg)
	f.Add(`{"config":{"digest":"sha256:zz","size":-5}}`, `{}`)
	f.Add(`[]`, `null`)
	f.Fuzz(func(t *testing.T, manifest, config string) {
		ctx := context.Background()
		s := ocitest.NewMemStore()
		s.PutBlob(ctx, testRepo, digest.FromString(config), int64(len(config)), strings.NewReader(config))
		s.PutManifest(ctx, testRepo, "testing", v1.MediaTypeImageManifest, []byte(manifest))
		_, _, c, err := bootimage.Load(ctx, s, s.GetBlob, testRepo, "testing")
		if err != nil {
			return
		}
		if _, err := ostree.ParseChecksum(c.Config.Labels[imagename.LabelCommit]); err != nil {
			t.Fatalf("loaded without a valid commit label: %v", err)
		}
		var next ostree.Checksum
		next[0] = 7
		im, err := bootimage.Derive(ctx, s, s.GetBlob, bootimage.DeriveRequest{Repository: testRepo, From: "testing", Commit: next})
		if err != nil {
			return
		}
		if got, _ := imagename.CommitLabel(im.Config); got != next.String() {
			t.Fatalf("derived label %s", got)
		}
	})
}
