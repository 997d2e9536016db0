package db

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// Report is one event a device reported.
type Report struct {
	DeviceID string
	// RolloutID is the rollout the device was following; "" if none.
	RolloutID string
	// Version is the release the event is about: for rolled-back, the one
	// the device left.
	Version string
	Event   api.Event
	Error   string
	At      time.Time
}

// AddReport records a device event. The device need not be known
// (reports are telemetry and may arrive before a check-in).
func (q *Queries) AddReport(ctx context.Context, r Report) error {
	c := check{what: "report"}
	c.key("device id", r.DeviceID)
	c.optKey("rollout id", r.RolloutID)
	c.key("version", r.Version)
	c.text("error", r.Error, maxText)
	c.time("time", r.At)
	if !r.Event.Valid() {
		c.fail("unknown event %q", r.Event)
	}
	if c.err != nil {
		return c.err
	}
	_, err := q.q.ExecContext(ctx, `INSERT INTO reports (device_id, rollout_id, version, event, error_text, reported_at)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		r.DeviceID, nullText(r.RolloutID), r.Version, string(r.Event), r.Error, micros(r.At))
	if err != nil {
		return fmt.Errorf("recording report from %s: %w", r.DeviceID, err)
	}
	return nil
}

// RolloutStats counts the outcomes devices reported for a rollout's
// release since (inclusive): each device counts once, by its latest
// outcome event in the window (health-ok is a success; rolled-back and
// failed are failures). Only reports naming the rollout and its version
// count, so a device's health-ok for the release it rolled back to does
// not pass for a success. An unknown rollout is ErrNotFound.
func (q *Queries) RolloutStats(ctx context.Context, rolloutID string, since time.Time) (rollout.Stats, error) {
	r, err := q.GetRollout(ctx, rolloutID)
	if err != nil {
		return rollout.Stats{}, err
	}
	// ROW_NUMBER picks each device's latest outcome; the id breaks ties
	// between events with the same timestamp in arrival order.
	var ok, bad int64
	err = q.q.QueryRowContext(ctx, `
		SELECT COALESCE(SUM(CASE WHEN event = 'health-ok' THEN 1 ELSE 0 END), 0),
		       COALESCE(SUM(CASE WHEN event = 'health-ok' THEN 0 ELSE 1 END), 0)
		FROM (SELECT event, ROW_NUMBER() OVER (PARTITION BY device_id ORDER BY reported_at DESC, id DESC) AS n
		      FROM reports
		      WHERE rollout_id = $1 AND version = $2 AND reported_at >= $3
		        AND event IN ('health-ok', 'rolled-back', 'failed')) latest
		WHERE n = 1`, rolloutID, r.Version, micros(since)).Scan(&ok, &bad)
	if err != nil {
		return rollout.Stats{}, fmt.Errorf("counting reports of rollout %s: %w", rolloutID, err)
	}
	return rollout.Stats{Successes: int(ok), Failures: int(bad)}, nil
}

// RolledBackFrom returns the versions a device rolled back from, oldest
// first, each once. Devices never re-target them.
func (q *Queries) RolledBackFrom(ctx context.Context, deviceID string) ([]string, error) {
	out, err := queryAll(ctx, q.q, "reading rollbacks of "+deviceID, scanString,
		`SELECT DISTINCT version FROM reports WHERE device_id = $1 AND event = 'rolled-back'`, deviceID)
	if err != nil {
		return nil, err
	}
	// Reported versions are device input, not necessarily well-formed:
	// well-formed ones first, by version, then the rest; text breaks ties
	// (10.1 and 10.1.0 are equal versions) so the order is deterministic.
	slices.SortFunc(out, func(a, b string) int {
		va, errA := rollout.ParseVersion(a)
		vb, errB := rollout.ParseVersion(b)
		switch {
		case errA == nil && errB != nil:
			return -1
		case errA != nil && errB == nil:
			return 1
		case errA == nil:
			if c := va.Compare(vb); c != 0 {
				return c
			}
		}
		return strings.Compare(a, b)
	})
	return out, nil
}

// DevicesWithRollbacks lists every device that ever reported rolling back,
// so a check of any other device can skip RolledBackFrom.
func (q *Queries) DevicesWithRollbacks(ctx context.Context) ([]string, error) {
	out, err := queryAll(ctx, q.q, "listing devices with rollbacks", scanString,
		`SELECT DISTINCT device_id FROM reports WHERE event = 'rolled-back'`)
	if err != nil {
		return nil, err
	}
	slices.Sort(out)
	return out, nil
}
