package server

// The update and admin API: channels and rollouts (routes in api.go).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

func toAPIRelease(r db.Release) *api.Release {
	return &api.Release{Channel: r.Channel, Arch: r.Arch, Version: r.Version, Ref: r.Ref, Commit: r.Commit,
		OCIDigest: r.OCIDigest, PublishedAt: r.PublishedAt, PublishedBy: r.PublishedBy, PromotedFrom: r.PromotedFrom}
}

func (a *apiState) rolloutStatus(ctx context.Context, ro db.Rollout) (api.RolloutStatus, error) {
	st := api.RolloutStatus{ID: ro.ID, Channel: ro.Channel, Arch: ro.Arch, Version: ro.Version, Ramp: ro.Ramp,
		State: string(ro.State), StartedAt: ro.StartedAt, UpdatedAt: ro.UpdatedAt, HaltReason: ro.HaltReason, CreatedBy: ro.CreatedBy}
	now := a.now()
	switch ro.State {
	case rollout.StateActive:
		if ramp, err := rollout.ParseRamp(ro.Ramp); err == nil {
			st.Fraction = ramp.FractionAt(ro.StartedAt, now)
		}
	case rollout.StateComplete:
		st.Fraction = 1
	}
	if ch, err := a.channels.Get(ro.Channel); err == nil {
		stats, err := a.store.RolloutStats(ctx, ro.ID, now.Add(-ch.HaltPolicy().Window))
		if err != nil {
			return st, err
		}
		st.Successes, st.Failures = stats.Successes, stats.Failures
	}
	return st, nil
}

func (a *apiState) handleChannels(w http.ResponseWriter, r *http.Request) error {
	var out []api.ChannelStatus
	for _, ch := range a.channels.Channels() {
		cs := api.ChannelStatus{Name: ch.Name, Description: ch.Description, PromotesFrom: ch.PromotesFrom}
		if ramp, err := ch.DefaultRamp(); err == nil {
			cs.DefaultRamp = ramp.String()
		}
		for _, arch := range ch.Arches() {
			ref, _ := ch.Ref(arch)
			as := api.ArchStatus{Arch: arch, Ref: ref}
			if rel, err := a.store.LatestRelease(r.Context(), ch.Name, arch); err == nil {
				as.Latest = toAPIRelease(rel)
			} else if !errors.Is(err, db.ErrNotFound) {
				return err
			}
			if ro, err := a.store.CurrentRollout(r.Context(), ch.Name, arch); err == nil {
				st, err := a.rolloutStatus(r.Context(), ro)
				if err != nil {
					return err
				}
				as.Rollout = &st
			} else if !errors.Is(err, db.ErrNotFound) {
				return err
			}
			cs.Arches = append(cs.Arches, as)
		}
		out = append(out, cs)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *apiState) handleRollouts(w http.ResponseWriter, r *http.Request) error {
	chName := r.URL.Query().Get("channel")
	if chName != "" {
		if _, err := a.channels.Get(chName); err != nil {
			return api.Errorf(api.CodeUnknownChannel, "unknown channel %q", chName)
		}
	}
	ros, err := a.store.ListRollouts(r.Context(), chName)
	if err != nil {
		return err
	}
	out := make([]api.RolloutStatus, 0, len(ros))
	for _, ro := range ros {
		st, err := a.rolloutStatus(r.Context(), ro)
		if err != nil {
			return err
		}
		out = append(out, st)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (a *apiState) handleRolloutStart(w http.ResponseWriter, r *http.Request) error {
	var req api.RolloutStartRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	ch, err := a.channels.Get(req.Channel)
	if err != nil {
		return api.Errorf(api.CodeUnknownChannel, "unknown channel %q", req.Channel)
	}
	if req.Version == "" {
		return api.Errorf(api.CodeBadRequest, "version is required")
	}
	ramp := req.Ramp
	if ramp == "" {
		dr, err := ch.DefaultRamp()
		if err != nil {
			return err
		}
		ramp = dr.String()
	} else if _, err := rollout.ParseRamp(ramp); err != nil {
		return api.Errorf(api.CodeBadRequest, "%v", err)
	}
	arches := ch.Arches()
	if req.Arch != "" {
		if _, ok := ch.Ref(req.Arch); !ok {
			return api.Errorf(api.CodeUnknownArch, "channel %s has no %s", ch.Name, req.Arch)
		}
		arches = []string{req.Arch}
	}
	now := a.now()
	who := actor(r)
	var out []db.Rollout
	err = a.store.Tx(r.Context(), func(tx *db.Tx) error {
		for _, arch := range arches {
			if _, err := tx.GetRelease(r.Context(), ch.Name, arch, req.Version); errors.Is(err, db.ErrNotFound) {
				if req.Arch == "" {
					continue // this architecture has no such release
				}
				return api.Errorf(api.CodeNotFound, "%s %s is not published on %s", req.Version, arch, ch.Name)
			} else if err != nil {
				return err
			}
			ro := db.Rollout{ID: newID(), Channel: ch.Name, Arch: arch, Version: req.Version, Ramp: ramp,
				State: rollout.StateActive, CreatedAt: now, CreatedBy: who}
			if err := tx.CreateRollout(r.Context(), ro); err != nil {
				return err
			}
			detail, _ := json.Marshal(map[string]string{"rollout": ro.ID, "ramp": ramp})
			if _, err := tx.AppendAudit(r.Context(), db.Entry{Actor: who, Action: "rollout.start",
				Subject: ch.Name + "/" + arch + "/" + req.Version, Detail: string(detail), At: now}); err != nil {
				return err
			}
			out = append(out, ro)
		}
		if len(out) == 0 {
			return api.Errorf(api.CodeNotFound, "%s is not published on %s", req.Version, ch.Name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	a.updates.Invalidate()
	a.rolloutsChanged()
	var sts []api.RolloutStatus
	for _, ro := range out {
		ro, _ = a.store.GetRollout(r.Context(), ro.ID)
		st, err := a.rolloutStatus(r.Context(), ro)
		if err != nil {
			return err
		}
		sts = append(sts, st)
	}
	writeJSON(w, http.StatusCreated, sts)
	return nil
}

func (a *apiState) handleRolloutAction(w http.ResponseWriter, r *http.Request) error {
	var req api.RolloutActionRequest
	if r.ContentLength != 0 {
		if err := decode(w, r, &req); err != nil {
			return err
		}
	}
	action, err := rollout.ParseAction(r.PathValue("action"))
	if err != nil || action == rollout.ActionStart {
		return api.Errorf(api.CodeBadRequest, "unknown action %q: use pause, resume, halt or complete", r.PathValue("action"))
	}
	id := r.PathValue("id")
	ro, err := a.store.GetRollout(r.Context(), id)
	if err != nil {
		return err
	}
	to, err := rollout.Transition(ro.State, action)
	if err != nil {
		return api.Errorf(api.CodeRolloutState, "%v", err)
	}
	now := a.now()
	who := actor(r)
	err = a.store.Tx(r.Context(), func(tx *db.Tx) error {
		if err := tx.SetRolloutState(r.Context(), id, ro.State, to, req.Reason, now); err != nil {
			return err
		}
		detail, _ := json.Marshal(map[string]string{"rollout": id, "from": string(ro.State), "to": string(to), "reason": req.Reason})
		_, err := tx.AppendAudit(r.Context(), db.Entry{Actor: who, Action: "rollout." + string(action),
			Subject: ro.Channel + "/" + ro.Arch + "/" + ro.Version, Detail: string(detail), At: now})
		return err
	})
	if err != nil {
		return err
	}
	a.updates.Invalidate()
	a.rolloutsChanged()
	ro, err = a.store.GetRollout(r.Context(), id)
	if err != nil {
		return err
	}
	st, err := a.rolloutStatus(r.Context(), ro)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}
