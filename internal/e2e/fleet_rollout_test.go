package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	apiclient "github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/rollout"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
	"github.com/mxos-linux/mxos-update/internal/testserver"
	"github.com/mxos-linux/mxos-update/internal/updater"
)

const (
	fleetSize      = 200
	fleetWorkers   = 8 // devices updating at once: bounded so 2 cores keep up
	fleetStableRef = "mxos/10/x86_64/stable"
)

// fleetDevice is one simulated machine: a real updater.Agent with its own
// sysroot, talking HTTP to the server.
type fleetDevice struct {
	id    string
	agent *updater.Agent
	out   *bytes.Buffer
}

// TestStagedRolloutSeenFromDevices: a real server (SQLite), 200 real
// updater agents, each with its own tiny sysroot. Freshly imaged (nothing
// installed) they all take 10.0.0; then 10.0.1 rolls out at 10%: exactly
// the devices rollout.Decide admits update (about 10% of them), the rest
// are told not-yet; after a halt another cycle installs nothing.
func TestStagedRolloutSeenFromDevices(t *testing.T) {
	ctx := context.Background()
	// Set up as the README says: the server signs the summary and the
	// metadata's freshness with its online key, devices trust the release
	// keys and root.json.
	ts := testserver.Start(t, testserver.Options{Metadata: true, OnlineSummaryKey: true, Serve: true,
		Roles: []auth.Role{auth.RoleRelease, auth.RoleEnroll, auth.RoleAdmin}})
	keys, verifiers, tokens := ts.Release.Dir, ts.Release.Verifiers, ts.Tokens
	team, admin := ts.Client(t, auth.RoleRelease), ts.Client(t, auth.RoleAdmin)
	rootJSON := filepath.Join(t.TempDir(), "root.json")
	if b, err := os.ReadFile(filepath.Join(ts.MetaDir, "1.root.json")); err != nil || os.WriteFile(rootJSON, b, 0o644) != nil {
		t.Fatalf("root.json: %v", err)
	}
	work, err := ostree.Create(filepath.Join(t.TempDir(), "work"))
	if err != nil {
		t.Fatal(err)
	}
	rem := &release.Remote{Server: team, Work: work, Signers: ts.Release.Signers, MetaSigners: ts.MetaSigners}

	// publish signs a tiny tree onto testing, promotes it to stable and
	// returns the rollout there.
	publish := func(version, ramp string) api.RolloutStatus {
		t.Helper()
		src := filepath.Join(t.TempDir(), "tree")
		if err := os.MkdirAll(filepath.Join(src, "usr/etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, "usr/etc/os-release"), []byte("VERSION="+version+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := rem.Publish(ctx, release.RemoteRequest{Channel: "testing", Arch: "x86_64", Ref: "mxos/10/x86_64/testing",
			Version: version, Source: src, Ramp: "none"}); err != nil {
			t.Fatalf("publish %s: %v", version, err)
		}
		if _, _, err := rem.Promote(ctx, "testing", "stable", "x86_64", fleetStableRef, version, ramp); err != nil {
			t.Fatalf("promote %s: %v", version, err)
		}
		ros, err := team.Rollouts(ctx, "stable")
		if err != nil {
			t.Fatal(err)
		}
		for _, ro := range ros {
			if ro.Version == version {
				return ro
			}
		}
		t.Fatalf("no rollout of %s on stable: %+v", version, ros)
		return api.RolloutStatus{}
	}

	// The school's image carries one enroll token; each machine trades it
	// for its own credential at first contact.
	enrollFile := filepath.Join(t.TempDir(), "enroll-token")
	if err := os.WriteFile(enrollFile, []byte(tokens[auth.RoleEnroll]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	devices := make([]*fleetDevice, fleetSize)
	for i := range devices {
		id := fmt.Sprintf("aula-%03d", i)
		root := filepath.Join(t.TempDir(), "sysroot")
		health := filepath.Join(t.TempDir(), "health") // no checks: every boot is healthy
		cfg, err := updater.ParseConfig([]byte("server: " + ts.URL + "\ndevice_id: " + id + "\nchannel: stable\narch: x86_64\ntrusted_keys: " + keys +
			"\ntrusted_root: " + rootJSON + "\nsysroot: " + root + "\nhealth_dir: " + health + "\nenroll_token_file: " + enrollFile +
			"\ncredential_file: " + filepath.Join(t.TempDir(), "credential") + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		sys, err := sysroot.Open(root)
		if err != nil {
			t.Fatal(err)
		}
		local, err := ostree.Create(sys.RepoPath())
		if err != nil {
			t.Fatal(err)
		}
		c, err := apiclient.New(ts.URL, "")
		if err != nil {
			t.Fatal(err)
		}
		out := &bytes.Buffer{}
		devices[i] = &fleetDevice{id: id, out: out,
			agent: &updater.Agent{Cfg: cfg, Client: c, Puller: &pull.Puller{URLs: cfg.Mirrors, Verifiers: verifiers}, Sys: sys, Repo: local, Out: out}}
	}
	// cycle runs one upgrade on every device (and, with boot, the boot
	// step of those that switched), a few at a time, and returns who
	// switched.
	cycle := func(boot bool) map[string]bool {
		t.Helper()
		switched := make([]bool, len(devices))
		var g errgroup.Group
		g.SetLimit(fleetWorkers)
		for i, d := range devices {
			g.Go(func() error {
				d.out.Reset()
				changed, err := d.agent.Upgrade(ctx)
				if err != nil {
					return fmt.Errorf("%s: %w\n%s", d.id, err, d.out)
				}
				switched[i] = changed
				if changed && boot {
					if err := d.agent.Boot(ctx); err != nil {
						return fmt.Errorf("%s boot: %w", d.id, err)
					}
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for i, s := range switched {
			if s {
				out[devices[i].id] = true
			}
		}
		return out
	}

	// Freshly imaged machines send no version: they take 10.0.0.
	first := publish("10.0.0", "100%")
	if got := cycle(true); len(got) != fleetSize {
		t.Fatalf("%d of %d fresh machines installed 10.0.0", len(got), fleetSize)
	}
	if _, err := team.RolloutAction(ctx, first.ID, apiclient.ActionComplete, "everyone has it"); err != nil {
		t.Fatal(err)
	}

	// 10.0.1 at 10% (for three days, then everyone).
	ro := publish("10.0.1", "10%,100%@72h")
	ramp, err := rollout.ParseRamp(ro.Ramp)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, d := range devices {
		dec := rollout.Decide(rollout.DecideInput{State: rollout.StateActive, Ramp: ramp, Start: ro.StartedAt, Now: time.Now(),
			Bucket: rollout.Bucket(d.id, ro.ID), Current: "10.0.0", Target: "10.0.1"})
		if dec.Offer {
			want[d.id] = true
		}
	}
	got := cycle(true)
	// The bucket hash is uniform and the rollout id is random, so the
	// count is Binomial(200, 0.1): mean 20, sd 4.24. ±5 points (10 to 30)
	// would fail about 1.5% of runs; ±4 sd (4 to 36) fails once in
	// 15,000. The exact set is checked against rollout.Decide below.
	t.Logf("%d of %d devices updated at a 10%% ramp (rollout %s)", len(got), fleetSize, ro.ID)
	if mean, sd := fleetSize*0.1, math.Sqrt(fleetSize*0.1*0.9); math.Abs(float64(len(got))-mean) > 4*sd {
		t.Errorf("%d of %d devices updated at a 10%% ramp, want %.0f ± %.0f", len(got), fleetSize, mean, 4*sd)
	}
	if !fleetSameSet(got, want) {
		t.Fatalf("updated %v, rollout.Decide admits %v", fleetIDs(got), fleetIDs(want))
	}
	for _, d := range devices {
		st, err := d.agent.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantVersion, wantSay := "10.0.0", "No update (not-yet)."
		if want[d.id] {
			wantVersion, wantSay = "10.0.1", "Version 10.0.1 is healthy."
		}
		if st.Current == nil || st.Current.Version != wantVersion || !strings.Contains(d.out.String(), wantSay) {
			t.Fatalf("%s: on %+v, said:\n%s", d.id, st.Current, d.out)
		}
	}
	// The rollout counted one success (health-ok) per updated device.
	status, err := team.Rollouts(ctx, "stable")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range status {
		if s.ID == ro.ID && s.Successes != len(want) {
			t.Fatalf("rollout counted %d successes, %d devices updated", s.Successes, len(want))
		}
	}

	// The release team halts it: nobody else gets 10.0.1.
	if _, err := team.RolloutAction(ctx, ro.ID, apiclient.ActionHalt, "problema en laboratorio 3"); err != nil {
		t.Fatal(err)
	}
	if again := cycle(false); len(again) != 0 {
		t.Fatalf("after the halt %d devices installed something: %v", len(again), fleetIDs(again))
	}
	// The server agrees on who runs what (devices sent their version with
	// this last check).
	onNew := 0
	for after := ""; ; {
		page, err := admin.Devices(ctx, apiclient.DeviceFilter{After: after, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range page.Devices {
			if (d.Version == "10.0.1") != want[d.ID] {
				t.Fatalf("server sees %s on %s", d.ID, d.Version)
			}
			if d.Version == "10.0.1" {
				onNew++
			}
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if onNew != len(want) {
		t.Fatalf("server sees %d devices on 10.0.1, want %d", onNew, len(want))
	}
	for _, d := range devices {
		wantSay := "No update (halted)."
		if want[d.id] {
			wantSay = "No update (up-to-date)."
		}
		if !strings.Contains(d.out.String(), wantSay) {
			t.Fatalf("%s after the halt said:\n%s", d.id, d.out)
		}
	}
}

func fleetSameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

func fleetIDs(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
