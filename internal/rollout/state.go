package rollout

import (
	"errors"
	"fmt"
)

// State is where a rollout is in its life. The values are stored and sent
// on the wire as these strings.
type State string

// Rollout states.
const (
	// StatePending: created, not started; nothing is offered.
	StatePending State = "pending"
	// StateActive: offered to the devices the ramp admits.
	StateActive State = "active"
	// StatePaused: the release team stopped it for a while; nothing new is
	// offered, devices that already updated keep the release.
	StatePaused State = "paused"
	// StateHalted: stopped because of failures (by hand or by AutoHalt);
	// never offered again unless the release team resumes it.
	StateHalted State = "halted"
	// StateComplete: offered to every device of the channel.
	StateComplete State = "complete"
)

// Action is a request to change a rollout's state.
type Action string

// Rollout actions, as mxosctl names them.
const (
	ActionStart    Action = "start"
	ActionPause    Action = "pause"
	ActionResume   Action = "resume"
	ActionHalt     Action = "halt"
	ActionComplete Action = "complete"
)

// Errors from Transition, ParseState and ParseAction.
var (
	ErrIllegalTransition = errors.New("illegal rollout transition")
	ErrUnknownState      = errors.New("unknown rollout state")
	ErrUnknownAction     = errors.New("unknown rollout action")
)

// transitions lists every legal move. Halt is allowed from a complete
// rollout too: the emergency stop must work even after the ramp reached
// 100%, to keep the release from devices that have not updated yet.
// Resuming a halted rollout is the release team's explicit decision.
var transitions = map[State]map[Action]State{
	StatePending:  {ActionStart: StateActive},
	StateActive:   {ActionPause: StatePaused, ActionHalt: StateHalted, ActionComplete: StateComplete},
	StatePaused:   {ActionResume: StateActive, ActionHalt: StateHalted},
	StateHalted:   {ActionResume: StateActive},
	StateComplete: {ActionHalt: StateHalted},
}

// Valid reports whether s is one of the defined states.
func (s State) Valid() bool { _, ok := transitions[s]; return ok }

// Valid reports whether a is one of the defined actions.
func (a Action) Valid() bool {
	switch a {
	case ActionStart, ActionPause, ActionResume, ActionHalt, ActionComplete:
		return true
	}
	return false
}

// ParseState checks that s names a state.
func ParseState(s string) (State, error) {
	if st := State(s); st.Valid() {
		return st, nil
	}
	return "", fmt.Errorf("%w: %q", ErrUnknownState, s)
}

// ParseAction checks that s names an action.
func ParseAction(s string) (Action, error) {
	if a := Action(s); a.Valid() {
		return a, nil
	}
	return "", fmt.Errorf("%w: %q", ErrUnknownAction, s)
}

// Transition returns the state a rollout in from moves to under action, or
// an error wrapping ErrIllegalTransition (or ErrUnknownState /
// ErrUnknownAction) saying why not. Repeating an action (pausing a paused
// rollout) is illegal too, so a caller learns that nothing changed.
func Transition(from State, action Action) (State, error) {
	moves, ok := transitions[from]
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrUnknownState, from)
	}
	if !action.Valid() {
		return "", fmt.Errorf("%w: %q", ErrUnknownAction, action)
	}
	if to, ok := moves[action]; ok {
		return to, nil
	}
	switch {
	case from == StatePending:
		return "", fmt.Errorf("%w: cannot %s a rollout that has not started", ErrIllegalTransition, action)
	case action == ActionStart:
		return "", fmt.Errorf("%w: rollout is already %s; a rollout starts once, start a new one instead", ErrIllegalTransition, from)
	case targetOf(action) == from:
		return "", fmt.Errorf("%w: rollout is already %s", ErrIllegalTransition, from)
	default:
		return "", fmt.Errorf("%w: cannot %s a %s rollout", ErrIllegalTransition, action, from)
	}
}

// targetOf is the state an action leads to, for the "already" message.
func targetOf(a Action) State {
	switch a {
	case ActionPause:
		return StatePaused
	case ActionHalt:
		return StateHalted
	case ActionComplete:
		return StateComplete
	case ActionResume, ActionStart:
		return StateActive
	}
	return ""
}
