package unpack

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// BenchmarkApply unpacks a gzip layer of 2,000 files of 4 KiB in 100
// directories (about 8 MB): b.SetBytes makes the MB/s the decompressed
// throughput.
func BenchmarkApply(b *testing.B) {
	var ents []ent
	body := strings.Repeat("mxos", 1024)
	for d := 0; d < 100; d++ {
		ents = append(ents, dir(fmt.Sprintf("usr/share/d%03d", d)))
		for f := 0; f < 20; f++ {
			ents = append(ents, file(fmt.Sprintf("usr/share/d%03d/f%02d", d, f), body))
		}
	}
	tarball := tarOf(b, ents)
	blob, desc, diffID := layer(b, v1.MediaTypeImageLayerGzip, tarball)
	b.SetBytes(int64(len(tarball)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		u, err := New(b.TempDir(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := u.Apply(context.Background(), bytes.NewReader(blob), desc, diffID); err != nil {
			b.Fatal(err)
		}
		if _, err := u.Finish(); err != nil {
			b.Fatal(err)
		}
	}
}
