package db

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"time"
)

// Device credentials for a server that keeps them in memory (package
// credindex): one scan at start, then the feed of token changes
// (token_changes, migration 0005) to follow revocations and shortened
// lives made by any process. Every statement that revokes a token or cuts
// its life adds its hash to the feed in the same transaction.

// DeviceCredential is what authorizing a device's request needs of its
// bound credential.
type DeviceCredential struct {
	Hash      []byte // SHA-256 of the token
	DeviceID  string
	ExpiresAt time.Time // zero: never
}

// ScanDeviceCredentials calls fn for every live device token bound to a
// device that has not expired at now, in no particular order, until fn
// returns an error (which it returns). Rows are streamed.
func (q *Queries) ScanDeviceCredentials(ctx context.Context, now time.Time, fn func(DeviceCredential) error) error {
	rows, err := q.q.QueryContext(ctx, `SELECT hash, device_id, expires_at FROM tokens
		WHERE role = 'device' AND revoked_at IS NULL AND device_id IS NOT NULL
		AND (expires_at IS NULL OR expires_at > $1)`, micros(now))
	if err != nil {
		return fmt.Errorf("scanning device credentials: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			h   string
			c   DeviceCredential
			exp sql.NullInt64
		)
		if err := rows.Scan(&h, &c.DeviceID, &exp); err != nil {
			return fmt.Errorf("scanning device credentials: %w", err)
		}
		if c.Hash, err = hex.DecodeString(h); err != nil {
			return fmt.Errorf("scanning device credentials: a stored hash is not hex: %w", err)
		}
		c.ExpiresAt = fromNullMicros(exp)
		if err := fn(c); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("scanning device credentials: %w", err)
	}
	return nil
}

// TokenChangesSince returns the hashes of the tokens revoked or cut short
// at or after since (by the writers' clocks), possibly with repeats.
func (q *Queries) TokenChangesSince(ctx context.Context, since time.Time) ([][]byte, error) {
	return queryAll(ctx, q.q, "reading token changes", func(r *sql.Rows) ([]byte, error) {
		var h string
		if err := r.Scan(&h); err != nil {
			return nil, err
		}
		return hex.DecodeString(h)
	}, `SELECT hash FROM token_changes WHERE changed_at >= $1`, micros(since))
}

// PruneTokenChanges deletes the feed's rows older than before.
func (q *Queries) PruneTokenChanges(ctx context.Context, before time.Time) error {
	if _, err := q.q.ExecContext(ctx, `DELETE FROM token_changes WHERE changed_at < $1`, micros(before)); err != nil {
		return fmt.Errorf("pruning token changes: %w", err)
	}
	return nil
}

// noteTokenChange adds rows (hash, changed_at) to the feed: rows is a
// VALUES list or a SELECT of the two columns.
func (q *Queries) noteTokenChange(ctx context.Context, rows string, args ...any) error {
	_, err := q.q.ExecContext(ctx, `INSERT INTO token_changes (hash, changed_at) `+rows, args...)
	return err
}
