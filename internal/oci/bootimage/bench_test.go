package bootimage_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/oci/bootimage"
	"github.com/mxos-linux/mxos-update/internal/oci/ocitest"
)

// BenchmarkBuild builds the image of a 40 MB tree spread over the default
// layer groups (text-like content, as in /usr/share). Every run compresses
// every layer; the store already has them after the first, so it measures
// the tar + gzip + hash path, not uploads.
func BenchmarkBuild(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("kernel módulo biblioteca escuela actualización sistema archivo paquete red usuario")
	tree := ocitest.OSTree()
	total := 0
	for i := range 320 {
		var sb strings.Builder
		for sb.Len() < 128<<10 {
			sb.WriteString(words[rng.IntN(len(words))])
			sb.WriteByte(' ')
		}
		dir := []string{"usr/lib", "usr/share/doc", "usr/bin", "etc"}[i%4]
		tree = append(tree, ocitest.Entry{Path: fmt.Sprintf("%s/f%04d", dir, i), Body: sb.String(), Mode: 0o644})
		total += sb.Len()
	}
	repo := newRepo(b)
	c := ocitest.Commit(b, repo, testRef, "10.0.1", time.Unix(1700000000, 0), tree)
	store := ocitest.NewMemStore()
	tmp := b.TempDir()
	b.SetBytes(int64(total))
	b.ResetTimer()
	for b.Loop() {
		if _, err := bootimage.Build(context.Background(), repo, store, bootimage.BuildRequest{Repository: testRepo,
			Arch: "x86_64", Version: "10.0.1", Commit: c, TempDir: tmp}); err != nil {
			b.Fatal(err)
		}
	}
}
