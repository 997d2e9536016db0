package updater

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/rollout"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
)

// The offline decision is the server's (rollout.Decide) on the signed
// record: which release is current, the rollout's state and share of the
// fleet, the barriers and dead ends, and what this machine rolled back
// from.
func TestDecideFromState(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	commit := func(v string) string { return fmt.Sprintf("%064x", []byte(v)) }
	rel := func(v string) channelmeta.Release {
		return channelmeta.Release{Channel: "edu", Arch: "x86_64", Version: v, Ref: "mxos/10/x86_64/edu", Commit: commit(v)}
	}
	half, err := rollout.ParseRamp("50%,100%@72h")
	if err != nil {
		t.Fatal(err)
	}
	// Two machines, one each side of the 50% share.
	var in, out string
	for i := 0; in == "" || out == ""; i++ {
		id := fmt.Sprintf("lab-pc-%02d", i)
		if rollout.Bucket(id, "r3") < 0.5 {
			in = id
		} else {
			out = id
		}
	}
	ro := func(state rollout.State, mod func(*channelmeta.RolloutState)) *channelmeta.State {
		r := channelmeta.RolloutState{Channel: "edu", Arch: "x86_64", RolloutID: "r3", Version: "10.0.3", Ramp: half,
			State: state, StartedAt: now.Add(-time.Hour)}
		if mod != nil {
			mod(&r)
		}
		return &channelmeta.State{Releases: []channelmeta.Release{rel("10.0.1"), rel("10.0.2"), rel("10.0.3")},
			Rollouts: []channelmeta.RolloutState{r}}
	}
	barrier := func(r *channelmeta.RolloutState) { r.Barriers = []string{"10.0.2"} }
	deadEnd := func(r *channelmeta.RolloutState) { r.DeadEnds = []channelmeta.DeadEnd{{Version: "10.0.1"}} }
	cases := []struct {
		name    string
		st      *channelmeta.State
		device  string
		current string
		bad     string
		want    string // "" no offer, else the version offered
		reason  string
	}{
		{"in the share", ro(rollout.StateActive, nil), in, "10.0.1", "", "10.0.3", "eligible"},
		{"outside the share", ro(rollout.StateActive, nil), out, "10.0.1", "", "", "not-yet"},
		{"complete", ro(rollout.StateComplete, nil), out, "10.0.1", "", "10.0.3", "eligible"},
		{"paused", ro(rollout.StatePaused, nil), in, "10.0.1", "", "", "paused"},
		{"halted", ro(rollout.StateHalted, nil), in, "10.0.1", "", "", "halted"},
		{"barrier first", ro(rollout.StateComplete, barrier), in, "10.0.1", "", "10.0.2", "barrier"},
		{"past the barrier", ro(rollout.StateComplete, barrier), in, "10.0.2", "", "10.0.3", "eligible"},
		{"dead end", ro(rollout.StateComplete, deadEnd), in, "10.0.1", "", "", "dead-end"},
		{"rolled back from it", ro(rollout.StateComplete, nil), in, "10.0.1", commit("10.0.3"), "", "rolled-back"},
		{"up to date", ro(rollout.StateComplete, nil), in, "10.0.3", "", "", "up-to-date"},
		{"no rollout", &channelmeta.State{Releases: []channelmeta.Release{rel("10.0.3")}}, in, "10.0.1", "", "", "no-rollout"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := map[string]sysroot.BadCommit{}
			if c.bad != "" {
				bad[c.bad] = sysroot.BadCommit{}
			}
			got := decideFromState(c.st, api.CheckRequest{DeviceID: c.device, Channel: "edu", Arch: "x86_64", Version: c.current}, bad, now)
			if got.Reason != c.reason || got.Update != (c.want != "") {
				t.Fatalf("got %+v, want %q (%s)", got, c.want, c.reason)
			}
			if c.want != "" && (got.Target.Version != c.want || got.Target.Commit != commit(c.want) || got.Target.Ref != "mxos/10/x86_64/edu") {
				t.Errorf("target %+v, want %s", got.Target, c.want)
			}
		})
	}
}

// apiDown makes the update API fail as a dead server behind a proxy does;
// the static files (metadata, repository) still come, as from a mirror.
func apiDown(w http.ResponseWriter, r *http.Request) bool {
	if strings.HasPrefix(r.URL.Path, "/api/") {
		http.Error(w, "bad gateway", http.StatusBadGateway)
		return true
	}
	return false
}

func allDown(w http.ResponseWriter, r *http.Request) bool {
	http.Error(w, "bad gateway", http.StatusBadGateway)
	return true
}

// The update server is down but its files are still served (a school
// mirror): the agent decides from the signed metadata, installs the
// release through every check, and its reports wait until the server is
// back.
func TestOfflineDecisionInstallsFromMirror(t *testing.T) {
	e := newHostileEnv(t)
	e.release("10.0.3", nil)
	e.setHook(apiDown)
	changed, err := e.agent.Upgrade(e.ctx)
	if err != nil || !changed {
		t.Fatalf("upgrade without the server: changed=%v err=%v\n%s", changed, err, e.out)
	}
	if st, _ := e.agent.Status(e.ctx); st.Current == nil || st.Current.Version != "10.0.3" {
		t.Fatalf("not on 10.0.3: %+v", st.Current)
	}
	if !strings.Contains(e.out.String(), "deciding from the signed channel metadata") {
		t.Errorf("the technician is not told the decision was made offline:\n%s", e.out)
	}
	if n := e.agent.QueuedReports(); n != 3 {
		t.Errorf("%d reports queued, want 3", n)
	}
	e.setHook(nil)
	if _, err := e.agent.Check(e.ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.agent.QueuedReports(); n != 0 {
		t.Errorf("%d reports still queued after the server came back", n)
	}
}

// Nothing can be reached: the saved metadata still decides (while it has
// not expired), the download then fails, nothing changes and the report
// waits. A machine an admin held, or whose saved metadata expired, is
// offered nothing.
func TestOfflineDecisionFromSavedMetadata(t *testing.T) {
	e := newHostileEnv(t)
	e.release("10.0.3", nil)
	if _, err := e.agent.channelState(e.ctx); err != nil { // an earlier check saw 10.0.3
		t.Fatal(err)
	}
	e.setHook(allDown)
	defer e.setHook(nil)
	resp, err := e.agent.Check(e.ctx)
	if err != nil || !resp.Update || resp.Target.Version != "10.0.3" || resp.Target.Commit != e.commits["stable/10.0.3"] {
		t.Fatalf("check from the saved metadata: %+v %v\n%s", resp, err, e.out)
	}
	before := e.snapshot()
	if changed, err := e.agent.Upgrade(e.ctx); err == nil || changed {
		t.Fatalf("upgrade with nothing reachable: changed=%v err=%v", changed, err)
	}
	if b, a := fmt.Sprintf("%+v", before), fmt.Sprintf("%+v", e.snapshot()); b != a {
		t.Errorf("a failed offline upgrade changed the device:\nbefore %s\nafter  %s", b, a)
	}
	if n := e.agent.QueuedReports(); n != 2 { // download started, failed
		t.Errorf("%d reports queued, want 2", n)
	}

	// Expired saved metadata decides nothing.
	e.agent.Now = func() time.Time { return time.Now().Add(8 * 24 * time.Hour) }
	if resp, err := e.agent.Check(e.ctx); err == nil || resp.Update {
		t.Errorf("check from expired saved metadata: %+v %v", resp, err)
	}
	e.agent.Now = nil

	// An admin's hold, the server's last word, stands while it is away.
	if err := os.WriteFile(filepath.Join(e.agent.Sys.Root(), LastAnswerFile), []byte(`{"reason":"held"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if resp, err := e.agent.Check(e.ctx); err == nil || resp.Update {
		t.Errorf("check of a held machine without the server: %+v %v", resp, err)
	}
	e.setHook(nil)
	if _, err := e.agent.Check(e.ctx); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(e.agent.Sys.Root(), LastAnswerFile)); strings.Contains(string(b), "held") {
		t.Errorf("the server's new answer was not remembered: %s", b)
	}
}
