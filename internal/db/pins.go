package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// PinScope is what a pin targets.
type PinScope string

// Pin scopes, as stored.
const (
	PinDevice PinScope = "device"
	PinGroup  PinScope = "group"
)

// Pin assigns a device or a group to a channel, holds it on a version, or
// both. Precedence between a device's own pin and its group's is the
// caller's policy; PinsFor returns both.
type Pin struct {
	Scope     PinScope
	Target    string // device id or group name
	Channel   string // "" keeps the device's channel
	Version   string // "" holds nothing; else rollout.ParseVersion syntax
	CreatedBy string
	CreatedAt time.Time
}

// SetPin creates or replaces the pin of a device or group. At least one of
// Channel and Version must be set.
func (q *Queries) SetPin(ctx context.Context, p Pin) error {
	c := check{what: "pin"}
	if p.Scope != PinDevice && p.Scope != PinGroup {
		c.fail("scope %q must be device or group", p.Scope)
	}
	c.key("target", p.Target)
	c.optKey("channel", p.Channel)
	c.optKey("version", p.Version)
	c.key("created by", p.CreatedBy)
	c.time("created at", p.CreatedAt)
	if p.Channel == "" && p.Version == "" {
		c.fail("set a channel, a version or both")
	}
	if c.err == nil && p.Version != "" {
		if _, err := rollout.ParseVersion(p.Version); err != nil {
			c.err = fmt.Errorf("pin: %w: %w", ErrInvalid, err)
		}
	}
	if c.err != nil {
		return c.err
	}
	return q.atomic(ctx, func(q *Queries) error {
		_, err := q.q.ExecContext(ctx, `INSERT INTO pins (scope, target, channel, version, created_by, created_at)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (scope, target) DO UPDATE SET
			channel = excluded.channel, version = excluded.version,
			created_by = excluded.created_by, created_at = excluded.created_at`,
			string(p.Scope), p.Target, p.Channel, p.Version, p.CreatedBy, micros(p.CreatedAt))
		if err != nil {
			return fmt.Errorf("setting %s pin %s: %w", p.Scope, p.Target, err)
		}
		return q.noteChange(ctx, ChangePin, string(p.Scope)+":"+p.Target)
	})
}

// DeletePin removes a pin, or returns ErrNotFound.
func (q *Queries) DeletePin(ctx context.Context, scope PinScope, target string) error {
	return q.atomic(ctx, func(q *Queries) error {
		res, err := q.q.ExecContext(ctx, `DELETE FROM pins WHERE scope = $1 AND target = $2`, string(scope), target)
		if err != nil {
			return fmt.Errorf("deleting %s pin %s: %w", scope, target, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("deleting %s pin %s: %w", scope, target, err)
		} else if n == 0 {
			return fmt.Errorf("%s pin %s: %w", scope, target, ErrNotFound)
		}
		return q.noteChange(ctx, ChangePin, string(scope)+":"+target)
	})
}

const pinColumns = `scope, target, channel, version, created_by, created_at`

func scanPin(sc interface{ Scan(...any) error }) (Pin, error) {
	var p Pin
	var scope string
	var at int64
	err := sc.Scan(&scope, &p.Target, &p.Channel, &p.Version, &p.CreatedBy, &at)
	p.Scope, p.CreatedAt = PinScope(scope), fromMicros(at)
	return p, err
}

// getPin returns a pin or nil if there is none.
func (q *Queries) getPin(ctx context.Context, scope PinScope, target string) (*Pin, error) {
	p, err := scanPin(q.q.QueryRowContext(ctx, `SELECT `+pinColumns+` FROM pins WHERE scope = $1 AND target = $2`, string(scope), target))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s pin %s: %w", scope, target, err)
	}
	return &p, nil
}

// PinsFor returns the pin of a device and the pin of its group (group ""
// has none); each is nil when absent.
func (q *Queries) PinsFor(ctx context.Context, deviceID, group string) (devicePin, groupPin *Pin, err error) {
	if devicePin, err = q.getPin(ctx, PinDevice, deviceID); err != nil {
		return nil, nil, err
	}
	if group != "" {
		if groupPin, err = q.getPin(ctx, PinGroup, group); err != nil {
			return nil, nil, err
		}
	}
	return devicePin, groupPin, nil
}

// ListPins returns every pin: group pins first, then device pins, each by
// target.
func (q *Queries) ListPins(ctx context.Context) ([]Pin, error) {
	return queryAll(ctx, q.q, "listing pins", func(r *sql.Rows) (Pin, error) { return scanPin(r) },
		`SELECT `+pinColumns+` FROM pins ORDER BY scope DESC, target`)
}
