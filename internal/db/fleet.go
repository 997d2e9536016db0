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
// enclosing one for a Tx): the batched last-seen writes of a fleet's
// checks. The devices are nearly always known, so each is first an UPDATE
// (cheaper than an insert that conflicts, on both engines), prepared once
// for the batch; a device the UPDATE does not find is inserted.
func (q *Queries) UpsertDevices(ctx context.Context, devs []Device) error {
	if len(devs) == 0 {
		return nil
	}
	return q.atomic(ctx, func(q *Queries) error {
		var upd querier = q.q
		if p, ok := q.q.(interface {
			PrepareContext(context.Context, string) (*sql.Stmt, error)
		}); ok {
			st, err := p.PrepareContext(ctx, updateDeviceSQL)
			if err != nil {
				return fmt.Errorf("recording devices: %w", err)
			}
			defer st.Close()
			upd = stmtQuerier{st}
		}
		for _, d := range devs {
			c := check{what: "device"}
			c.key("id", d.ID)
			c.key("arch", d.Arch)
			c.key("channel", d.Channel)
			c.optKey("group", d.Group)
			c.optKey("booted commit", d.BootedCommit)
			c.optKey("version", d.Version)
			c.time("last seen", d.LastSeen)
			if c.err != nil {
				return c.err
			}
			res, err := upd.ExecContext(ctx, updateDeviceSQL, d.ID, d.Arch, d.Channel, d.Group, d.BootedCommit, d.Version, micros(d.LastSeen))
			if err != nil {
				return fmt.Errorf("recording device %s: %w", d.ID, err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("recording device %s: %w", d.ID, err)
			} else if n == 0 {
				if err := q.UpsertDevice(ctx, d); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// updateDeviceSQL is upsertDeviceSQL's update, for a device that exists.
const updateDeviceSQL = `UPDATE devices SET arch = $2, channel = $3,
		group_name = CASE WHEN $4 = '' THEN group_name ELSE $4 END,
		booted_commit = $5, version = $6, last_seen = $7
		WHERE id = $1`

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
