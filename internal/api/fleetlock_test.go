package api

import (
	"strings"
	"testing"
)

func TestFleetLockRequestValidate(t *testing.T) {
	good := FleetLockRequest{DeviceID: "lab3-pc07", Group: "escuela-123 lab3", Slots: 2}
	checkMutations(t, good, (*FleetLockRequest).Validate, []mutation[FleetLockRequest]{
		{"good", func(*FleetLockRequest) {}, true},
		{"no-device", func(r *FleetLockRequest) { r.DeviceID = "" }, false},
		{"long-device", func(r *FleetLockRequest) { r.DeviceID = strings.Repeat("x", 129) }, false},
		{"no-group", func(r *FleetLockRequest) { r.Group = "" }, false},
		{"long-group", func(r *FleetLockRequest) { r.Group = strings.Repeat("g", 129) }, false},
		{"control-in-group", func(r *FleetLockRequest) { r.Group = "lab\n3" }, false},
		{"bad-utf8-group", func(r *FleetLockRequest) { r.Group = "lab\xff" }, false},
		{"zero-slots", func(r *FleetLockRequest) { r.Slots = 0 }, false},
		{"too-many-slots", func(r *FleetLockRequest) { r.Slots = MaxFleetLockSlots + 1 }, false},
	})
	if err := (&FleetLockRelease{}).Validate(); err == nil {
		t.Fatal("release without a device accepted")
	}
	if CodeFleetLockBusy.HTTPStatus() != 409 {
		t.Fatalf("busy is served as %d", CodeFleetLockBusy.HTTPStatus())
	}
}
