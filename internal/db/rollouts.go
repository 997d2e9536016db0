package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// Rollout is a staged rollout of one release.
type Rollout struct {
	ID      string // chosen by the caller (a random id)
	Channel string
	Arch    string
	Version string // the release rolled out; it must exist
	Ramp    string // rollout.ParseRamp syntax
	State   rollout.State
	// CreatedAt is when the rollout was recorded; CurrentRollout orders by it.
	CreatedAt time.Time
	// StartedAt is the ramp's origin: zero while pending, set when the
	// rollout starts and moved forward by every pause (see SetRolloutState).
	StartedAt time.Time
	// UpdatedAt is the time of the last state change.
	UpdatedAt time.Time
	// StoppedAt is when the rollout last stopped offering (was paused or
	// halted); zero while pending, active or complete.
	StoppedAt  time.Time
	HaltReason string // why it was halted; "" unless halted
	CreatedBy  string
}

// open reports whether a rollout in state s still blocks a new one on its
// channel and architecture. Halted and complete rollouts are closed: a new
// release may roll out over them (resuming one later needs the slot free).
func open(s rollout.State) bool {
	return s == rollout.StatePending || s == rollout.StateActive || s == rollout.StatePaused
}

// CreateRollout records a new rollout in state pending or active (an
// active one with no StartedAt starts at CreatedAt; UpdatedAt defaults to
// CreatedAt). Its release must exist (ErrNotFound), its id be new
// (ErrDuplicate), and its channel and architecture have no other pending,
// active or paused rollout (ErrConflict).
func (q *Queries) CreateRollout(ctx context.Context, r Rollout) error {
	c := check{what: "rollout"}
	c.key("id", r.ID)
	c.key("channel", r.Channel)
	c.key("arch", r.Arch)
	c.key("version", r.Version)
	c.key("ramp", r.Ramp)
	c.time("created at", r.CreatedAt)
	c.key("created by", r.CreatedBy)
	c.text("halt reason", r.HaltReason, maxText)
	if r.State != rollout.StatePending && r.State != rollout.StateActive {
		c.fail("a new rollout must be pending or active, not %q", r.State)
	}
	if !r.StoppedAt.IsZero() || r.HaltReason != "" {
		c.fail("a new rollout cannot be stopped or halted")
	}
	if c.err == nil {
		if _, err := rollout.ParseRamp(r.Ramp); err != nil {
			c.err = fmt.Errorf("rollout: %w: %w", ErrInvalid, err)
		}
	}
	if c.err != nil {
		return c.err
	}
	if r.State == rollout.StateActive && r.StartedAt.IsZero() {
		r.StartedAt = r.CreatedAt
	}
	if r.UpdatedAt.IsZero() {
		r.UpdatedAt = r.CreatedAt
	}
	return q.atomic(ctx, func(q *Queries) error {
		if _, err := q.GetRelease(ctx, r.Channel, r.Arch, r.Version); err != nil {
			return fmt.Errorf("creating rollout %s: %w", r.ID, err)
		}
		if _, err := q.GetRollout(ctx, r.ID); err == nil {
			return fmt.Errorf("creating rollout %s: %w", r.ID, ErrDuplicate)
		} else if !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("creating rollout %s: %w", r.ID, err)
		}
		cur, err := q.CurrentRollout(ctx, r.Channel, r.Arch)
		switch {
		case err == nil && open(cur.State):
			return fmt.Errorf("creating rollout %s: %w: rollout %s of %s on %s/%s is %s",
				r.ID, ErrConflict, cur.ID, cur.Version, r.Channel, r.Arch, cur.State)
		case err != nil && !errors.Is(err, ErrNotFound):
			return fmt.Errorf("creating rollout %s: %w", r.ID, err)
		}
		_, err = q.q.ExecContext(ctx, `INSERT INTO rollouts
			(id, channel, arch, version, ramp, state, created_at, started_at, updated_at, stopped_at, halt_reason, created_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, '', $10)`,
			r.ID, r.Channel, r.Arch, r.Version, r.Ramp, string(r.State),
			micros(r.CreatedAt), nullMicros(r.StartedAt), micros(r.UpdatedAt), r.CreatedBy)
		switch {
		case isUnique(err):
			// Lost a race on PostgreSQL with another create (same id or
			// same channel and arch): either way the caller must re-read.
			return fmt.Errorf("creating rollout %s: %w: created concurrently on %s/%s", r.ID, ErrConflict, r.Channel, r.Arch)
		case isForeignKey(err):
			return fmt.Errorf("creating rollout %s: release %s/%s %s: %w", r.ID, r.Channel, r.Arch, r.Version, ErrNotFound)
		case err != nil:
			return fmt.Errorf("creating rollout %s: %w", r.ID, err)
		}
		return q.noteChange(ctx, ChangeRollout, r.Channel+"/"+r.Arch)
	})
}

const rolloutColumns = `id, channel, arch, version, ramp, state, created_at, started_at, updated_at, stopped_at, halt_reason, created_by`

func scanRollout(sc interface{ Scan(...any) error }) (Rollout, error) {
	var (
		r                Rollout
		state            string
		created, updated int64
		started, stopped sql.NullInt64
	)
	err := sc.Scan(&r.ID, &r.Channel, &r.Arch, &r.Version, &r.Ramp, &state,
		&created, &started, &updated, &stopped, &r.HaltReason, &r.CreatedBy)
	r.State = rollout.State(state)
	r.CreatedAt, r.UpdatedAt = fromMicros(created), fromMicros(updated)
	r.StartedAt, r.StoppedAt = fromNullMicros(started), fromNullMicros(stopped)
	return r, err
}

// GetRollout returns a rollout by id, or ErrNotFound.
func (q *Queries) GetRollout(ctx context.Context, id string) (Rollout, error) {
	r, err := scanRollout(q.q.QueryRowContext(ctx, `SELECT `+rolloutColumns+` FROM rollouts WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Rollout{}, fmt.Errorf("rollout %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Rollout{}, fmt.Errorf("reading rollout %s: %w", id, err)
	}
	return r, nil
}

// CurrentRollout returns the most recently created rollout on a channel
// and architecture, in any state, or ErrNotFound if there was none.
func (q *Queries) CurrentRollout(ctx context.Context, channel, arch string) (Rollout, error) {
	r, err := scanRollout(q.q.QueryRowContext(ctx, `SELECT `+rolloutColumns+` FROM rollouts
		WHERE channel = $1 AND arch = $2 ORDER BY created_at DESC, id DESC LIMIT 1`, channel, arch))
	if errors.Is(err, sql.ErrNoRows) {
		return Rollout{}, fmt.Errorf("current rollout of %s/%s: %w", channel, arch, ErrNotFound)
	}
	if err != nil {
		return Rollout{}, fmt.Errorf("reading current rollout of %s/%s: %w", channel, arch, err)
	}
	return r, nil
}

// ListRollouts returns a channel's rollouts (every channel's for ""),
// newest first.
func (q *Queries) ListRollouts(ctx context.Context, channel string) ([]Rollout, error) {
	query, args := `SELECT `+rolloutColumns+` FROM rollouts`, []any{}
	if channel != "" {
		query, args = query+` WHERE channel = $1`, append(args, channel)
	}
	return queryAll(ctx, q.q, "listing rollouts", func(r *sql.Rows) (Rollout, error) { return scanRollout(r) },
		query+` ORDER BY created_at DESC, id DESC`, args...)
}

// legalMove reports whether some rollout.Action moves from to to.
func legalMove(from, to rollout.State) bool {
	for _, a := range []rollout.Action{rollout.ActionStart, rollout.ActionPause, rollout.ActionResume, rollout.ActionHalt, rollout.ActionComplete} {
		if next, err := rollout.Transition(from, a); err == nil && next == to {
			return true
		}
	}
	return false
}

// SetRolloutState moves a rollout from one state to another as a
// compare-and-set: if the rollout is no longer in from (someone else moved
// it), nothing changes and the error wraps ErrConflict. A move no
// rollout.Action makes is ErrInvalid (wrapping
// rollout.ErrIllegalTransition); an unknown id is ErrNotFound. Resuming a
// halted rollout while another one is open on its channel and architecture
// is ErrConflict.
//
// Bookkeeping, all at time at: UpdatedAt = at; HaltReason = reason when
// halting, "" otherwise; StoppedAt = at when pausing or halting, cleared
// otherwise; starting a pending rollout sets StartedAt = at; resuming
// moves StartedAt forward by the time it was stopped
// (rollout.ShiftStart), so the ramp continues at the step where it
// stopped instead of jumping ahead.
func (q *Queries) SetRolloutState(ctx context.Context, id string, from, to rollout.State, reason string, at time.Time) error {
	c := check{what: "rollout state"}
	c.key("id", id)
	c.text("reason", reason, maxText)
	c.time("time", at)
	if c.err != nil {
		return c.err
	}
	for _, s := range []rollout.State{from, to} {
		if _, err := rollout.ParseState(string(s)); err != nil {
			return fmt.Errorf("rollout %s: %w: %w", id, ErrInvalid, err)
		}
	}
	if !legalMove(from, to) {
		return fmt.Errorf("rollout %s: %w: %w: %s to %s", id, ErrInvalid, rollout.ErrIllegalTransition, from, to)
	}
	return q.atomic(ctx, func(q *Queries) error {
		cur, err := q.GetRollout(ctx, id)
		if err != nil {
			return err
		}
		if cur.State != from {
			return fmt.Errorf("rollout %s: %w: it is %s, not %s", id, ErrConflict, cur.State, from)
		}
		started, stopped, haltReason := cur.StartedAt, time.Time{}, ""
		switch {
		case from == rollout.StatePending:
			started = at
		case to == rollout.StateActive && !cur.StoppedAt.IsZero():
			started = rollout.ShiftStart(cur.StartedAt, cur.StoppedAt, at)
		}
		if to == rollout.StatePaused || to == rollout.StateHalted {
			stopped = at
		}
		if to == rollout.StateHalted {
			haltReason = reason
		}
		// The state in WHERE keeps this a compare-and-set on PostgreSQL,
		// where the read above takes no lock.
		res, err := q.q.ExecContext(ctx, `UPDATE rollouts
			SET state = $3, updated_at = $4, started_at = $5, stopped_at = $6, halt_reason = $7
			WHERE id = $1 AND state = $2`,
			id, string(from), string(to), micros(at), nullMicros(started), nullMicros(stopped), haltReason)
		if isUnique(err) {
			return fmt.Errorf("rollout %s: %w: another rollout is open on %s/%s", id, ErrConflict, cur.Channel, cur.Arch)
		}
		if err != nil {
			return fmt.Errorf("setting rollout %s to %s: %w", id, to, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("setting rollout %s to %s: %w", id, to, err)
		} else if n == 0 {
			return fmt.Errorf("rollout %s: %w: its state changed meanwhile", id, ErrConflict)
		}
		return q.noteChange(ctx, ChangeRollout, cur.Channel+"/"+cur.Arch)
	})
}
