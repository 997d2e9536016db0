package pull

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/server"
)

// benchTree writes a rootfs-shaped tree: many small text-like files in a
// few hundred directories and a few large ones, like an OS image.
func benchTree(b *testing.B, dir string, files int) int64 {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"usr", "lib", "share", "doc", "config", "mxos", "linux", "kernel", "module", "locale", "\n"}
	var total int64
	for i := range files {
		size := 200 + rng.IntN(8<<10)
		if i%500 == 0 {
			size = 1<<20 + rng.IntN(2<<20)
		}
		body := make([]byte, 0, size)
		for len(body) < size {
			if rng.IntN(4) == 0 {
				body = append(body, byte(rng.IntN(256)))
			} else {
				body = append(body, words[rng.IntN(len(words))]...)
				body = append(body, ' ')
			}
		}
		p := filepath.Join(dir, fmt.Sprintf("d%02d/s%02d/f%05d", i%37, i%11, i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, body, 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(len(body))
	}
	return total
}

// BenchmarkPull measures a cold pull of a 3,000-file commit from
// mxos-server over loopback HTTP into a fresh archive repository, as the
// device does it (signatures, hashes and sync included). mxos-bench
// devpull compares the same against stock ostree pull.
func BenchmarkPull(b *testing.B) {
	dir := b.TempDir()
	signers, verifiers := keys(b, filepath.Join(dir, "keys"))
	repo, err := ostree.Create(filepath.Join(dir, "data", "repo"))
	if err != nil {
		b.Fatal(err)
	}
	src := filepath.Join(dir, "tree")
	size := benchTree(b, src, 3000)
	pub := &release.Publisher{Repo: repo, Signers: signers}
	if _, err := pub.Publish(context.Background(), release.Request{Ref: stable, Version: "1", Source: src}); err != nil {
		b.Fatal(err)
	}
	srv, err := server.New(server.Config{DataDir: filepath.Join(dir, "data")})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	p := &Puller{URLs: []string{ts.URL + "/repo"}, Verifiers: verifiers}
	b.SetBytes(size)
	b.ResetTimer()
	i := 0
	for b.Loop() {
		b.StopTimer()
		dst, err := ostree.Create(filepath.Join(dir, fmt.Sprintf("dst%d", i)))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := p.Pull(context.Background(), dst, stable, Options{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(dst.Path()); err != nil {
			b.Fatal(err)
		}
		i++
		b.StartTimer()
	}
}
