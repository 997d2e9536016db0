package updater

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/auth"
)

func TestRebootAfterSwitch(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		strategy string
		flag     *bool
		want     bool
	}{
		{"immediate", nil, false},
		{"window", nil, true},
		{"fleet-lock", nil, true},
		{"immediate", &yes, true},
		{"window", &no, false},
		{"fleet-lock", &no, false},
	} {
		if got := RebootAfterSwitch(tc.strategy, tc.flag); got != tc.want {
			t.Errorf("RebootAfterSwitch(%q, %v) = %v, want %v", tc.strategy, tc.flag, got, tc.want)
		}
	}
}

// fakeReboot counts restarts instead of restarting.
type fakeReboot struct {
	n   int
	err error
}

func (f *fakeReboot) reboot(context.Context) error { f.n++; return f.err }

// Boot restarts the machine after it rolled back the running version,
// and only then: not after a healthy boot, not on an accepted version.
func TestBootRestartsAfterRollback(t *testing.T) {
	ctx := context.Background()
	env := startAgentEnv(t, false)
	a, out := newTestAgent(t, env.url, env.tokens[auth.RoleDevice], env.keys, env.root, env.verifiers, "kiosk-01", "")
	t.Cleanup(func() { t.Log(out.String()) })
	r := &fakeReboot{}
	a.Reboot = r.reboot

	env.f.publish(t, "10.0.0")
	installByHand(t, a, stableRef, "10.0.0")
	env.f.publish(t, "10.0.1")
	if changed, err := a.Upgrade(ctx); err != nil || !changed {
		t.Fatalf("upgrade: %v %v", changed, err)
	}
	if err := a.Boot(ctx); err != nil {
		t.Fatal(err)
	}
	if r.n != 0 {
		t.Fatalf("a healthy boot restarted the machine %d times", r.n)
	}

	env.f.publish(t, "10.0.2")
	if changed, err := a.Upgrade(ctx); err != nil || !changed {
		t.Fatalf("upgrade: %v %v", changed, err)
	}
	writeCheck(t, a.Cfg.HealthDir, 1)
	r.err = errors.New("no systemd here")
	if err := a.Boot(ctx); err != nil {
		t.Fatal(err)
	}
	if r.n != 1 {
		t.Fatalf("rollback of the running version: %d restarts, want 1", r.n)
	}
	if !strings.Contains(out.String(), "Restarting the machine to go back to version 10.0.1") ||
		!strings.Contains(out.String(), "Could not restart the machine: no systemd here") {
		t.Fatalf("messages:\n%s", out)
	}
	if st, err := a.Status(ctx); err != nil || st.Current == nil || st.Current.Version != "10.0.1" {
		t.Fatalf("after rollback: %+v %v", st, err)
	}

	// The next boot runs 10.0.1, already accepted: a failing check there
	// is reported, never a reason to restart.
	if err := a.Boot(ctx); err != nil {
		t.Fatal(err)
	}
	if r.n != 1 {
		t.Fatalf("boot of the accepted version restarted the machine (%d restarts)", r.n)
	}
}
