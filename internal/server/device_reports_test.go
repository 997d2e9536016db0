package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/db"
)

// GET /api/v1/devices/{id} and /api/v1/device-status: admins read a
// device's report history and the latest report and failure of a page of
// devices; nobody else does, and bad input is refused.
func TestDeviceDetailAndStatus(t *testing.T) {
	f := newAPIFixture(t)
	ctx := context.Background()
	now := time.Now()
	for _, id := range []string{"lab-01", "lab-02", "lab-03"} {
		if err := f.store.UpsertDevice(ctx, db.Device{ID: id, Arch: "x86_64", Channel: "stable", Group: "lab", Version: "10.0.1", LastSeen: now}); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range []db.Report{
		{DeviceID: "lab-01", Version: "10.0.2", Event: api.EventDownloadStarted},
		{DeviceID: "lab-01", Version: "10.0.2", Event: api.EventHealthFailed, Error: "required check sshd failed"},
		{DeviceID: "lab-02", Version: "10.0.2", Event: api.EventRefused, Error: "older than the installed 10.0.3"},
		{DeviceID: "lab-02", Version: "10.0.2", Event: api.EventHealthOK},
	} {
		r.At, r.Seq = now.Add(time.Duration(i)*time.Minute), int64(i+1)
		if err := f.store.AddReport(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	admin := f.tokens["admin"]

	code, body := f.do(t, admin, "GET", "/api/v1/devices/lab-01", nil)
	var d api.DeviceDetail
	if code != 200 || json.Unmarshal(body, &d) != nil || d.ID != "lab-01" || d.Group != "lab" || len(d.Reports) != 2 ||
		d.Reports[0].Event != api.EventHealthFailed || !d.Reports[0].Counted || d.Last == nil || d.Last.Event != api.EventHealthFailed ||
		d.LastFailure == nil || d.LastFailure.Error != "required check sshd failed" {
		t.Fatalf("device detail: %d %s", code, body)
	}
	code, body = f.do(t, admin, "GET", "/api/v1/devices/lab-01?limit=1", nil)
	if json.Unmarshal(body, &d) != nil || code != 200 || len(d.Reports) != 1 {
		t.Fatalf("limit=1: %d %s", code, body)
	}
	code, body = f.do(t, admin, "GET", "/api/v1/devices/lab-03", nil)
	d = api.DeviceDetail{}
	if json.Unmarshal(body, &d) != nil || code != 200 || d.Reports == nil || len(d.Reports) != 0 || d.Last != nil {
		t.Fatalf("a device that never reported: %d %s", code, body)
	}

	code, body = f.do(t, admin, "GET", "/api/v1/device-status?id=lab-02&id=lab-01&id=lab-03&id=ghost&id=lab-01", nil)
	var st []api.DeviceStatus
	if code != 200 || json.Unmarshal(body, &st) != nil || len(st) != 2 || st[0].DeviceID != "lab-02" || st[1].DeviceID != "lab-01" ||
		st[0].Last.Event != api.EventHealthOK || st[0].LastFailure.Event != api.EventRefused || st[0].LastFailure.Counted {
		t.Fatalf("device status: %d %s", code, body)
	}

	for _, tc := range []struct {
		token, path string
		code        int
		want        api.Code
	}{
		{"", "/api/v1/devices/lab-01", 401, api.CodeUnauthorized},
		{f.tokens["device"], "/api/v1/devices/lab-01", 403, api.CodeForbidden},
		{f.tokens["release"], "/api/v1/device-status?id=lab-01", 403, api.CodeForbidden},
		{"", "/api/v1/device-status?id=lab-01", 401, api.CodeUnauthorized},
		{admin, "/api/v1/devices/ghost", 404, api.CodeNotFound},
		{admin, "/api/v1/devices/lab-01?limit=0", 400, api.CodeBadRequest},
		{admin, "/api/v1/devices/lab-01?limit=x", 400, api.CodeBadRequest},
		{admin, "/api/v1/device-status?id=" + strings.Repeat("a&id=", db.MaxStatusIDs) + "a", 400, api.CodeBadRequest},
	} {
		code, body := f.do(t, tc.token, "GET", tc.path, nil)
		if code != tc.code || errCode(body) != tc.want {
			t.Errorf("GET %.60s: %d %s, want %d %s", tc.path, code, body, tc.code, tc.want)
		}
	}
}
