package server

// The update and admin API: report timelines for the console's charts
// (routes in api.go).

import (
	"net/http"
	"strconv"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
)

func (a *apiState) handleReportTimeline(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	days := 14
	if s := q.Get("days"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 90 {
			return api.Errorf(api.CodeBadRequest, "days must be 1 to 90")
		}
		days = n
	}
	bucket := 24 * time.Hour
	if days <= 2 {
		bucket = time.Hour
	}
	rolloutID := q.Get("rollout")
	if rolloutID != "" {
		if _, err := a.store.GetRollout(r.Context(), rolloutID); err != nil {
			return err
		}
	}
	since := a.now().UTC().Add(time.Duration(-days) * 24 * time.Hour).Truncate(bucket)
	counts, err := a.store.ReportTimeline(r.Context(), rolloutID, since, bucket)
	if err != nil {
		return err
	}
	out := api.ReportTimeline{Since: since, Bucket: int64(bucket / time.Second), Counts: make([]api.ReportCount, 0, len(counts))}
	for _, c := range counts {
		out.Counts = append(out.Counts, api.ReportCount{Start: c.Start, Version: c.Version, Event: c.Event, Reports: c.Reports, Devices: c.Devices})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
