package tlogstore

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/tlog"
)

func offerOf(i int) tlog.Offer {
	e := entry(i)
	return tlog.Offer{Channel: e.Channel, Arch: e.Arch, Version: e.Version, Commit: e.Commit}
}

// TestDeviceProof: the proof a device gets is checked by tlog.CheckOffer:
// first contact, then consistency with the remembered checkpoint; a
// release absent from the log, a proof for another release, a forked log
// and a rolled-back log are refused.
func TestDeviceProof(t *testing.T) {
	ctx := context.Background()
	key := filepath.Join(t.TempDir(), "key")
	l := openTest(t, filepath.Join(t.TempDir(), "log"), key)
	v, _ := tlog.NewVerifier(l.VerifierKey())
	appendN(t, l, 0, 10)

	p, err := l.ProveRelease(ctx, "testing", "x86_64", entry(4).Commit, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := p.Marshal()
	if len(b) > 10<<10 {
		t.Fatalf("proof of %d bytes", len(b))
	}
	p2, err := tlog.ParseProof(b)
	if err != nil {
		t.Fatal(err)
	}
	rem, err := tlog.CheckOffer(p2, v, nil, offerOf(4))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tlog.CheckOffer(p2, v, nil, offerOf(5)); !errors.Is(err, tlog.ErrNotIncluded) {
		t.Fatalf("proof of another release: %v", err)
	}
	if _, err := l.ProveRelease(ctx, "testing", "x86_64", entry(99).Commit, 0); !errors.Is(err, ErrNotLogged) {
		t.Fatalf("absent release: %v", err)
	}

	// The log grows: the device's next proof carries consistency.
	appendN(t, l, 10, 300)
	cpOld, _ := tlog.OpenCheckpoint(rem, v)
	p, err = l.ProveRelease(ctx, "testing", "x86_64", entry(250).Commit, cpOld.Size)
	if err != nil {
		t.Fatal(err)
	}
	rem2, err := tlog.CheckOffer(p, v, rem, offerOf(250))
	if err != nil {
		t.Fatal(err)
	}
	if cp2, _ := tlog.OpenCheckpoint(rem2, v); cp2.Size != 310 {
		t.Fatalf("remembered size %d", cp2.Size)
	}
	// A proof without the consistency part is refused.
	bare := p
	bare.Old, bare.Consistency = 0, nil
	if _, err := tlog.CheckOffer(bare, v, rem, offerOf(250)); err == nil {
		t.Fatal("no consistency proof accepted")
	}
	// Rolled back: an old proof after a newer checkpoint.
	if _, err := tlog.CheckOffer(p2, v, rem2, offerOf(4)); !errors.Is(err, tlog.ErrShrunk) {
		t.Fatalf("smaller tree: %v", err)
	}

	// A second log under the same key (a split view for one target).
	split := openTest(t, filepath.Join(t.TempDir(), "split"), key)
	appendN(t, split, 1, 9) // 9 entries: none of them is entry(0)
	ps, err := split.ProveRelease(ctx, "testing", "x86_64", entry(4).Commit, 0)
	if err != nil {
		t.Fatal(err)
	}
	splitRem, err := tlog.CheckOffer(ps, v, nil, offerOf(4))
	if err != nil {
		t.Fatal(err)
	}
	// The device saw the split log's size-9 tree; the real log cannot
	// prove itself consistent with it.
	cpSplit, _ := tlog.OpenCheckpoint(splitRem, v)
	p, err = l.ProveRelease(ctx, "testing", "x86_64", entry(250).Commit, cpSplit.Size)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tlog.CheckOffer(p, v, splitRem, offerOf(250)); !errors.Is(err, tlog.ErrFork) {
		t.Fatalf("forked log: %v", err)
	}
	// Same size, different root.
	appendN(t, split, 10, 301)
	pf, err := split.ProveRelease(ctx, "testing", "x86_64", entry(250).Commit, 0)
	if err != nil {
		t.Fatal(err)
	}
	if cpf, _ := tlog.OpenCheckpoint(pf.Checkpoint, v); cpf.Size != 310 {
		t.Fatalf("split size %d", cpf.Size)
	}
	if _, err := tlog.CheckOffer(pf, v, rem2, offerOf(250)); !errors.Is(err, tlog.ErrFork) {
		t.Fatalf("same size, other root: %v", err)
	}
}
