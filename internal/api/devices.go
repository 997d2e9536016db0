package api

// DeviceStatus is a device's latest report and latest failure (refusals,
// download and configuration errors included), for the device list's
// status columns: GET /api/v1/device-status?id=A&id=B (at most 1000 ids;
// devices that never reported are left out).
type DeviceStatus struct {
	DeviceID    string        `json:"device_id"`
	Last        *DeviceReport `json:"last,omitempty"`
	LastFailure *DeviceReport `json:"last_failure,omitempty"`
}

// DeviceDetail is one device with its report history, newest first:
// GET /api/v1/devices/{id}[?limit=N] (20 reports unless limit says).
type DeviceDetail struct {
	Device
	Last        *DeviceReport  `json:"last,omitempty"`
	LastFailure *DeviceReport  `json:"last_failure,omitempty"`
	Reports     []DeviceReport `json:"reports"`
}

// ManualRollback is the Error of the rolled-back report a device sends
// when a person rolled it back (`mxos-updater rollback`). It counts toward
// auto-halt like any rolled-back report, but it does not stop the server
// from offering that version to the device again: the device's own mark
// decides, and `mxos-updater unmark` lifts it. Rollbacks by health checks
// or the boot counter stay final on both sides.
const ManualRollback = "rolled back by hand"
