package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Device is a machine of the fleet as of its last check-in.
type Device struct {
	ID           string
	Arch         string
	Channel      string // the channel it follows (before pins)
	Group        string // "" for none
	BootedCommit string // "" if unknown
	Version      string // booted version, "" if unknown
	FirstSeen    time.Time
	LastSeen     time.Time
}

// UpsertDevice records a check-in: it creates the device (FirstSeen =
// LastSeen) or overwrites its fields. An empty Group keeps the stored one,
// so a check-in that names no group never undoes an admin's assignment;
// SetDeviceGroup clears it. FirstSeen in d is ignored.
func (q *Queries) UpsertDevice(ctx context.Context, d Device) error {
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
	_, err := q.q.ExecContext(ctx, upsertDeviceSQL,
		d.ID, d.Arch, d.Channel, d.Group, d.BootedCommit, d.Version, micros(d.LastSeen))
	if err != nil {
		return fmt.Errorf("recording device %s: %w", d.ID, err)
	}
	return nil
}

const upsertDeviceSQL = `INSERT INTO devices
		(id, arch, channel, group_name, booted_commit, version, first_seen, last_seen)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
		ON CONFLICT (id) DO UPDATE SET
			arch = excluded.arch,
			channel = excluded.channel,
			group_name = CASE WHEN excluded.group_name = '' THEN devices.group_name ELSE excluded.group_name END,
			booted_commit = excluded.booted_commit,
			version = excluded.version,
			last_seen = excluded.last_seen`

const deviceColumns = `id, arch, channel, group_name, booted_commit, version, first_seen, last_seen`

func scanDevice(sc interface{ Scan(...any) error }) (Device, error) {
	var d Device
	var first, last int64
	err := sc.Scan(&d.ID, &d.Arch, &d.Channel, &d.Group, &d.BootedCommit, &d.Version, &first, &last)
	d.FirstSeen, d.LastSeen = fromMicros(first), fromMicros(last)
	return d, err
}

// GetDevice returns a device, or ErrNotFound.
func (q *Queries) GetDevice(ctx context.Context, id string) (Device, error) {
	d, err := scanDevice(q.q.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Device{}, fmt.Errorf("device %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Device{}, fmt.Errorf("reading device %s: %w", id, err)
	}
	return d, nil
}

// DeviceFilter selects devices; empty fields match everything.
type DeviceFilter struct {
	Channel string
	Arch    string
	Group   string
	// Limit is the page size: 0 means 100, at most 1000 (ListDevices only).
	Limit int
	// After is the last ID of the previous page; "" starts at the
	// beginning (ListDevices only).
	After string
}

// where builds the filter's WHERE clause; paging adds the keyset bound.
func (f DeviceFilter) where(paging bool) (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	if f.Channel != "" {
		add("channel = $%d", f.Channel)
	}
	if f.Arch != "" {
		add("arch = $%d", f.Arch)
	}
	if f.Group != "" {
		add("group_name = $%d", f.Group)
	}
	if paging && f.After != "" {
		add("id > $%d", f.After)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// ListDevices returns one page of devices in ID order. Pages are keyset
// pages (WHERE id > After), so they stay stable and cheap while devices
// check in: pass the last ID of a page as After to get the next; a page
// shorter than the limit is the last.
func (q *Queries) ListDevices(ctx context.Context, f DeviceFilter) ([]Device, error) {
	where, args := f.where(true)
	args = append(args, pageLimit(f.Limit))
	return queryAll(ctx, q.q, "listing devices", func(r *sql.Rows) (Device, error) { return scanDevice(r) },
		`SELECT `+deviceColumns+` FROM devices`+where+fmt.Sprintf(` ORDER BY id LIMIT $%d`, len(args)), args...)
}

// CountDevices counts the devices matching f (Limit and After ignored).
func (q *Queries) CountDevices(ctx context.Context, f DeviceFilter) (int, error) {
	where, args := f.where(false)
	var n int64
	if err := q.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM devices`+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting devices: %w", err)
	}
	return int(n), nil
}

// SetDeviceGroup puts a device in a group ("" for none), or ErrNotFound.
func (q *Queries) SetDeviceGroup(ctx context.Context, id, group string) error {
	c := check{what: "device group"}
	c.key("device id", id)
	c.optKey("group", group)
	if c.err != nil {
		return c.err
	}
	return q.atomic(ctx, func(q *Queries) error {
		res, err := q.q.ExecContext(ctx, `UPDATE devices SET group_name = $2 WHERE id = $1`, id, group)
		if err != nil {
			return fmt.Errorf("setting group of device %s: %w", id, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("setting group of device %s: %w", id, err)
		} else if n == 0 {
			return fmt.Errorf("setting group of device %s: %w", id, ErrNotFound)
		}
		return q.noteChange(ctx, ChangeGroup, id)
	})
}

// Group is a group name and how many devices it has.
type Group struct {
	Name    string
	Devices int
}

// ListGroups returns the groups devices are in, by name. Groups exist
// through their devices (and pins); there is no separate group table.
func (q *Queries) ListGroups(ctx context.Context) ([]Group, error) {
	rows, err := q.q.QueryContext(ctx, `SELECT group_name, COUNT(*) FROM devices
		WHERE group_name <> '' GROUP BY group_name ORDER BY group_name`)
	if err != nil {
		return nil, fmt.Errorf("listing groups: %w", err)
	}
	defer rows.Close()
	var out []Group
	for rows.Next() {
		var g Group
		var n int64
		if err := rows.Scan(&g.Name, &n); err != nil {
			return nil, fmt.Errorf("listing groups: %w", err)
		}
		g.Devices = int(n)
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing groups: %w", err)
	}
	return out, nil
}

// VersionCount is how many registered devices follow a channel on one
// version ("" for devices that reported none).
type VersionCount struct {
	Channel, Version string
	Devices          int
}

// DeviceVersionCounts counts the registered devices by channel and
// version (one scan of the devices table: for metrics, not requests).
func (q *Queries) DeviceVersionCounts(ctx context.Context) ([]VersionCount, error) {
	return queryAll(ctx, q.q, "counting devices by version", func(r *sql.Rows) (VersionCount, error) {
		var c VersionCount
		err := r.Scan(&c.Channel, &c.Version, &c.Devices)
		return c, err
	}, `SELECT channel, version, COUNT(*) FROM devices GROUP BY channel, version ORDER BY channel, version`)
}
