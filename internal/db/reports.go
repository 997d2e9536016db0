package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mxos-linux/mxos-update/internal/event"
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
	Event   event.Event
	Error   string
	At      time.Time
	// Seq is the device's report sequence number; 0 for reports stored
	// before sequence numbers existed (AddReport then checks nothing).
	Seq int64
}

// ErrReplay: a report's sequence number is not above the device's last.
var ErrReplay = errors.New("report sequence number already used")

// failureEvents is the SQL list of event.ReleaseFailures.
var failureEvents = func() string {
	var q []string
	for _, e := range event.ReleaseFailures {
		q = append(q, "'"+string(e)+"'")
	}
	return strings.Join(q, ", ")
}()

// AddReport records a device event. With a sequence number, the device
// must be known and Seq must be above the last one it used (the last is
// moved up in the same statement, so two replicas cannot both accept one
// number); otherwise it is ErrReplay, or ErrNotFound for an unknown device.
// Without one (Seq 0: older rows, tests) the device need not be known.
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
	if r.Seq < 0 {
		c.fail("negative sequence number")
	}
	if c.err != nil {
		return c.err
	}
	return q.atomic(ctx, func(q *Queries) error {
		if r.Seq > 0 {
			res, err := q.q.ExecContext(ctx, `UPDATE devices SET report_seq = $2 WHERE id = $1 AND report_seq < $2`, r.DeviceID, r.Seq)
			if err != nil {
				return fmt.Errorf("recording report from %s: %w", r.DeviceID, err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("recording report from %s: %w", r.DeviceID, err)
			} else if n == 0 {
				if _, err := q.GetDevice(ctx, r.DeviceID); err != nil {
					return fmt.Errorf("recording report from %s: %w", r.DeviceID, err)
				}
				return fmt.Errorf("recording report %d from %s: %w", r.Seq, r.DeviceID, ErrReplay)
			}
		}
		_, err := q.q.ExecContext(ctx, `INSERT INTO reports (device_id, rollout_id, version, event, error_text, reported_at, seq)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			r.DeviceID, nullText(r.RolloutID), r.Version, string(r.Event), r.Error, micros(r.At), r.Seq)
		if err != nil {
			return fmt.Errorf("recording report from %s: %w", r.DeviceID, err)
		}
		return nil
	})
}

// RolloutStats counts the outcomes devices reported for a rollout's
// release since (inclusive): each device counts once, by its latest
// outcome event in the window (health-ok is a success; the release
// failures of event.ReleaseFailures are failures; refusals, download and
// configuration errors and the older agents' failed are no outcome). Only reports naming the rollout and its version
// count, so a device's health-ok for the release it rolled back to does
// not pass for a success.
//
// A device that enrolled (an enroll token gave it its credential) after
// the rollout started does not vote: its reports are stored and shown but
// left out here. An enroll token is baked into images, so whoever holds
// it can enroll invented ids; this way ids enrolled for the purpose
// cannot halt (or pass) a running rollout, while the fleet that existed
// when it started, and devices using admin-made device tokens, count as
// before. Machines imaged during a rollout vote in the next one. An
// unknown rollout is ErrNotFound.
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
		        AND event IN ('health-ok', `+failureEvents+`)
		        AND NOT EXISTS (SELECT 1 FROM device_identities di WHERE di.device_id = reports.device_id
		                        AND di.state = 'enrolled' AND di.updated_at > $4)) latest
		WHERE n = 1`, rolloutID, r.Version, micros(since), micros(votersSince(r))).Scan(&ok, &bad)
	if err != nil {
		return rollout.Stats{}, fmt.Errorf("counting reports of rollout %s: %w", rolloutID, err)
	}
	return rollout.Stats{Successes: int(ok), Failures: int(bad)}, nil
}

// votersSince is when a rollout started for RolloutStats: devices that
// enrolled later do not vote.
func votersSince(r Rollout) time.Time {
	if !r.StartedAt.IsZero() {
		return r.StartedAt
	}
	return r.CreatedAt
}

// notManual leaves out rollbacks a person made ($2 = event.ManualRollback):
// the device's own mark keeps those from being installed again until
// `mxos-updater unmark`, so the server may keep offering them.
const notManual = ` AND NOT (event = 'rolled-back' AND error_text = $2)`

// RolledBackFrom returns the versions a device rolled back from (any
// release failure but a rollback by hand), oldest first, each once.
// Devices never re-target them.
func (q *Queries) RolledBackFrom(ctx context.Context, deviceID string) ([]string, error) {
	out, err := queryAll(ctx, q.q, "reading rollbacks of "+deviceID, scanString,
		`SELECT DISTINCT version FROM reports WHERE device_id = $1 AND event IN (`+failureEvents+`)`+notManual, deviceID, event.ManualRollback)
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

// DevicesWithRollbacks lists every device that ever reported a release failure,
// so a check of any other device can skip RolledBackFrom.
func (q *Queries) DevicesWithRollbacks(ctx context.Context) ([]string, error) {
	out, err := queryAll(ctx, q.q, "listing devices with rollbacks", scanString,
		`SELECT DISTINCT device_id FROM reports WHERE event IN (`+failureEvents+`)`+strings.Replace(notManual, "$2", "$1", 1), event.ManualRollback)
	if err != nil {
		return nil, err
	}
	slices.Sort(out)
	return out, nil
}

// DeviceReports returns a device's latest reports, newest first (at most
// limit; 0 means 100).
func (q *Queries) DeviceReports(ctx context.Context, deviceID string, limit int) ([]Report, error) {
	return queryAll(ctx, q.q, "reading reports of "+deviceID, func(r *sql.Rows) (Report, error) {
		var rep Report
		var ro sql.NullString
		var ev string
		var at int64
		err := r.Scan(&rep.DeviceID, &ro, &rep.Version, &ev, &rep.Error, &at, &rep.Seq)
		rep.RolloutID, rep.Event, rep.At = ro.String, event.Event(ev), fromMicros(at)
		return rep, err
	}, `SELECT device_id, rollout_id, version, event, error_text, reported_at, seq FROM reports
		WHERE device_id = $1 ORDER BY id DESC LIMIT $2`, deviceID, pageLimit(limit))
}
