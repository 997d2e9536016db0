package pull

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/delta"
)

// Static deltas
//
// Before walking the tree, a pull looks in the signed summary's
// ostree.static-deltas for a delta to the commit it chose: from a commit
// dst has complete (the booted one, Options.Current, first), or from
// scratch when dst has no commit of the ref. The superblock must hash to
// the digest the signed summary gives and name exactly that pair (its
// commit must be the verified one); each part is read up to the size the
// superblock gives, checked against the superblock's SHA-256, decompressed
// within delta.PayloadLimit, and only when every object of the part hashes
// to its name are they staged in the pull's transaction (package delta).
// Any failure drops the delta (Puller.OnDelta hears why) and the walk that
// always follows fetches whatever is still missing as loose objects; the
// walk also fetches the delta's fallbacks, and proves the tree complete
// before anything becomes visible. Delta-index files are not read: they
// are not signed.

// chooseDelta picks the delta to use for commit c, if any.
func chooseDelta(dst *ostree.Repo, ref string, sum *ostree.Summary, c ostree.Checksum, opts Options) (ostree.DeltaID, ostree.Checksum, bool) {
	if sum == nil {
		return ostree.DeltaID{}, ostree.Checksum{}, false
	}
	deltas, err := ostree.ParseDeltaIndex(sum.Metadata)
	if err != nil {
		return ostree.DeltaID{}, ostree.Checksum{}, false
	}
	var froms []ostree.DeltaID
	scratch, hasScratch := deltas[ostree.DeltaID{To: c}]
	for id := range deltas {
		if id.To == c && !id.From.IsZero() {
			froms = append(froms, id)
		}
	}
	sort.Slice(froms, func(i, j int) bool {
		if a, b := froms[i].From == opts.Current, froms[j].From == opts.Current; a != b {
			return a
		}
		return froms[i].Name() < froms[j].Name()
	})
	// A commit object in dst marks its tree complete: the pull (and the
	// publisher) store it last, after every object it reaches. A walk of
	// the whole tree here cost more CPU than applying a small update; a
	// tree damaged since only costs the delta (a missing read source
	// drops it) and the walk below fetches what is missing.
	for _, id := range froms {
		if dst.HasObject(id.From, ostree.ObjCommit) {
			return id, deltas[id], true
		}
	}
	if _, err := dst.ResolveRef(ref); errors.Is(err, ostree.ErrNotFound) && hasScratch {
		return ostree.DeltaID{To: c}, scratch, true
	}
	return ostree.DeltaID{}, ostree.Checksum{}, false
}

// applyDelta fetches and applies the delta id (superblock digest want) for
// the verified commit raw into txn.
func (s *session) applyDelta(ctx context.Context, txn *ostree.Txn, id ostree.DeltaID, want ostree.Checksum, raw []byte) error {
	var sb *delta.Superblock
	err := s.each(ctx, id.SuperblockPath(), delta.MaxSuperblockSize, func(r io.Reader, size int64) error {
		b, err := readAll(r, delta.MaxSuperblockSize, size)
		if err != nil {
			return err
		}
		if sha256.Sum256(b) != want {
			return fmt.Errorf("%w: superblock does not match the signed summary", delta.ErrBadDelta)
		}
		got, err := delta.ParseSuperblock(b)
		if err != nil {
			return err
		}
		if got.ID() != id || string(got.Commit) != string(raw) {
			return fmt.Errorf("%w: superblock is for %s, not %s", delta.ErrBadDelta, got.ID().Name(), id.Name())
		}
		sb = got
		return nil
	})
	if err != nil {
		return fmt.Errorf("superblock: %w", err)
	}
	dst := txn.Repo()
	for i, h := range sb.Parts {
		if h.Size > delta.MaxPartSize {
			return fmt.Errorf("part %d: %w: %d bytes (limit %d)", i, delta.ErrTooLarge, h.Size, delta.MaxPartSize)
		}
		have := true
		for _, o := range h.Objects {
			if !txn.HasObject(o.Checksum, o.Type) && !dst.HasObject(o.Checksum, o.Type) {
				have = false
				break
			}
		}
		if have {
			continue
		}
		var objs []delta.PartObject
		err := s.each(ctx, id.PartPath(i), int64(h.Size), func(r io.Reader, size int64) error {
			b, err := readAll(r, int64(h.Size), size)
			if err != nil {
				return err
			}
			p, err := delta.OpenPart(b, h)
			if err != nil {
				return err
			}
			objs, err = p.Objects(h, localSource(dst))
			return err
		})
		if err != nil {
			return fmt.Errorf("part %d: %w", i, err)
		}
		if err := delta.Write(txn, objs); err != nil {
			return fmt.Errorf("part %d: %w", i, err)
		}
	}
	return nil
}

// localSource reads the read sources of a delta part from dst: regular
// files only, verified as they are read, at most limit bytes.
func localSource(dst *ostree.Repo) delta.Source {
	return func(c ostree.Checksum, limit int64) ([]byte, error) {
		cr, err := dst.OpenContent(c)
		if err != nil {
			return nil, err
		}
		defer cr.Close()
		if cr.Header.IsSymlink() || cr.Header.Size > uint64(limit) {
			return nil, fmt.Errorf("%w: not a regular file of at most %d bytes", delta.ErrBadDelta, limit)
		}
		return io.ReadAll(cr)
	}
}
