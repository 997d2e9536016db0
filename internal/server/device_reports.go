package server

import (
	"net/http"
	"strconv"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/db"
)

// deviceRoutes registers the read-only device views admins use beside the
// list: one device with its report history, and the latest report and
// failure of a page of devices (mxosctl devices show, and the STATUS and
// FAILURE columns of mxosctl devices).
func (s *Server) deviceRoutes() {
	a := s.api
	p := api.Prefix
	read := []auth.Permission{auth.PermReadDevices}
	s.mux.Handle("GET "+p+"/devices/{id}", a.authed(read, a.handleDeviceDetail))
	s.mux.Handle("GET "+p+"/device-status", a.authed(read, a.handleDeviceStatus))
}

func apiReport(rep db.Report) api.DeviceReport {
	return api.DeviceReport{RolloutID: rep.RolloutID, Version: rep.Version, Event: rep.Event, Counted: rep.Event.ReleaseFailure(),
		Error: rep.Error, At: rep.At, Seq: rep.Seq}
}

func apiReportPtr(rep *db.Report) *api.DeviceReport {
	if rep == nil {
		return nil
	}
	r := apiReport(*rep)
	return &r
}

func (a *apiState) handleDeviceDetail(w http.ResponseWriter, r *http.Request) error {
	limit := 20
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return api.Errorf(api.CodeBadRequest, "limit must be 1 to 1000")
		}
		limit = n
	}
	id := r.PathValue("id")
	d, err := a.store.GetDevice(r.Context(), id)
	if err != nil {
		return err // db.ErrNotFound: 404
	}
	reps, err := a.store.DeviceReports(r.Context(), id, limit)
	if err != nil {
		return err
	}
	st, err := a.store.DeviceStatuses(r.Context(), []string{id})
	if err != nil {
		return err
	}
	out := api.DeviceDetail{Device: api.Device{ID: d.ID, Arch: d.Arch, Channel: d.Channel, Group: d.Group,
		BootedCommit: d.BootedCommit, Version: d.Version, FirstSeen: d.FirstSeen, LastSeen: d.LastSeen},
		Last: apiReportPtr(st[id].Last), LastFailure: apiReportPtr(st[id].LastFailure),
		Reports: make([]api.DeviceReport, 0, len(reps))}
	for _, rep := range reps {
		out.Reports = append(out.Reports, apiReport(rep))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *apiState) handleDeviceStatus(w http.ResponseWriter, r *http.Request) error {
	ids := r.URL.Query()["id"]
	if len(ids) > db.MaxStatusIDs {
		return api.Errorf(api.CodeBadRequest, "at most %d device ids at once", db.MaxStatusIDs)
	}
	st, err := a.store.DeviceStatuses(r.Context(), ids)
	if err != nil {
		return err
	}
	out := make([]api.DeviceStatus, 0, len(st))
	seen := map[string]bool{}
	for _, id := range ids { // in the order asked, once each
		if s, ok := st[id]; ok && !seen[id] {
			seen[id] = true
			out = append(out, api.DeviceStatus{DeviceID: id, Last: apiReportPtr(s.Last), LastFailure: apiReportPtr(s.LastFailure)})
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
