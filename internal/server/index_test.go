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

// newIndexedFixture is newAPIFixture served by Serve, so the update
// service's device index is loaded (and waited for) as in mxos-server.
// seed runs on the store before the server starts.
func newIndexedFixture(t *testing.T, seed func(*db.Store)) (*apiFixture, *Server) {
	t.Helper()
	ctx := context.Background()
	data := newDataDir(t)
	store, set := openAPI(t, data)
	now := time.Now()
	for _, v := range []string{"10.0.1", "10.0.2"} {
		err := store.AddRelease(ctx, db.Release{Channel: "stable", Arch: "x86_64", Version: v, Ref: "mxos/10/x86_64/stable",
			Commit: strings.Repeat(v[len(v)-1:], 64), PublishedAt: now, PublishedBy: "test"})
		if err != nil {
			t.Fatal(err)
		}
	}
	if seed != nil {
		seed(store)
	}
	f := &apiFixture{store: store}
	srv, err := New(Config{DataDir: data, Store: store, Channels: set, Now: f.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	f.url, f.tokens = startServer(t, srv), roleTokens(t, store, now)
	for deadline := time.Now().Add(10 * time.Second); !srv.api.updates.IndexReady(); {
		if time.Now().After(deadline) {
			t.Fatal("the device index was not loaded within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return f, srv
}

func (f *apiFixture) checkAs(t *testing.T, token, id string) api.CheckResponse {
	t.Helper()
	code, body := f.do(t, token, "POST", "/api/v1/check", api.CheckRequest{DeviceID: id, Arch: "x86_64", Channel: "stable", Version: "10.0.1"})
	var r api.CheckResponse
	if code != 200 || json.Unmarshal(body, &r) != nil {
		t.Fatalf("check %s: %d %s", id, code, body)
	}
	return r
}

// With the device index loaded, every kind of change made through the API
// is obeyed by the device's very next check: pins set and cleared, group
// changes, a report marking a release bad, enrollment and revocation;
// and a group set behind this server's back (another replica) once the
// groups are refreshed. Devices with machine-id ids (packed keys), other
// ids, and devices the index loaded from the store at start are covered.
func TestCheckIndexFreshness(t *testing.T) {
	const (
		hexID    = "0123456789abcdef0123456789abcdef"
		otherID  = "aula-3-pc07"
		storedID = "fedcba9876543210fedcba9876543210"
	)
	f, srv := newIndexedFixture(t, func(store *db.Store) {
		ctx := context.Background()
		// A device known before the server started, in group "lab".
		if err := store.UpsertDevice(ctx, db.Device{ID: storedID, Arch: "x86_64", Channel: "stable", Group: "lab",
			Version: "10.0.1", LastSeen: time.Now().Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
	})
	ctx := context.Background()
	adm := f.tokens["admin"]
	f.startRollout(t, "stable", "10.0.2")
	put := func(path string, body any) {
		t.Helper()
		if code, b := f.do(t, adm, "PUT", path, body); code/100 != 2 {
			t.Fatalf("PUT %s: %d %s", path, code, b)
		}
	}
	del := func(path string) {
		t.Helper()
		if code, b := f.do(t, adm, "DELETE", path, nil); code/100 != 2 {
			t.Fatalf("DELETE %s: %d %s", path, code, b)
		}
	}
	offered := func(r api.CheckResponse) bool { return r.Update && r.Target.Version == "10.0.2" }

	for _, id := range []string{hexID, otherID, storedID} {
		tok := deviceToken(t, f.store, id)
		if r := f.checkAs(t, tok, id); !offered(r) {
			t.Fatalf("%s: first check: %+v", id, r)
		}
		// A device pin holds it; clearing the pin frees it.
		put("/api/v1/pins", api.Pin{Scope: "device", Target: id, Version: "10.0.1"})
		if r := f.checkAs(t, tok, id); r.Update || r.Reason != "held" {
			t.Fatalf("%s: after the device pin: %+v", id, r)
		}
		del("/api/v1/pins/device/" + id)
		if r := f.checkAs(t, tok, id); !offered(r) {
			t.Fatalf("%s: after clearing the device pin: %+v", id, r)
		}
		// Groups: moving into a held group holds it, out of it frees it.
		put("/api/v1/pins", api.Pin{Scope: "group", Target: "held-" + id, Version: "10.0.1"})
		put("/api/v1/devices/"+id+"/group", api.GroupRequest{Group: "held-" + id})
		if r := f.checkAs(t, tok, id); r.Update || r.Reason != "held" {
			t.Fatalf("%s: after moving into a held group: %+v", id, r)
		}
		put("/api/v1/devices/"+id+"/group", api.GroupRequest{Group: ""})
		if r := f.checkAs(t, tok, id); !offered(r) {
			t.Fatalf("%s: after leaving the held group: %+v", id, r)
		}
	}

	// The device loaded from the store kept its group "lab": a pin on
	// "lab" holds it.
	put("/api/v1/devices/"+storedID+"/group", api.GroupRequest{Group: "lab"})
	put("/api/v1/pins", api.Pin{Scope: "group", Target: "lab", Version: "10.0.1"})
	if r := f.checkAs(t, deviceToken(t, f.store, storedID), storedID); r.Update {
		t.Fatalf("stored device in held group lab: %+v", r)
	}

	// A report marking 10.0.2 bad: never offered to that device again.
	tok := deviceToken(t, f.store, hexID)
	ro := ""
	if r := f.checkAs(t, tok, hexID); offered(r) {
		ro = r.Target.RolloutID
	} else {
		t.Fatalf("before the report: %+v", r)
	}
	if code, b := f.do(t, tok, "POST", "/api/v1/report", api.ReportRequest{DeviceID: hexID, Seq: 1, RolloutID: ro,
		Version: "10.0.2", Event: api.EventRolledBack}); code != 204 {
		t.Fatalf("report: %d %s", code, b)
	}
	if r := f.checkAs(t, tok, hexID); r.Update {
		t.Fatalf("after rolling back from 10.0.2: %+v", r)
	}

	// Enrollment: a new device's first check is answered; revoking it
	// refuses the next one.
	const newID = "00112233445566778899aabbccddeeff"
	cred := f.enroll(t, newID)
	if r := f.checkAs(t, cred, newID); !offered(r) {
		t.Fatalf("enrolled device: %+v", r)
	}
	del("/api/v1/identities/" + newID)
	if code, b := f.do(t, cred, "POST", "/api/v1/check", api.CheckRequest{DeviceID: newID, Arch: "x86_64", Channel: "stable", Version: "10.0.1"}); code != 401 && code != 403 {
		t.Fatalf("revoked device checked: %d %s", code, b)
	}

	// A group set through another replica (straight in the store) applies
	// after the periodic refresh.
	tok = deviceToken(t, f.store, otherID)
	if err := f.store.SetDeviceGroup(ctx, otherID, "lab"); err != nil {
		t.Fatal(err)
	}
	if err := srv.api.updates.RefreshGroups(ctx); err != nil {
		t.Fatal(err)
	}
	if r := f.checkAs(t, tok, otherID); r.Update || r.Reason != "held" {
		t.Fatalf("after a group set elsewhere: %+v", r)
	}
	if err := f.store.SetDeviceGroup(ctx, otherID, ""); err != nil {
		t.Fatal(err)
	}
	if err := srv.api.updates.RefreshGroups(ctx); err != nil {
		t.Fatal(err)
	}
	if r := f.checkAs(t, tok, otherID); !offered(r) {
		t.Fatalf("after a group cleared elsewhere: %+v", r)
	}
	if n := srv.api.updates.IndexedDevices(); n != 4 {
		t.Fatalf("index holds %d devices, want 4", n)
	}
}
