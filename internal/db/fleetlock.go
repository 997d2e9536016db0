package db

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// FleetLock is one device holding one reboot slot of its group (the
// fleet-lock update strategy): it may switch to a new release and reboot
// until it releases the slot or ExpiresAt passes.
type FleetLock struct {
	Group      string
	DeviceID   string
	AcquiredAt time.Time
	ExpiresAt  time.Time
}

// FleetLockGrant is AcquireFleetLock's answer.
type FleetLockGrant struct {
	Granted bool
	// Lock is the device's slot when Granted.
	Lock FleetLock
	// Holders are the group's live slots after the call, oldest first.
	Holders []FleetLock
}

// maxSlots bounds the slots a request may ask for; a group larger than
// this would not coordinate at all.
const maxSlots = 10000

// AcquireFleetLock gives deviceID one of the slots reboot slots of group,
// valid until expires. Slots whose expiry is not after now are freed
// first. It is idempotent: a device that already holds a slot of the group
// keeps it (with the new expiry), so a device that crashed after acquiring
// asks again safely. When every slot is held by other devices the answer
// has Granted false and no error. A slot the device held in another group
// (its group changed) is freed.
//
// The count and the insert are one transaction, serialized per group (on
// PostgreSQL by an advisory lock; SQLite has one writer), so concurrent
// requests never grant more than slots.
func (q *Queries) AcquireFleetLock(ctx context.Context, group, deviceID string, slots int, now, expires time.Time) (FleetLockGrant, error) {
	c := check{what: "fleet lock"}
	c.key("group", group)
	c.key("device id", deviceID)
	c.time("now", now)
	if slots < 1 || slots > maxSlots {
		c.fail("slots must be 1 to %d, got %d", maxSlots, slots)
	}
	if !expires.After(now) {
		c.fail("expiry must be after now")
	}
	if c.err != nil {
		return FleetLockGrant{}, c.err
	}
	var g FleetLockGrant
	err := q.atomic(ctx, func(q *Queries) error {
		if err := q.d.lock(ctx, q.q, "fleet-lock", group); err != nil {
			return err
		}
		if _, err := q.q.ExecContext(ctx, `DELETE FROM fleet_locks WHERE (group_name = $1 AND expires_at <= $2)
			OR (device_id = $3 AND group_name <> $1)`, group, micros(now), deviceID); err != nil {
			return fmt.Errorf("freeing expired slots of group %s: %w", group, err)
		}
		holders, err := queryAll(ctx, q.q, "reading the slots of group "+group, scanFleetLock,
			`SELECT `+fleetLockColumns+` FROM fleet_locks WHERE group_name = $1 ORDER BY acquired_at, device_id`, group)
		if err != nil {
			return err
		}
		for i, h := range holders {
			if h.DeviceID != deviceID {
				continue
			}
			if _, err := q.q.ExecContext(ctx, `UPDATE fleet_locks SET expires_at = $3 WHERE group_name = $1 AND device_id = $2`,
				group, deviceID, micros(expires)); err != nil {
				return fmt.Errorf("renewing the slot of %s in group %s: %w", deviceID, group, err)
			}
			holders[i].ExpiresAt = fromMicros(micros(expires))
			g = FleetLockGrant{Granted: true, Lock: holders[i], Holders: holders}
			return nil
		}
		if len(holders) >= slots {
			g = FleetLockGrant{Holders: holders}
			return nil
		}
		l := FleetLock{Group: group, DeviceID: deviceID, AcquiredAt: fromMicros(micros(now)), ExpiresAt: fromMicros(micros(expires))}
		if _, err := q.q.ExecContext(ctx, `INSERT INTO fleet_locks (group_name, device_id, acquired_at, expires_at) VALUES ($1, $2, $3, $4)`,
			group, deviceID, micros(now), micros(expires)); err != nil {
			return fmt.Errorf("taking a slot of group %s for %s: %w", group, deviceID, err)
		}
		g = FleetLockGrant{Granted: true, Lock: l, Holders: append(holders, l)}
		return nil
	})
	if err != nil {
		return FleetLockGrant{}, err
	}
	return g, nil
}

// ReleaseFleetLocks frees every slot deviceID holds and returns how many
// there were; releasing nothing is not an error (a device repeats its
// release after a crash).
func (q *Queries) ReleaseFleetLocks(ctx context.Context, deviceID string) (int, error) {
	c := check{what: "fleet lock"}
	c.key("device id", deviceID)
	if c.err != nil {
		return 0, c.err
	}
	res, err := q.q.ExecContext(ctx, `DELETE FROM fleet_locks WHERE device_id = $1`, deviceID)
	if err != nil {
		return 0, fmt.Errorf("releasing the slots of %s: %w", deviceID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("releasing the slots of %s: %w", deviceID, err)
	}
	return int(n), nil
}

// ForceReleaseFleetLock frees the slot deviceID holds in group (an
// admin's action), or returns ErrNotFound.
func (q *Queries) ForceReleaseFleetLock(ctx context.Context, group, deviceID string) error {
	res, err := q.q.ExecContext(ctx, `DELETE FROM fleet_locks WHERE group_name = $1 AND device_id = $2`, group, deviceID)
	if err != nil {
		return fmt.Errorf("releasing the slot of %s in group %s: %w", deviceID, group, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("releasing the slot of %s in group %s: %w", deviceID, group, err)
	} else if n == 0 {
		return fmt.Errorf("slot of %s in group %s: %w", deviceID, group, ErrNotFound)
	}
	return nil
}

// ListFleetLocks returns the slots still valid at now, of one group or of
// every group (""), by group, then oldest first.
func (q *Queries) ListFleetLocks(ctx context.Context, group string, now time.Time) ([]FleetLock, error) {
	return queryAll(ctx, q.q, "listing fleet locks", scanFleetLock,
		`SELECT `+fleetLockColumns+` FROM fleet_locks WHERE ($1 = '' OR group_name = $1) AND expires_at > $2
		ORDER BY group_name, acquired_at, device_id`, group, micros(now))
}

const fleetLockColumns = `group_name, device_id, acquired_at, expires_at`

func scanFleetLock(r *sql.Rows) (FleetLock, error) {
	var l FleetLock
	var acq, exp int64
	err := r.Scan(&l.Group, &l.DeviceID, &acq, &exp)
	l.AcquiredAt, l.ExpiresAt = fromMicros(acq), fromMicros(exp)
	return l, err
}
