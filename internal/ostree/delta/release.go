package delta

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// ForRelease generates the deltas of a newly published commit: from each
// of its n previous releases (its parent, grandparent, …, as long as they
// are complete in repo) and, with scratch, from scratch. It stops at timeout (0:
// DefaultTimeout); the deltas already written stay. It returns the deltas
// written and, joined, what failed: a failed delta is only a missed
// saving, clients then pull loose objects.
func ForRelease(ctx context.Context, repo *ostree.Repo, commit ostree.Checksum, n int, scratch bool, timeout time.Duration, now time.Time) ([]ostree.DeltaID, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ids := []ostree.DeltaID{}
	c := commit
	for range n {
		cm, err := repo.ReadCommit(c)
		if err != nil || cm.Parent.IsZero() || !repo.HasObject(cm.Parent, ostree.ObjCommit) {
			break
		}
		c = cm.Parent
		if repo.CheckComplete(c) != nil {
			break
		}
		ids = append(ids, ostree.DeltaID{From: c, To: commit})
	}
	if scratch {
		ids = append(ids, ostree.DeltaID{To: commit})
	}
	var done []ostree.DeltaID
	var errs []error
	for _, id := range ids {
		if err := Generate(ctx, repo, id, now); err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				errs = append(errs, fmt.Errorf("static deltas: stopped after %s: %w", timeout, ctx.Err()))
				break
			}
			continue
		}
		done = append(done, id)
	}
	return done, errors.Join(errs...)
}
