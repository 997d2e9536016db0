package db

import (
	"context"
	"database/sql"
	"fmt"
)

// Whole-fleet reads and batched writes for a server that keeps what a
// check needs of every device in memory (package updates): one scan at
// start, a scan of the grouped devices to follow changes made by other
// replicas, and the coalesced last-seen writes.

// ScanDevices calls fn for every device, in no particular order, until fn
// returns an error (which ScanDevices returns). FirstSeen is not read.
// The rows are streamed: memory does not grow with the fleet.
func (q *Queries) ScanDevices(ctx context.Context, fn func(Device) error) error {
	rows, err := q.q.QueryContext(ctx, `SELECT id, arch, channel, group_name, booted_commit, version, last_seen FROM devices`)
	if err != nil {
		return fmt.Errorf("scanning devices: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var d Device
		var last int64
		if err := rows.Scan(&d.ID, &d.Arch, &d.Channel, &d.Group, &d.BootedCommit, &d.Version, &last); err != nil {
			return fmt.Errorf("scanning devices: %w", err)
		}
		d.LastSeen = fromMicros(last)
		if err := fn(d); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("scanning devices: %w", err)
	}
	return nil
}

// GroupedDevices calls fn with the id and group of every device in a
// group, in no particular order.
func (q *Queries) GroupedDevices(ctx context.Context, fn func(id, group string) error) error {
	rows, err := q.q.QueryContext(ctx, `SELECT id, group_name FROM devices WHERE group_name <> ''`)
	if err != nil {
		return fmt.Errorf("listing device groups: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, group string
		if err := rows.Scan(&id, &group); err != nil {
			return fmt.Errorf("listing device groups: %w", err)
		}
		if err := fn(id, group); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("listing device groups: %w", err)
	}
	return nil
}

// UpsertDevices is UpsertDevice for many devices in one transaction (the
// enclosing one for a Tx), with the statement prepared once: the batched
// last-seen writes of a fleet's checks.
func (q *Queries) UpsertDevices(ctx context.Context, devs []Device) error {
	if len(devs) == 0 {
		return nil
	}
	return q.atomic(ctx, func(q *Queries) error {
		if p, ok := q.q.(interface {
			PrepareContext(context.Context, string) (*sql.Stmt, error)
		}); ok {
			st, err := p.PrepareContext(ctx, upsertDeviceSQL)
			if err != nil {
				return fmt.Errorf("recording devices: %w", err)
			}
			defer st.Close()
			q = &Queries{q: stmtQuerier{st}, d: q.d, atomic: q.atomic}
		}
		for _, d := range devs {
			if err := q.UpsertDevice(ctx, d); err != nil {
				return err
			}
		}
		return nil
	})
}

// stmtQuerier runs one prepared statement whatever query text it is given;
// only UpsertDevices uses it, for upsertDeviceSQL.
type stmtQuerier struct{ st *sql.Stmt }

func (s stmtQuerier) ExecContext(ctx context.Context, _ string, args ...any) (sql.Result, error) {
	return s.st.ExecContext(ctx, args...)
}

func (s stmtQuerier) QueryContext(ctx context.Context, _ string, args ...any) (*sql.Rows, error) {
	return s.st.QueryContext(ctx, args...)
}

func (s stmtQuerier) QueryRowContext(ctx context.Context, _ string, args ...any) *sql.Row {
	return s.st.QueryRowContext(ctx, args...)
}
