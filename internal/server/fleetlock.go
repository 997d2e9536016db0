package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/db"
)

// FleetLockTTL is how long a reboot slot lasts unless its device renews
// (acquires again) or releases it: long enough for a download-free switch,
// a reboot and the health checks; short enough that a machine that died
// mid-update frees its group's slot the same morning.
const FleetLockTTL = time.Hour

// fleetLockRoutes registers the routes of internal/api/fleetlock.go.
// Devices take and give back slots; admins list them and free the slot of
// a machine that will not come back (read-devices and pin are the admin's
// fleet permissions).
func (s *Server) fleetLockRoutes() {
	a := s.api
	p := api.Prefix
	h := func(pattern string, perm []auth.Permission, fn func(http.ResponseWriter, *http.Request) error) {
		s.mux.Handle(pattern, a.authed(perm, fn))
	}
	dev := []auth.Permission{auth.PermDevice}
	h("POST "+p+"/fleetlock/acquire", dev, a.handleFleetLockAcquire)
	h("POST "+p+"/fleetlock/release", dev, a.handleFleetLockRelease)
	h("GET "+p+"/fleetlocks", []auth.Permission{auth.PermReadDevices}, a.handleFleetLocks)
	h("DELETE "+p+"/fleetlocks/{group}/{device}", []auth.Permission{auth.PermPin}, a.handleFleetLockForceRelease)
}

func toAPIFleetLock(l db.FleetLock) api.FleetLock {
	return api.FleetLock{Group: l.Group, DeviceID: l.DeviceID, AcquiredAt: l.AcquiredAt, ExpiresAt: l.ExpiresAt}
}

func (a *apiState) handleFleetLockAcquire(w http.ResponseWriter, r *http.Request) error {
	var req api.FleetLockRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	if err := a.forDevice(r, req.DeviceID); err != nil {
		return err
	}
	// The group an admin gave the device wins over the one it declares,
	// as for checks.
	group := req.Group
	if d, err := a.store.GetDevice(r.Context(), req.DeviceID); err == nil && d.Group != "" {
		group = d.Group
	} else if err != nil && !errors.Is(err, db.ErrNotFound) {
		return err
	}
	now := a.now()
	g, err := a.store.AcquireFleetLock(r.Context(), group, req.DeviceID, req.Slots, now, now.Add(FleetLockTTL))
	if err != nil {
		return err
	}
	if !g.Granted {
		// Other devices' ids stay with the admins.
		return api.Errorf(api.CodeFleetLockBusy, "all %d reboot slots of group %s are in use; try again later", req.Slots, group)
	}
	writeJSON(w, http.StatusOK, api.FleetLockGrant{Lock: toAPIFleetLock(g.Lock), Held: len(g.Holders), Slots: req.Slots})
	return nil
}

func (a *apiState) handleFleetLockRelease(w http.ResponseWriter, r *http.Request) error {
	var req api.FleetLockRelease
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	if err := a.forDevice(r, req.DeviceID); err != nil {
		return err
	}
	if _, err := a.store.ReleaseFleetLocks(r.Context(), req.DeviceID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *apiState) handleFleetLocks(w http.ResponseWriter, r *http.Request) error {
	locks, err := a.store.ListFleetLocks(r.Context(), r.URL.Query().Get("group"), a.now())
	if err != nil {
		return err
	}
	writeList(w, locks, toAPIFleetLock)
	return nil
}

func (a *apiState) handleFleetLockForceRelease(w http.ResponseWriter, r *http.Request) error {
	group, dev := r.PathValue("group"), r.PathValue("device")
	now := a.now()
	who := actor(r)
	err := a.store.Tx(r.Context(), func(tx *db.Tx) error {
		if err := tx.ForceReleaseFleetLock(r.Context(), group, dev); err != nil {
			return err
		}
		detail, _ := json.Marshal(map[string]string{"group": group, "device": dev})
		_, err := tx.AppendAudit(r.Context(), db.Entry{Actor: who, Action: "fleetlock.release", Subject: group + "/" + dev, Detail: string(detail), At: now})
		return err
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
