package ostree

import (
	"bytes"
	"context"
	"math/rand"
	"path/filepath"
	"testing"
	"time"
)

// Mutated tarballs must be refused or stored quickly and never panic.
// (A fixed-seed complement to FuzzTar that runs in every go test.)
func TestTarMutationsHandled(t *testing.T) {
	r, _ := Create(filepath.Join(t.TempDir(), "repo"))
	seed := makeTarForFuzz()
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 1000; i++ {
		b := append([]byte(nil), seed...)
		for j := 0; j < 1+rng.Intn(4); j++ {
			b[rng.Intn(len(b))] = byte(rng.Intn(256))
		}
		start := time.Now()
		txn, _ := r.Begin()
		txn.WriteTreeFromTar(context.Background(), bytes.NewReader(b), rootOwned)
		txn.Close()
		if d := time.Since(start); d > time.Second {
			t.Fatalf("input %d took %v: %q", i, d, b[:600])
		}
	}
}
