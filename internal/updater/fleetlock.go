package updater

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/storage"
)

// The fleet-lock strategy: at most strategy.max_rebooting machines of a
// group switch to a new release and restart at once, so a bad release
// never takes a whole lab down together. The server keeps the slots
// (POST /api/v1/fleetlock/acquire and /release, internal/api/fleetlock.go).
//
//   - A machine downloads and stages the update as usual, then asks for a
//     slot right before the switch. With every slot taken it stays staged,
//     says so, and asks again on its next check.
//   - It gives the slot back once the new release has been judged: the
//     boot step kept it (health checks passed) or rolled it back. A give-
//     back that fails (no network at boot) is retried at the start of each
//     run cycle; the server also frees slots after an hour by itself.
//   - FleetLockFile records that this machine holds a slot, so machines
//     that hold none never send a release, and a restart of the agent
//     between the switch and the verdict keeps the slot.
//
// Asking for a slot again is harmless (the server keeps the same slot),
// so a crash right after the server granted one loses nothing.

// FleetLockFile, in the sysroot's root directory, exists while this
// machine holds a reboot slot of its group.
const FleetLockFile = "mxos-updater-fleetlock.json"

type fleetLockMark struct {
	Group      string    `json:"group"`
	Version    string    `json:"version"`
	AcquiredAt time.Time `json:"acquired_at"`
	ExpiresAt  time.Time `json:"expires_at"`
}

func (a *Agent) fleetLockPath() string { return filepath.Join(a.Sys.Root(), FleetLockFile) }

// fleetLockBeforeSwitch is called by install right before the switch. It
// reports whether the switch may go ahead: always for other strategies;
// for fleet-lock only with a slot of the group. Failing to get one is not
// an update failure (nothing is reported to the rollout): the update
// stays staged for the next cycle.
func (a *Agent) fleetLockBeforeSwitch(ctx context.Context, t api.Target) bool {
	if a.Cfg.Strategy.Kind != "fleet-lock" {
		return true
	}
	g, err := a.Client.AcquireFleetLock(ctx, api.FleetLockRequest{DeviceID: a.Cfg.DeviceID, Group: a.Cfg.Group, Slots: a.Cfg.Strategy.MaxRebooting})
	switch {
	case errors.Is(err, &api.Error{Code: api.CodeFleetLockBusy}):
		a.say("Version %s is ready. Waiting for other machines in group %s to finish updating; trying again at the next check.", t.Version, a.Cfg.Group)
		return false
	case err != nil:
		a.say("Version %s is ready, but the server could not say whether this machine may restart now; trying again at the next check. (%v)", t.Version, err)
		return false
	}
	mark := fleetLockMark{Group: g.Lock.Group, Version: t.Version, AcquiredAt: g.Lock.AcquiredAt, ExpiresAt: g.Lock.ExpiresAt}
	if err := a.saveFleetLockMark(mark); err != nil {
		// Without the mark the slot might never be given back: give it
		// back now rather than block the group for an hour.
		if rerr := a.Client.ReleaseFleetLock(ctx, a.Cfg.DeviceID); rerr != nil {
			a.say("Could not give back the restart slot: %v", rerr)
		}
		a.say("Version %s is ready, but this machine could not record its restart slot (%v); trying again at the next check.", t.Version, err)
		return false
	}
	return true
}

// fleetLockAfterBoot is deferred by Boot: once the boot step has judged
// the switched release, the slot goes back to the group.
func (a *Agent) fleetLockAfterBoot(ctx context.Context) {
	if err := a.ReleaseFleetLock(ctx); err != nil {
		a.say("Could not give back the restart slot; will try again later: %v", err)
	}
}

// ReleaseFleetLock gives back this machine's reboot slot when it holds one
// and no switched release is waiting for its health verdict. It does
// nothing (and sends nothing) when the machine holds no slot; the daemon
// loop calls it every cycle to retry a give-back that failed.
func (a *Agent) ReleaseFleetLock(ctx context.Context) error {
	mark, held, err := a.loadFleetLockMark()
	if err != nil || !held {
		return err
	}
	waiting, err := a.awaitingVerdict()
	if err != nil || waiting {
		return err
	}
	if err := a.Client.ReleaseFleetLock(ctx, a.Cfg.DeviceID); err != nil {
		return fmt.Errorf("giving back the restart slot of group %s: %w", mark.Group, err)
	}
	if err := os.Remove(a.fleetLockPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("giving back the restart slot: %w", err)
	}
	return nil
}

// awaitingVerdict reports whether the current deployment was switched to
// and not yet kept or rolled back by the boot step.
func (a *Agent) awaitingVerdict() (bool, error) {
	cur, ok, err := a.current()
	if err != nil || !ok {
		return false, err
	}
	pending, err := a.Sys.PendingBoot()
	if err != nil {
		return false, fmt.Errorf("reading the pending boot: %w", err)
	}
	if pending == cur.Name {
		return true, nil
	}
	st, err := a.loadState()
	if err != nil {
		return false, err
	}
	return st.Pending && st.Deployment == cur.Name, nil
}

func (a *Agent) loadFleetLockMark() (fleetLockMark, bool, error) {
	var m fleetLockMark
	b, err := os.ReadFile(a.fleetLockPath())
	if errors.Is(err, os.ErrNotExist) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("reading the restart slot record: %w", err)
	}
	// A torn or edited record still means a slot may be held: it counts as
	// held, so the give-back is sent and the file removed.
	_ = json.Unmarshal(b, &m)
	return m, true, nil
}

func (a *Agent) saveFleetLockMark(m fleetLockMark) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return storage.WriteFile(a.fleetLockPath(), append(b, '\n'), 0o644, storage.TempPath(a.fleetLockPath()+".tmp"))
}
