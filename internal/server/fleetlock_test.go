package server

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/db"
)

// fleetLockFixture is a server with a clock the test moves, and a client
// per role.
type fleetLockFixture struct {
	mu      sync.Mutex
	now     time.Time
	store   *db.Store
	clients map[auth.Role]*client.Client
	raw     *apiFixture // for requests the client would refuse to send
}

func (f *fleetLockFixture) clock() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
func (f *fleetLockFixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func newFleetLockFixture(t *testing.T) *fleetLockFixture {
	t.Helper()
	data := newDataDir(t)
	store, set := openAPI(t, data)
	f := &fleetLockFixture{now: time.Date(2026, 11, 23, 20, 0, 0, 0, time.UTC), store: store, clients: map[auth.Role]*client.Client{}}
	srv, err := New(Config{DataDir: data, Store: store, Channels: set, Now: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	url := serveHandler(t, srv)
	f.raw = &apiFixture{url: url, store: store, tokens: roleTokens(t, store, time.Now())}
	for _, role := range []auth.Role{auth.RoleRelease, auth.RoleAdmin, auth.RoleDevice} {
		if f.clients[role], err = client.New(url, f.raw.tokens[string(role)]); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

var errBusy = &api.Error{Code: api.CodeFleetLockBusy}

// device is a client with a device token bound to id.
func (f *fleetLockFixture) device(t *testing.T, id string) *client.Client {
	t.Helper()
	c, err := client.New(f.raw.url, deviceToken(t, f.store, id))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFleetLockOverHTTP(t *testing.T) {
	f := newFleetLockFixture(t)
	ctx := context.Background()
	dev, adm := f.clients[auth.RoleDevice], f.clients[auth.RoleAdmin]
	acquire := func(id string) (api.FleetLockGrant, error) {
		return f.device(t, id).AcquireFleetLock(ctx, api.FleetLockRequest{DeviceID: id, Group: "lab3", Slots: 2})
	}

	// Two slots: pc1 and pc2 get them, pc3 is told to wait.
	for _, id := range []string{"pc1", "pc2"} {
		g, err := acquire(id)
		if err != nil || g.Lock.DeviceID != id || g.Lock.Group != "lab3" || g.Slots != 2 || !g.Lock.ExpiresAt.Equal(f.clock().Add(FleetLockTTL)) {
			t.Fatalf("%s: %+v %v", id, g, err)
		}
	}
	_, err := acquire("pc3")
	if !errors.Is(err, errBusy) {
		t.Fatalf("pc3 with both slots held: %v", err)
	}
	if strings.Contains(err.Error(), "pc1") || strings.Contains(err.Error(), "pc2") {
		t.Fatalf("busy answer names other devices: %v", err)
	}
	// Idempotent: pc1 asks again (it restarted) and keeps its slot.
	f.advance(10 * time.Minute)
	if g, err := acquire("pc1"); err != nil || g.Held != 2 || !g.Lock.ExpiresAt.Equal(f.clock().Add(FleetLockTTL)) {
		t.Fatalf("pc1 again: %+v %v", g, err)
	}
	// Release frees a slot; releasing twice is fine.
	for range 2 {
		if err := f.device(t, "pc2").ReleaseFleetLock(ctx, "pc2"); err != nil {
			t.Fatalf("release pc2: %v", err)
		}
	}
	f.advance(time.Minute)
	if g, err := acquire("pc3"); err != nil || g.Held != 2 {
		t.Fatalf("pc3 after release: %+v %v", g, err)
	}
	// A device that never comes back loses its slot after the TTL: pc1's
	// renewed slot ends a minute before pc3's.
	f.advance(FleetLockTTL - 5*time.Minute)
	if _, err := acquire("pc4"); !errors.Is(err, errBusy) {
		t.Fatalf("pc4 before expiry: %v", err)
	}
	f.advance(4 * time.Minute)
	if _, err := acquire("pc4"); err != nil {
		t.Fatalf("pc4 after pc1's slot expired: %v", err)
	}
	// The admin sees who holds what and frees a stuck machine's slot,
	// which the audit log records.
	locks, err := adm.FleetLocks(ctx, "lab3")
	if err != nil || len(locks) != 2 || locks[0].DeviceID != "pc3" || locks[1].DeviceID != "pc4" {
		t.Fatalf("list: %+v %v", locks, err)
	}
	if other, err := adm.FleetLocks(ctx, "lab9"); err != nil || len(other) != 0 {
		t.Fatalf("list other group: %+v %v", other, err)
	}
	if err := adm.ForceReleaseFleetLock(ctx, "lab3", "pc3"); err != nil {
		t.Fatalf("force release: %v", err)
	}
	if err := adm.ForceReleaseFleetLock(ctx, "lab3", "pc3"); !errors.Is(err, &api.Error{Code: api.CodeNotFound}) {
		t.Fatalf("force release twice: %v", err)
	}
	if _, err := acquire("pc5"); err != nil {
		t.Fatalf("pc5 after force release: %v", err)
	}
	audit, err := adm.Audit(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range audit.Entries {
		found = found || (e.Action == "fleetlock.release" && e.Subject == "lab3/pc3" && e.Actor == "token:t-admin")
	}
	if !found || !audit.Verified {
		t.Fatalf("audit lacks the force release: %+v", audit)
	}
	// Other roles cannot take slots; devices cannot list or free others'.
	if _, err := f.clients[auth.RoleRelease].AcquireFleetLock(ctx, api.FleetLockRequest{DeviceID: "x", Group: "lab3", Slots: 9}); !errors.Is(err, &api.Error{Code: api.CodeForbidden}) {
		t.Fatalf("release role acquired: %v", err)
	}
	if _, err := dev.FleetLocks(ctx, ""); !errors.Is(err, &api.Error{Code: api.CodeForbidden}) {
		t.Fatalf("device listed locks: %v", err)
	}
	if err := dev.ForceReleaseFleetLock(ctx, "lab3", "pc4"); !errors.Is(err, &api.Error{Code: api.CodeForbidden}) {
		t.Fatalf("device force-released: %v", err)
	}
}

// The group an admin assigned wins over the one the device declares, so a
// machine moved to another lab competes with that lab's machines.
func TestFleetLockUsesAdminGroup(t *testing.T) {
	f := newFleetLockFixture(t)
	ctx := context.Background()
	adm := f.clients[auth.RoleAdmin]
	if _, err := f.device(t, "moved").Check(ctx, api.CheckRequest{DeviceID: "moved", Arch: "x86_64", Channel: "stable", Group: "lab3"}); err != nil {
		t.Fatal(err)
	}
	if err := adm.SetDeviceGroup(ctx, "moved", "lab4"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.device(t, "lab4-pc1").AcquireFleetLock(ctx, api.FleetLockRequest{DeviceID: "lab4-pc1", Group: "lab4", Slots: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.device(t, "moved").AcquireFleetLock(ctx, api.FleetLockRequest{DeviceID: "moved", Group: "lab3", Slots: 1}); !errors.Is(err, errBusy) || !strings.Contains(err.Error(), "lab4") {
		t.Fatalf("moved device: %v", err)
	}
}

func TestFleetLockBadRequestsChangeNothing(t *testing.T) {
	f := newFleetLockFixture(t)
	ctx := context.Background()
	tokDev := f.clients[auth.RoleDevice]
	if _, err := tokDev.AcquireFleetLock(ctx, api.FleetLockRequest{DeviceID: "keep", Group: "lab3", Slots: 1}); err != nil {
		t.Fatal(err)
	}
	// Sent raw, past the client's own validation.
	for _, c := range []struct {
		name string
		body any
		code api.Code
	}{
		{"no-device", api.FleetLockRequest{Group: "lab3", Slots: 1}, api.CodeBadRequest},
		{"no-group", api.FleetLockRequest{DeviceID: "d", Slots: 1}, api.CodeBadRequest},
		{"zero-slots", api.FleetLockRequest{DeviceID: "d", Group: "lab3"}, api.CodeBadRequest},
		{"huge-slots", api.FleetLockRequest{DeviceID: "d", Group: "lab3", Slots: 1 << 30}, api.CodeBadRequest},
		{"control-in-group", api.FleetLockRequest{DeviceID: "d", Group: "lab\x003", Slots: 1}, api.CodeBadRequest},
		{"unknown-field", `{"device_id":"d","group":"lab3","slots":1,"force":true}`, api.CodeBadRequest},
		{"malformed", `{"device_id":`, api.CodeBadRequest},
		{"huge-body", `{"device_id":"` + strings.Repeat("x", 100<<10) + `"}`, api.CodeTooLarge},
	} {
		code, body := f.raw.do(t, f.raw.tokens["device"], "POST", "/api/v1/fleetlock/acquire", c.body)
		if errCode(body) != c.code || code != c.code.HTTPStatus() {
			t.Errorf("%s: %d %s, want %s", c.name, code, body, c.code)
		}
	}
	if code, body := f.raw.do(t, f.raw.tokens["device"], "POST", "/api/v1/fleetlock/release", api.FleetLockRelease{}); code != 400 {
		t.Errorf("release without device: %d %s", code, body)
	}
	// The client refuses the same requests before sending them.
	if _, err := tokDev.AcquireFleetLock(ctx, api.FleetLockRequest{DeviceID: "d", Group: "lab3"}); !errors.Is(err, &api.Error{Code: api.CodeBadRequest}) {
		t.Errorf("client sent zero slots: %v", err)
	}
	if locks, _ := f.store.ListFleetLocks(ctx, "", f.clock()); len(locks) != 1 || locks[0].DeviceID != "keep" {
		t.Fatalf("bad requests changed the locks: %+v", locks)
	}
}
