package main

import (
	"strings"
	"testing"
)

func TestFleetLockCommands(t *testing.T) {
	f := newFakeServer(t)
	f.on("GET /api/v1/fleetlocks", 200, `[{"group":"lab3","device_id":"lab3-pc07","acquired_at":"2026-03-01T20:00:00Z","expires_at":"2026-03-01T21:00:00Z"}]`)
	f.on("DELETE /api/v1/fleetlocks/lab3/lab3-pc07", 204, "")
	out, err := f.run(t, "fleetlock", "list", "--group", "lab3")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"GROUP  DEVICE     SINCE              EXPIRES", "lab3   lab3-pc07  2026-03-01 20:00Z  2026-03-01 21:00Z"} {
		if !strings.Contains(out, want) {
			t.Errorf("list output lacks %q:\n%s", want, out)
		}
	}
	out, err = f.run(t, "fleetlock", "release", "--group", "lab3", "--device", "lab3-pc07")
	if err != nil || !strings.Contains(out, "Freed the restart slot of lab3-pc07 in group lab3.") {
		t.Fatalf("release: %v\n%s", err, out)
	}
	reqs := f.requests()
	if len(reqs) != 2 || reqs[0].query != "group=lab3" || reqs[1].method != "DELETE" {
		t.Fatalf("requests: %+v", reqs)
	}
	if _, err := f.run(t, "fleetlock", "release", "--group", "lab3"); err == nil {
		t.Fatal("release without --device accepted")
	}
	f.on("DELETE /api/v1/fleetlocks/lab3/gone", 404, `{"error":{"code":"not_found","message":"slot of gone in group lab3: not found"}}`)
	if _, err := f.run(t, "fleetlock", "release", "--group", "lab3", "--device", "gone"); err == nil {
		t.Fatal("freeing a slot nobody holds succeeded")
	}
	f.on("GET /api/v1/fleetlocks", 200, `[]`)
	if out, err := f.run(t, "fleetlock", "list"); err != nil || !strings.Contains(out, "No machine holds a restart slot.") {
		t.Fatalf("empty list: %v\n%s", err, out)
	}
}
