package server

// The update and admin API: pins (routes in api.go).

import (
	"encoding/json"
	"net/http"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

func toAPIPin(p db.Pin) api.Pin {
	return api.Pin{Scope: string(p.Scope), Target: p.Target, Channel: p.Channel, Version: p.Version, CreatedBy: p.CreatedBy, CreatedAt: p.CreatedAt}
}

func (a *apiState) handlePins(w http.ResponseWriter, r *http.Request) error {
	pins, err := a.store.ListPins(r.Context())
	if err != nil {
		return err
	}
	writeList(w, pins, toAPIPin)
	return nil
}

func (a *apiState) handleSetPin(w http.ResponseWriter, r *http.Request) error {
	var req api.Pin
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Channel == "" && req.Version == "" {
		return api.Errorf(api.CodeBadRequest, "a pin needs a channel, a version or both")
	}
	if req.Channel != "" {
		if _, err := a.channels.Get(req.Channel); err != nil {
			return api.Errorf(api.CodeUnknownChannel, "unknown channel %q", req.Channel)
		}
	}
	if req.Version != "" {
		if _, err := rollout.ParseVersion(req.Version); err != nil {
			return api.Errorf(api.CodeBadRequest, "%v", err)
		}
	}
	now := a.now()
	who := actor(r)
	p := db.Pin{Scope: db.PinScope(req.Scope), Target: req.Target, Channel: req.Channel, Version: req.Version, CreatedBy: who, CreatedAt: now}
	err := a.store.Tx(r.Context(), func(tx *db.Tx) error {
		if err := tx.SetPin(r.Context(), p); err != nil {
			return err
		}
		detail, _ := json.Marshal(map[string]string{"channel": p.Channel, "version": p.Version})
		_, err := tx.AppendAudit(r.Context(), db.Entry{Actor: who, Action: "pin.set", Subject: req.Scope + "/" + req.Target, Detail: string(detail), At: now})
		return err
	})
	if err != nil {
		return err
	}
	a.updates.Invalidate()
	writeJSON(w, http.StatusOK, toAPIPin(p))
	return nil
}

func (a *apiState) handleDeletePin(w http.ResponseWriter, r *http.Request) error {
	scope, target := r.PathValue("scope"), r.PathValue("target")
	now := a.now()
	who := actor(r)
	err := a.store.Tx(r.Context(), func(tx *db.Tx) error {
		if err := tx.DeletePin(r.Context(), db.PinScope(scope), target); err != nil {
			return err
		}
		_, err := tx.AppendAudit(r.Context(), db.Entry{Actor: who, Action: "pin.delete", Subject: scope + "/" + target, At: now})
		return err
	})
	if err != nil {
		return err
	}
	a.updates.Invalidate()
	w.WriteHeader(http.StatusNoContent)
	return nil
}
