package updater

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/testserver"
)

// flEnv is a real server (SQLite) with a release key, and a way to make
// devices for it.
type flEnv struct {
	url      string
	keys     string
	root     string
	verifier []sign.Verifier
	store    *db.Store
	fix      *fixture
	ts       *testserver.Server
	admin    *client.Client
}

func newFLEnv(t *testing.T) *flEnv {
	t.Helper()
	ts := testserver.Start(t, testserver.Options{Metadata: true, OnlineSummaryKey: true, Serve: true,
		Roles: []auth.Role{auth.RoleRelease, auth.RoleDevice, auth.RoleAdmin}})
	return &flEnv{url: ts.URL, keys: ts.Release.Dir, root: rootJSON(t, ts), verifier: ts.Release.Verifiers, store: ts.Store,
		admin: ts.Client(t, auth.RoleAdmin), ts: ts, fix: newFixture(t, ts)}
}

// device makes an agent with its own sysroot; extra is appended to its
// configuration.
func (e *flEnv) device(t *testing.T, id, extra string) (*Agent, *bytes.Buffer) {
	t.Helper()
	return newTestAgent(t, e.url, e.ts.DeviceToken(t, id), e.keys, e.root, e.verifier, id, extra)
}

// Five machines of one lab with max_rebooting 2: never more than two are
// switched and waiting for their verdict at once, the rest wait staged
// with a plain message, and all end on the new release, every slot given
// back.
func TestFleetLockFiveDevicesTwoSlots(t *testing.T) {
	ctx := context.Background()
	e := newFLEnv(t)
	e.fix.publish(t, "10.0.0")
	const n, slots = 5, 2
	agents := make([]*Agent, n)
	outs := make([]*bytes.Buffer, n)
	for i := range agents {
		agents[i], outs[i] = e.device(t, fmt.Sprintf("lab3-pc%02d", i), "group: lab3\nstrategy: {kind: fleet-lock, max_rebooting: 2}\n")
	}
	// Freshly imaged machines (nothing installed) take 10.0.0, two at a
	// time as well; then 10.0.1 comes out.
	for _, version := range []string{"10.0.0", "10.0.1"} {
		if version != "10.0.0" {
			e.fix.publish(t, version)
		}
		waited := 0
		for round := 0; ; round++ {
			if round > 20 {
				t.Fatalf("%s: not every machine updated after 20 rounds", version)
			}
			// Every machine checks at once.
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i, a := range agents {
				wg.Add(1)
				go func() { defer wg.Done(); _, errs[i] = a.Upgrade(ctx) }()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("round %d, pc%02d: %v", round, i, err)
				}
			}
			switched := flCountSwitched(t, agents)
			if switched > slots {
				t.Fatalf("round %d: %d machines switched and not yet judged, max %d", round, switched, slots)
			}
			if locks, err := e.admin.FleetLocks(ctx, "lab3"); err != nil || len(locks) > slots || len(locks) != switched {
				t.Fatalf("round %d: server slots %+v (%v), %d switched", round, locks, err, switched)
			}
			for _, out := range outs {
				waited += strings.Count(out.String(), "Waiting for other machines in group lab3 to finish updating")
				out.Reset()
			}
			// One machine restarts per round: its boot step keeps the new
			// release and gives the slot back.
			for _, a := range agents {
				if w, _ := a.awaitingVerdict(); w {
					if err := a.Boot(ctx); err != nil {
						t.Fatal(err)
					}
					break
				}
			}
			if flCountSwitched(t, agents) > slots {
				t.Fatal("more than two switched after a boot")
			}
			done := 0
			for _, a := range agents {
				st, err := a.Status(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if w, _ := a.awaitingVerdict(); st.Current != nil && st.Current.Version == version && !w {
					done++
				}
			}
			if done == n {
				break
			}
		}
		if waited == 0 {
			t.Errorf("%s: no machine ever waited for a slot", version)
		}
		if locks, err := e.admin.FleetLocks(ctx, ""); err != nil || len(locks) != 0 {
			t.Fatalf("%s: slots left after every machine updated: %+v %v", version, locks, err)
		}
		for i, a := range agents {
			if _, err := os.Stat(a.fleetLockPath()); !os.IsNotExist(err) {
				t.Fatalf("pc%02d still records a slot: %v", i, err)
			}
		}
	}
}

func flCountSwitched(t *testing.T, agents []*Agent) int {
	t.Helper()
	n := 0
	for _, a := range agents {
		w, err := a.awaitingVerdict()
		if err != nil {
			t.Fatal(err)
		}
		if w {
			n++
		}
	}
	return n
}

// A give-back that fails at boot (no network) is retried by the next
// cycle; a rolled-back release gives the slot back too; a machine with
// another strategy never asks for a slot.
func TestFleetLockReleaseRetriedAndAfterRollback(t *testing.T) {
	ctx := context.Background()
	e := newFLEnv(t)
	e.fix.publish(t, "10.0.0")
	a, out := e.device(t, "lab5-pc01", "group: lab5\nstrategy: {kind: fleet-lock, max_rebooting: 1}\n")
	if changed, err := a.Upgrade(ctx); err != nil || !changed {
		t.Fatalf("upgrade: %v %v\n%s", changed, err, out)
	}
	good := a.Client
	var err error
	if a.Client, err = client.New("http://127.0.0.1:1", e.ts.Tokens[auth.RoleDevice], client.WithRetries(0, 0)); err != nil {
		t.Fatal(err)
	}
	if err := a.Boot(ctx); err != nil {
		t.Fatal(err)
	}
	if locks, _ := e.admin.FleetLocks(ctx, "lab5"); len(locks) != 1 {
		t.Fatalf("slot given back without a server: %+v", locks)
	}
	if !strings.Contains(out.String(), "Could not give back the restart slot") {
		t.Fatalf("no message about the failed give-back:\n%s", out)
	}
	a.Client = good
	r := &Runner{Agent: a}
	r.defaults()
	if _, err := r.agentCycle(ctx); err != nil {
		t.Fatal(err)
	}
	if locks, _ := e.admin.FleetLocks(ctx, "lab5"); len(locks) != 0 {
		t.Fatalf("the next cycle did not give the slot back: %+v", locks)
	}

	// A release that fails its health check: rolled back, slot returned.
	e.fix.publish(t, "10.0.1")
	if changed, err := a.Upgrade(ctx); err != nil || !changed {
		t.Fatalf("upgrade to 10.0.1: %v %v\n%s", changed, err, out)
	}
	if locks, _ := e.admin.FleetLocks(ctx, "lab5"); len(locks) != 1 {
		t.Fatalf("slot not held while switched: %+v", locks)
	}
	writeCheck(t, a.Cfg.HealthDir, 1)
	if err := a.Boot(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := a.Status(ctx); st.Current == nil || st.Current.Version != "10.0.0" {
		t.Fatalf("not rolled back: %+v", st)
	}
	if locks, _ := e.admin.FleetLocks(ctx, "lab5"); len(locks) != 0 {
		t.Fatalf("slot kept after the rollback: %+v", locks)
	}

	// Immediate strategy: no slot, no file.
	b, _ := e.device(t, "lab5-pc02", "group: lab5\n")
	if changed, err := b.Upgrade(ctx); err != nil || !changed {
		t.Fatalf("immediate upgrade: %v %v", changed, err)
	}
	if _, err := os.Stat(b.fleetLockPath()); !os.IsNotExist(err) {
		t.Fatalf("immediate strategy recorded a slot: %v", err)
	}
	if locks, _ := e.admin.FleetLocks(ctx, ""); len(locks) != 0 {
		t.Fatalf("immediate strategy took a slot: %+v", locks)
	}
}
