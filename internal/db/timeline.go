package db

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/mxos-linux/mxos-update/internal/event"
)

// ReportCount is one cell of a report timeline: in the bucket starting
// at Start, Reports reports of Event about Version, from Devices distinct
// devices.
type ReportCount struct {
	Start   time.Time
	Version string
	Event   event.Event
	Reports int
	Devices int
}

// ReportTimeline counts reports from since on, in buckets of width
// bucket (at least a minute), by version and event; with rolloutID, only
// that rollout's. It feeds the console's charts (reports over time per
// rollout, versions across the fleet over time); cells are ordered by
// bucket, version, event.
func (q *Queries) ReportTimeline(ctx context.Context, rolloutID string, since time.Time, bucket time.Duration) ([]ReportCount, error) {
	if bucket < time.Minute {
		return nil, fmt.Errorf("%w: report timeline bucket %s is under a minute", ErrInvalid, bucket)
	}
	width := bucket.Microseconds()
	from := micros(since)
	scan := func(r *sql.Rows) (ReportCount, error) {
		var c ReportCount
		var b int64
		var ev string
		err := r.Scan(&b, &c.Version, &ev, &c.Reports, &c.Devices)
		c.Start, c.Event = fromMicros(from+b*width), event.Event(ev)
		return c, err
	}
	const sel = `SELECT (reported_at - $1) / $2 AS b, version, event, COUNT(*), COUNT(DISTINCT device_id) FROM reports
		WHERE reported_at >= $1`
	const group = ` GROUP BY b, version, event ORDER BY b, version, event`
	what := "counting reports"
	if rolloutID != "" {
		return queryAll(ctx, q.q, what+" of rollout "+rolloutID, scan, sel+` AND rollout_id = $3`+group, from, width, rolloutID)
	}
	return queryAll(ctx, q.q, what, scan, sel+group, from, width)
}
