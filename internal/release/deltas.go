package release

import (
	"context"
	"time"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/delta"
)

// DeltaPolicy says which static deltas a release gets: one from each of
// the Sources previous releases of its ref (the channel's static_deltas,
// default delta.DefaultSources) and, with Scratch (the channel's
// static_delta_from_scratch), one from scratch. They are generated
// after the commit is signed (the superblock carries the signatures) and
// before the ref moves; the summary written next lists them, and drops
// the deltas to releases the ref has moved past. Generation runs under the
// repository's write lock (serving goes on; another publish waits) and
// stops at Timeout: the release is published with the deltas made so
// far, the update deltas first, the one from scratch last.
type DeltaPolicy struct {
	Sources int
	// Scratch adds the delta from scratch: the whole tree in parts, for
	// machines installed over the network. With the pure-Go xz it takes
	// about 17 minutes for the Debian minbase tree on a busy 2-core
	// machine, inside the publish lock, so it is the channel's choice.
	Scratch bool
	// Timeout bounds the generation; 0 is delta.DefaultTimeout.
	Timeout time.Duration
}

// generate is a no-op on a nil policy.
func (p *DeltaPolicy) generate(ctx context.Context, repo *ostree.Repo, commit ostree.Checksum, now time.Time) ([]ostree.DeltaID, error) {
	if p == nil {
		return nil, nil
	}
	return delta.ForRelease(ctx, repo, commit, max(p.Sources, 0), p.Scratch, p.Timeout, now)
}
