package db

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// The cache change feed (cache_changes, migration 0006): every statement
// that changes a row servers cache per process (a pin, a rollout, a
// release, a device's group) adds a row naming it, in the same
// transaction, so replicas follow changes made anywhere
// (internal/changefeed). Token changes have their own feed
// (token_changes, credentials.go).

// Kinds of cached rows a Change names.
const (
	ChangePin     = "pin"     // subject: "device:<id>" or "group:<name>"
	ChangeRollout = "rollout" // subject: "<channel>/<arch>"
	ChangeRelease = "release" // subject: "<channel>/<arch>/<version>"
	ChangeGroup   = "group"   // subject: the device id whose group changed
	// ChangeMetadata: the signed channel metadata in object storage
	// changed (subject "metadata"); noted by the writer after its copy
	// is in the bucket (internal/server, metastore.go).
	ChangeMetadata = "metadata"
)

// Change is a row of the cache change feed.
type Change struct {
	Seq     int64
	Kind    string
	Subject string
	At      time.Time // the writer's clock
}

// ChangesSince returns the feed's changes at or after since (by the
// writers' clocks), in no particular order.
func (q *Queries) ChangesSince(ctx context.Context, since time.Time) ([]Change, error) {
	return queryAll(ctx, q.q, "reading cache changes", func(r *sql.Rows) (Change, error) {
		var (
			c  Change
			at int64
		)
		if err := r.Scan(&c.Seq, &c.Kind, &c.Subject, &at); err != nil {
			return Change{}, err
		}
		c.At = fromMicros(at)
		return c, nil
	}, `SELECT seq, kind, subject, changed_at FROM cache_changes WHERE changed_at >= $1`, micros(since))
}

// PruneChanges deletes the feed's rows older than before.
func (q *Queries) PruneChanges(ctx context.Context, before time.Time) error {
	if _, err := q.q.ExecContext(ctx, `DELETE FROM cache_changes WHERE changed_at < $1`, micros(before)); err != nil {
		return fmt.Errorf("pruning cache changes: %w", err)
	}
	return nil
}

// NoteMetadataChange adds a ChangeMetadata row to the feed. Call it in
// the transaction that holds the cluster lock the metadata was written
// under, after the bucket has the new files.
func (q *Queries) NoteMetadataChange(ctx context.Context) error {
	return q.noteChange(ctx, ChangeMetadata, "metadata")
}

// noteChange adds a change to the feed, at the writer's clock. Call it in
// the transaction that makes the change.
func (q *Queries) noteChange(ctx context.Context, kind, subject string) error {
	if _, err := q.q.ExecContext(ctx, `INSERT INTO cache_changes (kind, subject, changed_at) VALUES ($1, $2, $3)`,
		kind, subject, micros(time.Now())); err != nil {
		return fmt.Errorf("noting the change of %s %s: %w", kind, subject, err)
	}
	return nil
}
