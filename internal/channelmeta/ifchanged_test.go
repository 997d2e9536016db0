package channelmeta_test

import (
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// TestPublishRolloutsIfChanged: the same rollout states sign nothing new
// (what replicas' periodic refresh relies on), changed ones a new
// version, and renewal still happens when it is due.
func TestPublishRolloutsIfChanged(t *testing.T) {
	f := newFixture(t, t0, publish.Options{})
	f.publish(t, t0)
	same := []channelmeta.RolloutState{testRollout(t)}
	halted := testRollout(t)
	halted.State, halted.HaltReason = rollout.StateHalted, "wifi"
	tests := []struct {
		name   string
		states []channelmeta.RolloutState
		at     time.Time
		signed bool
		grow   int64 // how much the rollouts version grows
	}{
		{"unchanged", same, t0.Add(time.Minute), false, 0},
		{"changed", []channelmeta.RolloutState{halted}, t0.Add(2 * time.Minute), true, 1},
		{"unchanged again", []channelmeta.RolloutState{halted}, t0.Add(3 * time.Minute), false, 0},
		{"unchanged but due", []channelmeta.RolloutState{halted}, t0.Add(4 * 24 * time.Hour), false, 1},
		{"none", nil, t0.Add(4*24*time.Hour + time.Minute), true, 1},
	}
	for _, tc := range tests {
		before := versionOf(t, f.dir, channelmeta.RolloutsFile)
		signed, err := f.repo.PublishRolloutsIfChanged(tc.states, tc.at)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		after := versionOf(t, f.dir, channelmeta.RolloutsFile)
		if signed != tc.signed || after-before != tc.grow {
			t.Errorf("%s: signed %v, rollouts version %d → %d; want signed %v, +%d", tc.name, signed, before, after, tc.signed, tc.grow)
		}
	}
	st := mustLoad(t, dirClient(t, f.root, f.dir, t0.Add(4*24*time.Hour+2*time.Minute)))
	if len(st.Rollouts) != 0 {
		t.Errorf("rollouts after publishing none: %+v", st.Rollouts)
	}
}
