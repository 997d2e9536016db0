package tlogstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/transparency-dev/tessera/client"

	"github.com/mxos-linux/mxos-update/internal/tlog"
)

// ErrNotLogged: no release or promotion entry for what was asked.
var ErrNotLogged = errors.New("not in the transparency log")

type releaseKey struct{ channel, arch, commit string }

// ProveRelease builds the proof a device checks (tlog.Proof) for the
// newest release or promotion entry of commit on channel and arch, at the
// current published checkpoint, with a consistency proof from old (the
// device's remembered size; 0 for none).
func (l *Log) ProveRelease(ctx context.Context, channel, arch, commit string, old uint64) (tlog.Proof, error) {
	raw, err := l.reader.ReadCheckpoint(ctx)
	if err != nil {
		return tlog.Proof{}, fmt.Errorf("transparency log: reading the checkpoint: %w", err)
	}
	v, err := tlog.NewVerifier(l.vkey)
	if err != nil {
		return tlog.Proof{}, err
	}
	cp, err := tlog.OpenCheckpoint(raw, v)
	if err != nil {
		return tlog.Proof{}, err
	}
	idx, entry, err := l.find(ctx, cp.Size, releaseKey{channel, arch, commit})
	if err != nil {
		return tlog.Proof{}, err
	}
	pb, err := client.NewProofBuilder(ctx, cp.Size, l.reader.ReadTile)
	if err != nil {
		return tlog.Proof{}, fmt.Errorf("transparency log: %w", err)
	}
	p := tlog.Proof{Index: idx, Entry: entry, Checkpoint: raw}
	if p.Inclusion, err = pb.InclusionProof(ctx, idx); err != nil {
		return tlog.Proof{}, fmt.Errorf("transparency log: inclusion proof: %w", err)
	}
	if old > 0 && old < cp.Size {
		p.Old = old
		if p.Consistency, err = pb.ConsistencyProof(ctx, old, cp.Size); err != nil {
			return tlog.Proof{}, fmt.Errorf("transparency log: consistency proof: %w", err)
		}
	}
	return p, nil
}

// find indexes entries up to size (once each) and returns the newest
// entry for k.
func (l *Log) find(ctx context.Context, size uint64, k releaseKey) (uint64, []byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.index == nil {
		l.index = map[releaseKey]uint64{}
	}
	for l.indexed < size {
		bundle, err := client.GetEntryBundle(ctx, l.reader.ReadEntryBundle, l.indexed/256, size)
		if err != nil {
			return 0, nil, fmt.Errorf("transparency log: reading entries: %w", err)
		}
		for i := l.indexed % 256; i < uint64(len(bundle.Entries)) && l.indexed < size; i++ {
			if e, err := tlog.Parse(bundle.Entries[i]); err == nil && (e.Kind == tlog.KindRelease || e.Kind == tlog.KindPromotion) {
				l.index[releaseKey{e.Channel, e.Arch, e.Commit}] = l.indexed
			}
			l.indexed++
		}
	}
	idx, ok := l.index[k]
	if !ok {
		return 0, nil, fmt.Errorf("%w: no release of commit %.12s on %s for %s", ErrNotLogged, k.commit, k.channel, k.arch)
	}
	bundle, err := client.GetEntryBundle(ctx, l.reader.ReadEntryBundle, idx/256, size)
	if err != nil || uint64(len(bundle.Entries)) <= idx%256 {
		return 0, nil, fmt.Errorf("transparency log: reading entry %d: %v", idx, err)
	}
	return idx, bundle.Entries[idx%256], nil
}
