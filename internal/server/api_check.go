package server

// The update and admin API: the device check and report (routes in api.go).

import (
	"net/http"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/api"
)

func (a *apiState) handleCheck(w http.ResponseWriter, r *http.Request) error {
	var req api.CheckRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	if err := a.forDevice(r, req.DeviceID); err != nil {
		return err
	}
	resp, err := a.updates.Check(r.Context(), req)
	if err != nil {
		return err
	}
	if a.meta != nil && resp.Target != nil && !a.meta.consistent(resp.Target) {
		// The answer must agree with the signed metadata; a device would
		// refuse this offer, so it is a server-side inconsistency to fix.
		a.log.Error("check answer names a release that is not in the signed targets; answering no update",
			zap.String("device", req.DeviceID), zap.String("channel", resp.Target.Channel), zap.String("arch", resp.Target.Arch),
			zap.String("version", resp.Target.Version), zap.String("commit", resp.Target.Commit))
		resp = api.CheckResponse{Reason: ReasonUnsigned}
	}
	a.metrics.checks.WithLabelValues(req.Channel, resp.Reason).Inc()
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (a *apiState) handleReport(w http.ResponseWriter, r *http.Request) error {
	var req api.ReportRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	if err := a.forDevice(r, req.DeviceID); err != nil {
		return err
	}
	if err := a.updates.Report(r.Context(), req); err != nil {
		return err
	}
	a.metrics.reports.WithLabelValues(string(req.Event), reportClass(req.Event)).Inc()
	w.WriteHeader(http.StatusNoContent)
	return nil
}
