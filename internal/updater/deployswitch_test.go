package updater

import (
	"context"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
)

// oneStep gives a backend DeploySwitch (Deploy, recorded, Switch) and
// checks, when recorded returns, that the agent saved its pending state
// naming the deployment, as between Deploy and Switch.
type oneStep struct {
	Backend
	t     *testing.T
	a     *Agent
	calls int
}

func (o *oneStep) DeploySwitch(ctx context.Context, repo *ostree.Repo, commit ostree.Checksum, origin sysroot.Origin, recorded func(string) error) (sysroot.Deployment, error) {
	o.calls++
	d, err := o.Deploy(ctx, repo, commit, origin)
	if err != nil {
		return d, err
	}
	if err := recorded(d.Name); err != nil {
		return d, err
	}
	if st, err := o.a.loadState(); err != nil || !st.Pending || st.Deployment != d.Name || st.Commit != commit.String() {
		o.t.Errorf("agent state when recorded returned: %+v %v, want pending on %s", st, err, d.Name)
	}
	return d, o.Switch(ctx, d)
}

// The agent installs in one backend step when it would switch at once
// (immediate, or inside the window), and stages then switches otherwise.
func TestAgentUsesDeploySwitch(t *testing.T) {
	ctx := context.Background()
	noon := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		strategy Strategy
		want     int // DeploySwitch calls
	}{
		{"immediate", Strategy{Kind: "immediate"}, 1},
		{"window open", Strategy{Kind: "window", Start: "11:00", End: "13:00", TimeZone: "UTC"}, 1},
		{"window closed", Strategy{Kind: "window", Start: "22:00", End: "05:00", TimeZone: "UTC"}, 0},
		// The restart slot must be held before the default moves: staged.
		{"fleet lock", Strategy{Kind: "fleet-lock", MaxRebooting: 1}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := startAgentEnv(t, false) // a device credential binds to one machine
			env.f.publish(t, "10.0.1")
			a, _ := newTestAgent(t, env.url, env.tokens[auth.RoleDevice], env.keys, env.root, env.verifiers, "lab-pc-09", "")
			a.Cfg.Strategy, a.Now = tc.strategy, func() time.Time { return noon }
			o := &oneStep{Backend: a.Sys, t: t, a: a}
			a.Sys = o
			changed, err := a.Upgrade(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if o.calls != tc.want || (tc.strategy.Kind != "fleet-lock" && changed != (tc.want == 1)) {
				t.Fatalf("DeploySwitch called %d times, changed=%v; want %d", o.calls, changed, tc.want)
			}
			if tc.want == 1 {
				if p, err := a.Sys.PendingBoot(); err != nil || p == "" {
					t.Fatalf("no pending boot after the one-step install: %q %v", p, err)
				}
			}
		})
	}
}
