package api

import (
	"strings"
	"time"
	"unicode/utf8"
)

// Fleet lock: at most N devices of a group switch to a new release and
// reboot at once (the updater's "fleet-lock" strategy, after Zincati's
// FleetLock). A device takes a slot before it switches and gives it back
// once the new release passed its health checks (or was rolled back);
// a slot not given back expires (FleetLockTTL on the server), so a device
// that died does not block its group forever.
//
//	POST   /api/v1/fleetlock/acquire           device  FleetLockRequest → 200 FleetLockGrant
//	                                                   | 409 fleet_lock_busy (all slots held)
//	POST   /api/v1/fleetlock/release           device  FleetLockRelease → 204
//	GET    /api/v1/fleetlocks?group=G          admin   → []FleetLock (live slots)
//	DELETE /api/v1/fleetlocks/{group}/{device} admin   → 204 (404 when not held)
//
// Acquire is idempotent: a device that already holds a slot of the group
// keeps it, with a new expiry. Release frees every slot the device holds
// and succeeds when it holds none. The group is the one the server has
// for the device (an admin's assignment wins), else the one in the request.

// CodeFleetLockBusy: every slot of the group is held by other devices;
// wait and ask again.
const CodeFleetLockBusy Code = "fleet_lock_busy"

// MaxFleetLockSlots bounds FleetLockRequest.Slots.
const MaxFleetLockSlots = 10000

// FleetLockRequest asks for a reboot slot of a group that has Slots of
// them (the device's configured max_rebooting).
type FleetLockRequest struct {
	DeviceID string `json:"device_id"`
	Group    string `json:"group"`
	Slots    int    `json:"slots"`
}

// Validate checks a request before it is sent or served.
func (r *FleetLockRequest) Validate() error {
	switch {
	case r.DeviceID == "" || len(r.DeviceID) > 128:
		return Errorf(CodeBadRequest, "device_id must be 1 to 128 characters")
	case !validGroup(r.Group):
		return Errorf(CodeBadRequest, "group must be 1 to 128 characters of printable text")
	case r.Slots < 1 || r.Slots > MaxFleetLockSlots:
		return Errorf(CodeBadRequest, "slots must be 1 to %d", MaxFleetLockSlots)
	}
	return nil
}

func validGroup(g string) bool {
	if g == "" || len(g) > 128 || !utf8.ValidString(g) {
		return false
	}
	return !strings.ContainsFunc(g, func(r rune) bool { return r < ' ' || r == 0x7f })
}

// FleetLockRelease gives back the slots a device holds.
type FleetLockRelease struct {
	DeviceID string `json:"device_id"`
}

// Validate checks a release.
func (r *FleetLockRelease) Validate() error {
	if r.DeviceID == "" || len(r.DeviceID) > 128 {
		return Errorf(CodeBadRequest, "device_id must be 1 to 128 characters")
	}
	return nil
}

// FleetLock is one device holding one slot of its group.
type FleetLock struct {
	Group      string    `json:"group"`
	DeviceID   string    `json:"device_id"`
	AcquiredAt time.Time `json:"acquired_at"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// FleetLockGrant answers a granted acquire: the device's slot, and how
// many of the group's slots are held.
type FleetLockGrant struct {
	Lock  FleetLock `json:"lock"`
	Held  int       `json:"held"`
	Slots int       `json:"slots"`
}
