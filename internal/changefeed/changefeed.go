// Package changefeed follows the database's cache change feed
// (db.ChangesSince, table cache_changes): the changes to pins, rollouts,
// releases and device groups that servers cache per process. Each
// replica on one database polls it (the server every second) and drops
// what it cached of each change, so a pin, a group, a halt or a release
// made through one replica (or by `mxos-server` commands on the same
// database) applies on every replica within about a second.
//
// Why a feed table and not PostgreSQL LISTEN/NOTIFY: the feed row is
// written in the transaction that makes the change, so a change is in
// the feed exactly when it is committed; a poll that fails, or a replica
// that restarts or loses its connection, misses nothing (it reads again
// from where it was), where a notification sent while a listener is
// disconnected is lost and would need this very catch-up anyway. It also
// works on SQLite (several processes on one database file), and costs one
// indexed query a second per replica. It is the model the token change
// feed (internal/credindex) already follows.
//
// Next reads the feed from Lookback before its previous successful read
// (by the writers' clocks), so a transaction that committed late, or a
// writer whose clock is behind, is still seen; each change (by its
// sequence number) is returned once. A failed read consumes nothing: the
// next one reads from the same point. The feed keeps Retention of
// changes; Next prunes older rows every PruneEvery. A follower that could
// not read for half the retention may have missed pruned changes: Next
// then says so (Batch.Gap), and the caller reloads what it caches.
package changefeed

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/mxos-linux/mxos-update/internal/db"
)

// Lookback is how far before its previous read Next reads the feed.
const Lookback = time.Minute

// Retention is how long the feed keeps a change; PruneEvery how often
// Next prunes it.
const (
	Retention  = time.Hour
	PruneEvery = 10 * time.Minute
)

// Follower reads the feed; it is safe for concurrent use (reads are
// serialized).
type Follower struct {
	Store *db.Store
	Now   func() time.Time

	mu        sync.Mutex
	last      time.Time           // start of the last successful read (our clock)
	seen      map[int64]time.Time // changes returned, by sequence, with their time
	lastPrune time.Time
	closed    bool           // Close was called: no more prunes
	pruning   sync.WaitGroup // the prune Next started, if running
}

// Batch is what one Next found.
type Batch struct {
	Changes []db.Change // not returned before
	// Gap is set when changes may have been missed since the previous
	// successful read (it was more than Retention/2 ago, and other
	// replicas prune the feed): reload what is cached.
	Gap bool
}

func (f *Follower) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

// Start marks the time from which the caller's caches are current:
// changes before Start minus Lookback are never returned. Call it before
// loading what is cached.
func (f *Follower) Start() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = f.now()
	f.seen = map[int64]time.Time{}
}

// Close stops Next from starting prunes and waits for one under way, so
// the Store can be closed after it (a prune left running would write to a
// closing database, or to a test's directory while it is removed). Next
// still reads after Close.
func (f *Follower) Close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.pruning.Wait()
}

// Next returns the changes not returned before, read since Lookback
// before the previous successful read. On error nothing is consumed.
func (f *Follower) Next(ctx context.Context) (Batch, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	start := f.now()
	if f.last.IsZero() {
		f.last, f.seen = start, map[int64]time.Time{}
	}
	gap := start.Sub(f.last) > Retention/2
	since := f.last.Add(-Lookback)
	changes, err := f.Store.ChangesSince(ctx, since)
	if err != nil {
		return Batch{}, fmt.Errorf("reading cache changes: %w", err)
	}
	b := Batch{Gap: gap}
	for _, c := range changes {
		if _, ok := f.seen[c.Seq]; ok {
			continue
		}
		f.seen[c.Seq] = c.At
		b.Changes = append(b.Changes, c)
	}
	// Changes older than the next read's window are never read again.
	for seq, at := range f.seen {
		if at.Before(start.Add(-Lookback)) {
			delete(f.seen, seq)
		}
	}
	f.last = start
	if !f.closed && start.Sub(f.lastPrune) >= PruneEvery {
		f.lastPrune = start
		f.pruning.Add(1)
		go func() {
			defer f.pruning.Done()
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			_ = f.Store.PruneChanges(pctx, start.Add(-Retention))
		}()
	}
	return b, nil
}
