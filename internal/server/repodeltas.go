package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

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

func (h *storeRepo) getLimited(ctx context.Context, key string, limit int64) ([]byte, error) {
	r, err := h.store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", key, ostree.ErrTooLarge, limit)
	}
	return b, nil
}

// importDelta stores delta id, whose superblock hashes to want, staged
// under repo/tmp and renamed into deltas/ whole.
func (h *storeRepo) importDelta(ctx context.Context, repo *ostree.Repo, id ostree.DeltaID, want ostree.Checksum) error {
	raw, err := h.getLimited(ctx, repoStorePrefix+id.SuperblockPath(), delta.MaxSuperblockSize)
	if err != nil {
		return fmt.Errorf("superblock: %w", err)
	}
	if ostree.Checksum(sha256.Sum256(raw)) != want {
		return errors.New("the superblock does not match the signed summary")
	}
	sb, err := delta.ParseSuperblock(raw)
	if err != nil {
		return err
	}
	if sb.ID() != id || ostree.Checksum(sha256.Sum256(sb.Commit)) != id.To {
		return fmt.Errorf("the superblock is for %s", sb.ID().Name())
	}
	if !id.From.IsZero() && !repo.HasObject(id.From, ostree.ObjCommit) {
		b, err := h.getLimited(ctx, repoStorePrefix+ostree.ObjectPath(id.From, ostree.ObjCommit), ostree.MaxMetadataSize)
		if err != nil {
			return fmt.Errorf("commit %s: %w", id.From, err)
		}
		txn, err := repo.Begin()
		if err != nil {
			return err
		}
		if _, err := txn.WriteMetadata(ostree.ObjCommit, b, id.From); err != nil { // checks the name
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
	stage, err := os.MkdirTemp(filepath.Join(repo.Path(), "tmp"), "delta-sync-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	if err := os.Chmod(stage, 0o755); err != nil {
		return err
	}
	for i, ph := range sb.Parts {
		if ph.Size > delta.MaxPartSize {
			return fmt.Errorf("part %d is %d bytes (limit %d)", i, ph.Size, delta.MaxPartSize)
		}
		if err := h.importPart(ctx, id, i, ph, filepath.Join(stage, strconv.Itoa(i))); err != nil {
			return fmt.Errorf("part %d: %w", i, err)
		}
	}
	if err := storage.WriteFile(filepath.Join(stage, "superblock"), raw, 0o644); err != nil {
		return err
	}
	if err := storage.SyncDir(stage); err != nil {
		return err
	}
	final := filepath.Join(repo.Path(), filepath.FromSlash(id.Dir()))
	if _, err := os.Stat(final); err == nil {
		if err := repo.RemoveDelta(id); err != nil { // same pair, another superblock
			return err
		}
	}
	if err := storage.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return err
	}
	if err := os.Rename(stage, final); err != nil {
		return err
	}
	return storage.SyncDir(filepath.Dir(final))
}

// importPart copies part i to path: exactly ph.Size bytes with ph's
// SHA-256, fsynced.
func (h *storeRepo) importPart(ctx context.Context, id ostree.DeltaID, i int, ph delta.PartHeader, path string) error {
	r, err := h.store.Get(ctx, repoStorePrefix+id.PartPath(i))
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	hash := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, hash), io.LimitReader(r, int64(ph.Size)+1))
	if err != nil {
		return err
	}
	if n != int64(ph.Size) || ostree.Checksum(hash.Sum(nil)) != ph.Checksum {
		return fmt.Errorf("%d bytes that do not match the superblock's size %d and SHA-256", n, ph.Size)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}
