package tlogstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/client"
	xtlog "golang.org/x/mod/sumdb/tlog"

	"github.com/mxos-linux/mxos-update/internal/tlog"
)

func openTest(t testing.TB, dir, keyFile string) *Log {
	t.Helper()
	l, err := Open(context.Background(), Options{Dir: dir, KeyFile: keyFile, Origin: "test.mxos.example/log", CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = l.Close(ctx)
	})
	return l
}

func entry(i int) tlog.Entry {
	return tlog.Entry{Kind: tlog.KindRelease, Channel: "testing", Arch: "x86_64", Version: fmt.Sprintf("10.%d", i),
		Commit: fmt.Sprintf("%064x", i+1), Time: time.Date(2026, 12, 7, 5, 0, i%60, 0, time.UTC)}
}

// appendN appends n entries from first and waits for a checkpoint
// covering them all.
func appendN(t testing.TB, l *Log, first, n int) tlog.Checkpoint {
	t.Helper()
	ctx := context.Background()
	var futs []tessera.IndexFuture
	for i := first; i < first+n-1; i++ {
		e, _ := entry(i).Marshal()
		futs = append(futs, l.app.Add(ctx, tessera.NewEntry(e)))
	}
	for _, f := range futs {
		if _, err := f(); err != nil {
			t.Fatal(err)
		}
	}
	idxs, raw, err := l.AppendPublished(ctx, entry(first+n-1))
	if err != nil {
		t.Fatal(err)
	}
	v, err := tlog.NewVerifier(l.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	for {
		cp, err := tlog.OpenCheckpoint(raw, v)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Size > idxs[0] && cp.Size >= uint64(len(futs)+1) {
			return cp
		}
		time.Sleep(20 * time.Millisecond)
		if raw, err = l.Reader().ReadCheckpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "log-key")
	_, vkey, err := LoadOrCreateKey(key, "a.example/log")
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(key)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st.Mode(), err)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil || strings.TrimSpace(string(pub)) != vkey || !strings.HasPrefix(vkey, "a.example/log+") {
		t.Fatalf("pub file %q, vkey %q, %v", pub, vkey, err)
	}
	s, vkey2, err := LoadOrCreateKey(key, "other")
	if err != nil || vkey2 != vkey || s.Name() != "a.example/log" {
		t.Fatalf("reload: %v %q %q", err, vkey2, vkey)
	}
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKey(key, "a"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key: %v", err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("PRIVATE+KEY+secretstuff\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKey(bad, "a"); err == nil || strings.Contains(err.Error(), "secretstuff") {
		t.Fatalf("bad key: %v", err)
	}
}

// TestProofsIndependentlyVerified: inclusion and consistency proofs built
// from the tiles tessera wrote verify with golang.org/x/mod/sumdb/tlog
// (an implementation sharing no code with tessera) and with package tlog.
func TestProofsIndependentlyVerified(t *testing.T) {
	ctx := context.Background()
	l := openTest(t, filepath.Join(t.TempDir(), "log"), filepath.Join(t.TempDir(), "key"))
	cp1 := appendN(t, l, 0, 7)
	cp2 := appendN(t, l, 7, 300) // crosses a full tile
	if cp1.Origin != "test.mxos.example/log" {
		t.Fatalf("origin %q", cp1.Origin)
	}
	pb, err := client.NewProofBuilder(ctx, cp2.Size, l.Reader().ReadTile)
	if err != nil {
		t.Fatal(err)
	}
	var root2 xtlog.Hash
	copy(root2[:], cp2.Root)
	for _, i := range []uint64{0, 6, 7, 255, 256, cp2.Size - 1} {
		p, err := pb.InclusionProof(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		e, _ := entry(int(i)).Marshal()
		if err := xtlog.CheckRecord(toX(p), int64(cp2.Size), root2, int64(i), xtlog.RecordHash(e)); err != nil {
			t.Fatalf("x/mod: inclusion of %d: %v", i, err)
		}
		if err := tlog.CheckInclusion(cp2, i, e, p); err != nil {
			t.Fatalf("tlog: inclusion of %d: %v", i, err)
		}
		other, _ := entry(int(i) + 1).Marshal()
		if err := tlog.CheckInclusion(cp2, i, other, p); !errors.Is(err, tlog.ErrNotIncluded) {
			t.Fatalf("a different entry passed: %v", err)
		}
	}
	cp, err := pb.ConsistencyProof(ctx, cp1.Size, cp2.Size)
	if err != nil {
		t.Fatal(err)
	}
	var root1 xtlog.Hash
	copy(root1[:], cp1.Root)
	if err := xtlog.CheckTree(toX(cp), int64(cp2.Size), root2, int64(cp1.Size), root1); err != nil {
		t.Fatalf("x/mod: consistency: %v", err)
	}
	if err := tlog.CheckConsistency(cp1, cp2, cp); err != nil {
		t.Fatalf("tlog: consistency: %v", err)
	}
}

// TestForkDetected: a second log under the same key with other entries.
func TestForkDetected(t *testing.T) {
	ctx := context.Background()
	key := filepath.Join(t.TempDir(), "key")
	world := openTest(t, filepath.Join(t.TempDir(), "world"), key)
	target := openTest(t, filepath.Join(t.TempDir(), "target"), key)
	w5 := appendN(t, world, 0, 5)
	appendN(t, target, 0, 2)
	// The target's log has a release the world never sees.
	evil := entry(99)
	evil.Version = "10.evil"
	if _, _, err := target.AppendPublished(ctx, evil); err != nil {
		t.Fatal(err)
	}
	t5 := appendN(t, target, 3, 2)
	if w5.Size != t5.Size {
		t.Fatalf("sizes %d %d", w5.Size, t5.Size)
	}
	if err := tlog.CheckConsistency(w5, t5, nil); !errors.Is(err, tlog.ErrFork) {
		t.Fatalf("same size, different roots: %v", err)
	}
	// A device that saw the target's size-3 tree, then the world's tree:
	// the world's tiles cannot prove the target's root.
	t3 := checkpointAt(t, target, 3)
	pb, err := client.NewProofBuilder(ctx, w5.Size, world.Reader().ReadTile)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pb.ConsistencyProof(ctx, 3, w5.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckConsistency(t3, w5, p); !errors.Is(err, tlog.ErrFork) {
		t.Fatalf("larger inconsistent tree: %v", err)
	}
	// And a smaller tree after a larger one is refused.
	if err := tlog.CheckConsistency(w5, t3, nil); !errors.Is(err, tlog.ErrShrunk) {
		t.Fatalf("smaller tree: %v", err)
	}
}

// checkpointAt computes the root of the first n entries of l from
// its tiles (as a device that saw an earlier checkpoint would hold it).
func checkpointAt(t *testing.T, l *Log, n uint64) tlog.Checkpoint {
	t.Helper()
	hashes, err := client.FetchLeafHashes(context.Background(), l.Reader().ReadTile, 0, n, n)
	if err != nil {
		t.Fatal(err)
	}
	var th []xtlog.Hash
	for _, h := range hashes {
		var x xtlog.Hash
		copy(x[:], h)
		th = append(th, x)
	}
	root := rootOf(th)
	return tlog.Checkpoint{Origin: l.Origin(), Size: n, Root: root[:]}
}

func rootOf(leaves []xtlog.Hash) xtlog.Hash {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	return xtlog.NodeHash(rootOf(leaves[:k]), rootOf(leaves[k:]))
}

func toX(p [][]byte) []xtlog.Hash {
	out := make([]xtlog.Hash, len(p))
	for i := range p {
		copy(out[i][:], p[i])
	}
	return out
}

// BenchmarkAppendProve fills logs of 1,000 and 100,000 entries, then
// measures, at each size, one append (sequenced, durable) and one proof
// (inclusion of a random entry and consistency from a random earlier
// size, built from the tiles and verified): both stay flat as the log
// grows. It also reports the bytes a device would download for the
// proofs (hashes only).
func BenchmarkAppendProve(b *testing.B) {
	for _, size := range []int{1000, 100000} {
		ctx := context.Background()
		l := openTest(b, filepath.Join(b.TempDir(), "log"), filepath.Join(b.TempDir(), "key"))
		start := time.Now()
		for done := 0; done < size; done += 1000 {
			appendN(b, l, done, 1000)
		}
		b.Logf("filled a log with %d entries in %v", size, time.Since(start))
		b.Run(fmt.Sprintf("append/%d", size), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := l.Append(ctx, entry(size+1000+i)); err != nil {
					b.Fatal(err)
				}
			}
		})
		cp := appendN(b, l, 0, 1) // a checkpoint covering everything
		v, _ := tlog.NewVerifier(l.VerifierKey())
		b.Run(fmt.Sprintf("prove/%d", size), func(b *testing.B) {
			var proofBytes int
			for i := 0; i < b.N; i++ {
				idx := uint64(i*7919) % uint64(size)
				old := tlog.Checkpoint{Size: idx + 1}
				pb, err := client.NewProofBuilder(ctx, cp.Size, l.Reader().ReadTile)
				if err != nil {
					b.Fatal(err)
				}
				p, err := pb.InclusionProof(ctx, idx)
				if err != nil {
					b.Fatal(err)
				}
				e, _ := entry(int(idx)).Marshal()
				if err := tlog.CheckInclusion(cp, idx, e, p); err != nil {
					b.Fatal(err)
				}
				cons, err := pb.ConsistencyProof(ctx, old.Size, cp.Size)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := tlog.OpenCheckpoint(cp.Raw, v); err != nil {
					b.Fatal(err)
				}
				proofBytes = 32 * (len(p) + len(cons))
			}
			b.ReportMetric(float64(proofBytes+len(cp.Raw)), "device-bytes")
		})
	}
}
