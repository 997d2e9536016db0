package api

import "github.com/mxos-linux/mxos-update/internal/event"

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

// ManualRollback: see event.ManualRollback.
const ManualRollback = event.ManualRollback
