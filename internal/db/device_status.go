package db

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/mxos-linux/mxos-update/internal/event"
)

// DeviceStatus is what the device list shows of a device's reports: its
// latest report and its latest failure (nil when there is none).
type DeviceStatus struct {
	Last        *Report
	LastFailure *Report
}

// problemEvents are the report classes a person should look at: release
// failures and everything that stopped an update (refusals, download and
// configuration errors), counted toward auto-halt or not.
var problemEvents = []event.Event{event.RolledBack, event.HealthFailed, event.BootFailed,
	event.Refused, event.DownloadFailed, event.ConfigError, event.Failed}

// MaxStatusIDs is how many devices DeviceStatuses takes at once.
const MaxStatusIDs = 1000

// DeviceStatuses returns, for each of ids that has reported, its latest
// report and latest failure. At most MaxStatusIDs ids.
func (q *Queries) DeviceStatuses(ctx context.Context, ids []string) (map[string]DeviceStatus, error) {
	out := map[string]DeviceStatus{}
	if len(ids) == 0 {
		return out, nil
	}
	if len(ids) > MaxStatusIDs {
		return nil, fmt.Errorf("device status of %d devices: at most %d at once: %w", len(ids), MaxStatusIDs, ErrInvalid)
	}
	args := make([]any, len(ids))
	marks := make([]string, len(ids))
	for i, id := range ids {
		args[i], marks[i] = id, fmt.Sprintf("$%d", i+1)
	}
	in := strings.Join(marks, ", ")
	evMarks := make([]string, len(problemEvents))
	for i, e := range problemEvents {
		evMarks[i] = "'" + string(e) + "'" // constants, not input
	}
	latest := func(what, filter string) ([]Report, error) {
		// The newest report per device: one pass with a window function
		// (SQLite and PostgreSQL both have ROW_NUMBER).
		return queryAll(ctx, q.q, what, func(r *sql.Rows) (Report, error) {
			var rep Report
			var ro sql.NullString
			var ev string
			var at int64
			err := r.Scan(&rep.DeviceID, &ro, &rep.Version, &ev, &rep.Error, &at, &rep.Seq)
			rep.RolloutID, rep.Event, rep.At = ro.String, event.Event(ev), fromMicros(at)
			return rep, err
		}, `SELECT device_id, rollout_id, version, event, error_text, reported_at, seq FROM (
			SELECT device_id, rollout_id, version, event, error_text, reported_at, seq,
				ROW_NUMBER() OVER (PARTITION BY device_id ORDER BY id DESC) AS n
			FROM reports WHERE device_id IN (`+in+`)`+filter+`) AS latest WHERE n = 1`, args...)
	}
	last, err := latest("reading the latest reports", "")
	if err != nil {
		return nil, err
	}
	for _, r := range last {
		out[r.DeviceID] = DeviceStatus{Last: &r}
	}
	failed, err := latest("reading the latest failures", " AND event IN ("+strings.Join(evMarks, ", ")+")")
	if err != nil {
		return nil, err
	}
	for _, r := range failed {
		st := out[r.DeviceID]
		st.LastFailure = &r
		out[r.DeviceID] = st
	}
	return out, nil
}
