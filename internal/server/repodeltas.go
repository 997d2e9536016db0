package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/commitsig"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/delta"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/storage"
)

// Static deltas another replica made (see repostore.go): sync brings
// every delta the bucket's signed summary lists, and this server lacks,
// into DataDir/repo, checked as a client checks it: the summary's
// signature against the online keys, the superblock's SHA-256 against
// the summary, the superblock's own from/to and commit against the
// delta's name, and each part's size and SHA-256 against the superblock.
// Only deltas to a ref's current commit are taken (the summary a writer
// writes lists no others). A delta from a commit this server never
// stored brings that commit object too (checked by its name), so the
// summary keeps listing it, marked partial as libostree marks a commit
// whose tree it lacks (state/<commit>.commitpartial: ostree fsck counts
// it as partial); the tree stays in the bucket only. delta.ForRelease
// asks CheckComplete before it reads a commit's tree, so such a commit
// is never a delta source here. A delta that fails a check, or all of
// them when the summary does not verify (or this server has no online
// public keys), is left out with a warning: a delta only saves bytes, so
// the release goes on and the summary written here does not list it.

// verifiedSummary reads the bucket's summary and checks summary.sig with
// the online keys.
func (h *storeRepo) verifiedSummary(ctx context.Context, raw []byte) error {
	if len(h.online) == 0 {
		return errors.New("no online public keys to verify the bucket's summary")
	}
	r, err := h.store.Get(ctx, repoStorePrefix+"summary.sig")
	if err != nil {
		return fmt.Errorf("summary.sig: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(r, ostree.MaxSignatureSize+1))
	r.Close()
	if err != nil {
		return fmt.Errorf("summary.sig: %w", err)
	}
	md, err := ostree.ParseMetadata(b)
	if err != nil {
		return fmt.Errorf("summary.sig: %w", err)
	}
	if err := sign.VerifyAll(h.online, raw, commitsig.SignatureMap(md)); err != nil {
		return fmt.Errorf("the bucket's summary: %w", err)
	}
	return nil
}

// importDeltas brings the deltas sum lists that repo lacks (see above).
// It returns their names. raw is the summary's bytes, verified here.
func (h *storeRepo) importDeltas(ctx context.Context, repo *ostree.Repo, sum *ostree.Summary, raw []byte) ([]string, error) {
	listed, err := ostree.ParseDeltaIndex(sum.Metadata)
	if err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	have, err := repo.ListDeltas()
	if err != nil {
		return nil, err
	}
	refs, err := repo.ListRefs()
	if err != nil {
		return nil, err
	}
	tips := map[ostree.Checksum]bool{}
	for _, c := range refs {
		tips[c] = true
	}
	var want []ostree.DeltaID
	for id, sb := range listed {
		if cur, ok := have[id]; (ok && cur == sb) || !tips[id.To] {
			continue
		}
		want = append(want, id)
	}
	if len(want) == 0 {
		return nil, nil
	}
	if err := h.verifiedSummary(ctx, raw); err != nil {
		// Deltas only save bytes: the release goes on without them.
		h.log.Warn("the static deltas in object storage are not brought here: the bucket's summary does not verify; the next summary written here leaves them out",
			zap.Error(err))
		return nil, nil
	}
	var names []string
	for _, id := range want {
		if err := h.importDelta(ctx, repo, id, listed[id]); err != nil {
			// A delta only saves bytes: without it clients pull objects.
			h.log.Warn("a static delta in object storage was not brought here; the next summary written here leaves it out",
				zap.String("delta", id.Name()), zap.Error(err))
			continue
		}
		names = append(names, id.Name())
	}
	return names, nil
}

// getStore is a delta.GetFunc over the bucket's copy of the repository.
func (h *storeRepo) getStore(ctx context.Context, rel string, limit int64, w io.Writer) error {
	r, err := h.store.Get(ctx, repoStorePrefix+rel)
	if err != nil {
		return err
	}
	defer r.Close()
	n, err := io.Copy(w, io.LimitReader(r, limit+1))
	if err != nil {
		return err
	}
	if n > limit {
		return fmt.Errorf("%s: %w: more than %d bytes", rel, ostree.ErrTooLarge, limit)
	}
	return nil
}

// importDelta stores delta id, whose superblock hashes to want, checked
// and staged by delta.Install; a From commit this server lacks comes
// first (see above).
func (h *storeRepo) importDelta(ctx context.Context, repo *ostree.Repo, id ostree.DeltaID, want ostree.Checksum) error {
	raw, sb, err := delta.FetchSuperblock(ctx, id, want, h.getStore)
	if err != nil {
		return err
	}
	if !id.From.IsZero() && !repo.HasObject(id.From, ostree.ObjCommit) {
		var b bytes.Buffer
		if err := h.getStore(ctx, ostree.ObjectPath(id.From, ostree.ObjCommit), ostree.MaxMetadataSize, &b); err != nil {
			return fmt.Errorf("commit %s: %w", id.From, err)
		}
		txn, err := repo.Begin()
		if err != nil {
			return err
		}
		if _, err := txn.WriteMetadata(ostree.ObjCommit, b.Bytes(), id.From); err != nil { // checks the name
			txn.Close()
			return fmt.Errorf("commit %s: %w", id.From, err)
		}
		if err := txn.Commit(); err != nil {
			txn.Close()
			return err
		}
		if err := txn.Close(); err != nil {
			return err
		}
		// libostree's mark of a commit whose tree is not all here:
		// `ostree fsck` counts it as partial instead of failing on it.
		if err := storage.MkdirAll(filepath.Join(repo.Path(), "state"), 0o755); err != nil {
			return err
		}
		if err := storage.WriteFile(filepath.Join(repo.Path(), "state", id.From.String()+".commitpartial"), nil, 0o644); err != nil {
			return err
		}
	}
	return delta.Install(ctx, repo, id, raw, sb, h.getStore)
}
