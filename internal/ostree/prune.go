package ostree

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// PruneStats says what Prune removed.
type PruneStats struct {
	Objects int
	Bytes   int64
}

// Prune deletes every object that no ref and none of keep reaches: the
// commits, their detached metadata, dirtrees, dirmetas and content, as
// `ostree prune --refs-only --depth=0` does. Parents of kept commits are
// not kept. It holds the write lock, so no writer runs meanwhile.
//
// Unreachable commits (and their .commitmeta) are deleted first, the file
// system is synced, and their trees and content go after: a crash or a
// power cut part-way leaves only unreachable
// leaves, which fsck does not judge and the next Prune removes, and a
// kept commit never loses an object. A ref or keep commit that is not
// complete is an error and nothing is deleted.
func (r *Repo) Prune(ctx context.Context, keep []Checksum) (PruneStats, error) {
	var st PruneStats
	txn, err := r.Begin()
	if err != nil {
		return st, fmt.Errorf("prune: %w", err)
	}
	defer txn.Close()

	refs, err := r.ListRefs()
	if err != nil {
		return st, fmt.Errorf("prune: %w", err)
	}
	roots := append([]Checksum(nil), keep...)
	for _, c := range refs {
		roots = append(roots, c)
	}
	live := map[ObjectRef]bool{}
	for _, c := range roots {
		if live[ObjectRef{c, ObjCommit}] {
			continue
		}
		if err := r.CheckComplete(c); err != nil {
			return st, fmt.Errorf("prune: keeping %s: %w", c, err)
		}
		objs, err := r.Reachable(c)
		if err != nil {
			return st, fmt.Errorf("prune: %w", err)
		}
		live[ObjectRef{c, ObjCommit}] = true
		live[ObjectRef{c, ObjCommitMeta}] = true
		for _, o := range objs {
			live[o] = true
		}
	}

	type victim struct {
		path string
		ref  ObjectRef
	}
	var victims []victim
	objects := filepath.Join(r.path, "objects")
	err = filepath.WalkDir(objects, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(objects, p)
		if err != nil {
			return err
		}
		o, ok := parseObjectPath(filepath.ToSlash(rel))
		if !ok || live[o] {
			return nil // not an object of ours, or kept
		}
		victims = append(victims, victim{p, o})
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("prune: listing objects: %w", err)
	}
	// Commits first, then their detached metadata, then the rest.
	rank := func(t ObjectType) int {
		switch t {
		case ObjCommit:
			return 0
		case ObjCommitMeta:
			return 1
		}
		return 2
	}
	sort.SliceStable(victims, func(i, j int) bool { return rank(victims[i].ref.Type) < rank(victims[j].ref.Type) })
	synced := false
	for _, v := range victims {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		// The commits' removal is durable before their trees and content
		// go, so a power cut never leaves a commit missing objects.
		if !synced && rank(v.ref.Type) == 2 {
			if st.Objects > 0 {
				if err := syncfs(objects); err != nil {
					return st, fmt.Errorf("prune: sync: %w", err)
				}
			}
			synced = true
		}
		fi, err := os.Lstat(v.path)
		if err != nil {
			continue
		}
		if err := os.Remove(v.path); err != nil {
			return st, fmt.Errorf("prune: %w", err)
		}
		st.Objects++
		st.Bytes += fi.Size()
	}
	return st, nil
}
