package server

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/changefeed"
	"github.com/mxos-linux/mxos-update/internal/db"
)

// Cross-replica cache invalidation: every replica on one database reads
// the cache change feed (internal/changefeed) every ChangeInterval and
// drops what it cached of each change: a device whose group changed is
// re-read into the device index; any pin, rollout or release change
// clears the update service's caches (the next check reads them again);
// a metadata change, or a gap in the feed, has the shared channel
// metadata pulled from the bucket (metastore.go).
// With the update service's one-second cache, a pin, a halt or a group
// set through any replica is obeyed by every replica within about a
// second and never more than two.

// ChangeInterval is how often the server reads the cache change feed.
const ChangeInterval = time.Second

// maxForget is the most group changes re-read one device at a time; more
// in one read re-read every group at once.
const maxForget = 1000

// changeLoop follows the feed until ctx ends.
func (s *Server) changeLoop(ctx context.Context) {
	t := time.NewTicker(ChangeInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b, err := s.api.changes.Next(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				s.log.Warn("following cache changes; changes made through other replicas apply here within a minute until it works again", zap.Error(err))
			}
			failing = true
			continue
		case failing:
			s.log.Info("following cache changes again")
			failing = false
		}
		s.applyChanges(ctx, b)
	}
}

// applyChanges drops what the server cached of the changes in b.
func (s *Server) applyChanges(ctx context.Context, b changefeed.Batch) {
	u := s.api.updates
	invalidate := b.Gap
	var devices []string
	for _, c := range b.Changes {
		if c.Kind == db.ChangeMetadata {
			s.followMetadata()
		}
		if c.Kind == db.ChangeGroup {
			devices = append(devices, c.Subject)
		} else {
			invalidate = true
		}
	}
	if b.Gap {
		s.followMetadata()
	}
	if invalidate {
		u.Invalidate()
	}
	if b.Gap || len(devices) > maxForget {
		if err := u.RefreshGroups(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("refreshing device groups", zap.Error(err))
		}
		return
	}
	for _, id := range devices {
		u.ForgetDevice(id)
	}
}
