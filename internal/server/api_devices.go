package server

// The update and admin API: the device list and groups (routes in api.go).

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/db"
)

func (a *apiState) handleDevices(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := db.DeviceFilter{Channel: q.Get("channel"), Group: q.Get("group"), After: q.Get("after"), Limit: 100}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return api.Errorf(api.CodeBadRequest, "limit must be 1 to 1000")
		}
		f.Limit = n
	}
	devs, err := a.store.ListDevices(r.Context(), f)
	if err != nil {
		return err
	}
	total, err := a.store.CountDevices(r.Context(), db.DeviceFilter{Channel: f.Channel, Group: f.Group})
	if err != nil {
		return err
	}
	out := api.DeviceList{Devices: make([]api.Device, 0, len(devs)), Total: total}
	for _, d := range devs {
		out.Devices = append(out.Devices, api.Device{ID: d.ID, Arch: d.Arch, Channel: d.Channel, Group: d.Group,
			BootedCommit: d.BootedCommit, Version: d.Version, FirstSeen: d.FirstSeen, LastSeen: d.LastSeen})
	}
	if len(devs) == f.Limit {
		out.Next = devs[len(devs)-1].ID
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *apiState) handleSetGroup(w http.ResponseWriter, r *http.Request) error {
	var req api.GroupRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	id := r.PathValue("id")
	now := a.now()
	who := actor(r)
	err := a.store.Tx(r.Context(), func(tx *db.Tx) error {
		if err := tx.SetDeviceGroup(r.Context(), id, req.Group); err != nil {
			return err
		}
		detail, _ := json.Marshal(map[string]string{"group": req.Group})
		_, err := tx.AppendAudit(r.Context(), db.Entry{Actor: who, Action: "device.group", Subject: id, Detail: string(detail), At: now})
		return err
	})
	if err != nil {
		return err
	}
	a.updates.ForgetDevice(id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
