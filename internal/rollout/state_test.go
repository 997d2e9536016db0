package rollout

import (
	"errors"
	"strings"
	"testing"
)

func TestTransition(t *testing.T) {
	states := []State{StatePending, StateActive, StatePaused, StateHalted, StateComplete}
	actions := []Action{ActionStart, ActionPause, ActionResume, ActionHalt, ActionComplete}
	// Every legal move; everything else must be refused.
	legal := map[State]map[Action]State{
		StatePending:  {ActionStart: StateActive},
		StateActive:   {ActionPause: StatePaused, ActionHalt: StateHalted, ActionComplete: StateComplete},
		StatePaused:   {ActionResume: StateActive, ActionHalt: StateHalted},
		StateHalted:   {ActionResume: StateActive},
		StateComplete: {ActionHalt: StateHalted},
	}
	for _, from := range states {
		for _, a := range actions {
			got, err := Transition(from, a)
			want, ok := legal[from][a]
			switch {
			case ok && (err != nil || got != want):
				t.Errorf("Transition(%s, %s) = %q, %v; want %s", from, a, got, err, want)
			case !ok && !errors.Is(err, ErrIllegalTransition):
				t.Errorf("Transition(%s, %s) = %q, %v; want ErrIllegalTransition", from, a, got, err)
			case !ok && got != "":
				t.Errorf("Transition(%s, %s) returned state %q with an error", from, a, got)
			}
		}
	}
}

func TestTransitionMessages(t *testing.T) {
	for _, c := range []struct {
		from State
		a    Action
		msg  string
	}{
		{StateComplete, ActionResume, "cannot resume a complete rollout"},
		{StatePaused, ActionPause, "rollout is already paused"},
		{StateHalted, ActionHalt, "rollout is already halted"},
		{StateActive, ActionResume, "rollout is already active"},
		{StateActive, ActionStart, "start a new one instead"},
		{StatePending, ActionHalt, "cannot halt a rollout that has not started"},
		{StateHalted, ActionPause, "cannot pause a halted rollout"},
		{StatePaused, ActionComplete, "cannot complete a paused rollout"},
	} {
		_, err := Transition(c.from, c.a)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("Transition(%s, %s) = %v, want %q", c.from, c.a, err, c.msg)
		}
	}
	if _, err := Transition("", ActionStart); !errors.Is(err, ErrUnknownState) {
		t.Errorf("zero state: %v", err)
	}
	if _, err := Transition("bogus", ActionStart); !errors.Is(err, ErrUnknownState) {
		t.Errorf("bogus state: %v", err)
	}
	if _, err := Transition(StateActive, "explode"); !errors.Is(err, ErrUnknownAction) {
		t.Errorf("bogus action: %v", err)
	}
}

func TestParseStateAction(t *testing.T) {
	for _, s := range []string{"pending", "active", "paused", "halted", "complete"} {
		if st, err := ParseState(s); err != nil || string(st) != s {
			t.Errorf("ParseState(%q) = %q, %v", s, st, err)
		}
	}
	for _, s := range []string{"", "Active", "done"} {
		if _, err := ParseState(s); !errors.Is(err, ErrUnknownState) {
			t.Errorf("ParseState(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"start", "pause", "resume", "halt", "complete"} {
		if a, err := ParseAction(s); err != nil || string(a) != s {
			t.Errorf("ParseAction(%q) = %q, %v", s, a, err)
		}
	}
	if _, err := ParseAction("stop"); !errors.Is(err, ErrUnknownAction) {
		t.Errorf("ParseAction(stop) = %v", err)
	}
}
