package db

import (
	"context"
	"fmt"
	"strings"
	"sync"
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
// checks. The devices are nearly always known, so they are written by
// multi-row UPDATEs of upsertChunk devices each (one statement, one round
// trip to PostgreSQL, for a hundred devices); a chunk in which some
// device was not found is written again device by device with
// UpsertDevice, which inserts it.
func (q *Queries) UpsertDevices(ctx context.Context, devs []Device) error {
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
	}
	if len(devs) == 0 {
		return nil
	}
	return q.atomic(ctx, func(q *Queries) error {
		args := make([]any, 0, upsertChunk*7)
		for lo := 0; lo < len(devs); lo += upsertChunk {
			chunk := devs[lo:min(lo+upsertChunk, len(devs))]
			args = args[:0]
			for _, d := range chunk {
				args = append(args, d.ID, d.Arch, d.Channel, d.Group, d.BootedCommit, d.Version, micros(d.LastSeen))
			}
			// Nearly always only the last-seen time changed: an UPDATE that
			// sets nothing else leaves the indexes on channel and group
			// alone (one page written per device instead of three).
			n, err := q.execCount(ctx, touchDevicesSQL(len(chunk)), args)
			if err != nil {
				return err
			}
			if n == len(chunk) {
				continue
			}
			if n, err = q.execCount(ctx, updateDevicesSQL(len(chunk)), args); err != nil {
				return err
			}
			if n == len(chunk) {
				continue
			}
			for _, d := range chunk {
				if err := q.UpsertDevice(ctx, d); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func (q *Queries) execCount(ctx context.Context, query string, args []any) (int, error) {
	res, err := q.execPrepared(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("recording devices: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("recording devices: %w", err)
	}
	return int(n), nil
}

// upsertChunk is how many devices one UPDATE of UpsertDevices writes.
const upsertChunk = 100

var updateDevicesText, touchDevicesText sync.Map // n → SQL

// updateDevicesSQL is the multi-row UPDATE of n devices (WITH v AS (VALUES …)
// UPDATE … FROM v: SQLite ≥ 3.33, PostgreSQL). Its texts are built once, so
// the prepared-statement cache holds at most upsertChunk of them.
func updateDevicesSQL(n int) string {
	return devicesSQL(&updateDevicesText, n, `UPDATE devices SET arch = v.arch, channel = v.channel,
		group_name = CASE WHEN v.grp = '' THEN devices.group_name ELSE v.grp END,
		booted_commit = v.commit_hex, version = v.version, last_seen = v.seen
		FROM v WHERE devices.id = v.id`)
}

// touchDevicesSQL is updateDevicesSQL for devices whose stored row
// already holds everything but the last-seen time: it sets only
// last_seen, and only where the rest matches.
func touchDevicesSQL(n int) string {
	return devicesSQL(&touchDevicesText, n, `UPDATE devices SET last_seen = v.seen
		FROM v WHERE devices.id = v.id AND devices.arch = v.arch AND devices.channel = v.channel
		AND devices.booted_commit = v.commit_hex AND devices.version = v.version
		AND (v.grp = '' OR devices.group_name = v.grp)`)
}

func devicesSQL(cache *sync.Map, n int, update string) string {
	if s, ok := cache.Load(n); ok {
		return s.(string)
	}
	var b strings.Builder
	b.WriteString(`WITH v (id, arch, channel, grp, commit_hex, version, seen) AS (VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		p := i*7 + 1
		fmt.Fprintf(&b, "(CAST($%d AS TEXT), CAST($%d AS TEXT), CAST($%d AS TEXT), CAST($%d AS TEXT), CAST($%d AS TEXT), CAST($%d AS TEXT), CAST($%d AS BIGINT))",
			p, p+1, p+2, p+3, p+4, p+5, p+6)
	}
	b.WriteString(") ")
	b.WriteString(update)
	s, _ := cache.LoadOrStore(n, b.String())
	return s.(string)
}
