package updater

import (
	"github.com/mxos-linux/mxos-update/internal/i18n"

	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// The daemon loop (`mxos-updater run`). Schedule:
//
//   - the first cycle runs soon after start, after a random delay of up to
//     StartJitter (a lab powered on at 8:00 does not ask all at once);
//   - after a cycle that worked, the next one waits Interval plus a random
//     share of Jitter, in [Interval, Interval+Jitter);
//   - after a failed cycle (server down, download cut) the loop never
//     exits: it says so in one short line and waits Interval, then 2×,
//     then 4× Interval for as long as cycles keep failing (plus jitter),
//     so a fleet does not hammer a server that is struggling. The first
//     cycle that works resets the wait.
//
// A cycle gives back a fleet-lock slot whose give-back failed earlier,
// then runs Agent.Upgrade (check, download, stage, switch per strategy;
// the agent reports each step to the server).
//
// Stopping (SIGTERM, SIGINT: the context is cancelled) ends a wait at
// once. A cycle in progress gets StopGrace to finish its current step
// (a switch or a report is quick), then its context is cancelled too: a
// download is abandoned and resumes at the next start, since every step
// is resumable (see Agent.install).

// Defaults of Runner.
const (
	DefaultStartJitter = time.Minute
	DefaultStopGrace   = 20 * time.Second
	// maxBackoffFactor caps the wait after repeated failures at this many
	// intervals.
	maxBackoffFactor = 4
)

// Runner runs an Agent on a schedule until its context is cancelled.
type Runner struct {
	Agent *Agent
	// Interval and Jitter default to the agent's configuration.
	Interval time.Duration
	Jitter   time.Duration
	// StartJitter bounds the delay before the first cycle (DefaultStartJitter
	// when zero, never more than Jitter).
	StartJitter time.Duration
	// StopGrace is how long a cycle may go on after the stop signal.
	StopGrace time.Duration
	// Reboot, when set, is called after a cycle switched to a new release
	// (`run --reboot`); otherwise the technician restarts the machine.
	Reboot func(ctx context.Context) error

	// Cycle runs one cycle (the agent's by default); tests replace it.
	Cycle func(ctx context.Context) (switched bool, err error)
	// Sleep waits d or until ctx is done (a timer by default); tests
	// replace it with a fake clock.
	Sleep func(ctx context.Context, d time.Duration) error
	// Rand returns a number in [0, n) (math/rand/v2 by default).
	Rand func(n int64) int64
	// Out receives the loop's own short messages (the agent's Out when nil).
	Out io.Writer
}

func (r *Runner) defaults() {
	if r.Interval <= 0 && r.Agent != nil {
		r.Interval = time.Duration(r.Agent.Cfg.Interval)
	}
	if r.Jitter <= 0 && r.Agent != nil {
		r.Jitter = time.Duration(r.Agent.Cfg.Jitter)
	}
	if r.StartJitter <= 0 {
		r.StartJitter = DefaultStartJitter
	}
	r.StartJitter = min(r.StartJitter, r.Jitter)
	if r.StopGrace <= 0 {
		r.StopGrace = DefaultStopGrace
	}
	if r.Cycle == nil {
		r.Cycle = r.agentCycle
	}
	if r.Sleep == nil {
		r.Sleep = sleep
	}
	if r.Rand == nil {
		r.Rand = rand.Int64N
	}
	if r.Out == nil && r.Agent != nil {
		r.Out = r.Agent.Out
	}
}

// say tells the technician something; format is a catalog message
// (internal/i18n), printed in the agent's language.
func (r *Runner) say(format string, args ...any) {
	var p *i18n.Printer
	if r.Agent != nil {
		p = r.Agent.Lang
	}
	p.Say(r.Out, format, args...)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// jitter returns a random duration in [0, j); 0 when j is not positive.
func (r *Runner) jitter(j time.Duration) time.Duration {
	if j <= 0 {
		return 0
	}
	return time.Duration(r.Rand(int64(j)))
}

// nextWait is the wait after a cycle, given how many cycles in a row
// failed (0 after one that worked).
func (r *Runner) nextWait(failures int) time.Duration {
	factor := 1
	for i := 1; i < failures && factor < maxBackoffFactor; i++ {
		factor *= 2
	}
	return time.Duration(factor)*r.Interval + r.jitter(r.Jitter)
}

// Run runs cycles until ctx is cancelled, then returns nil. It returns an
// error only when it cannot run at all.
func (r *Runner) Run(ctx context.Context) error {
	r.defaults()
	if r.Interval <= 0 {
		return fmt.Errorf("run: the check interval must be positive")
	}
	if r.Jitter < 0 {
		return fmt.Errorf("run: the jitter must not be negative")
	}
	wait := r.jitter(r.StartJitter)
	failures := 0
	for {
		if err := r.Sleep(ctx, wait); err != nil || ctx.Err() != nil {
			r.say("Stopping.")
			return nil
		}
		switched, err := r.runCycle(ctx)
		if err != nil {
			failures++
			wait = r.nextWait(failures)
			if ctx.Err() == nil {
				r.say("Update check failed: %v. Trying again in %s.", err, roundWait(wait))
			}
			continue
		}
		failures = 0
		wait = r.nextWait(0)
		if switched && r.Reboot != nil && ctx.Err() == nil {
			r.say("Restarting the machine to use the new version.")
			if err := r.Reboot(ctx); err != nil {
				r.say("Could not restart the machine: %v", err)
			}
		}
	}
}

// runCycle runs one cycle with a context that outlives a stop request by
// StopGrace.
func (r *Runner) runCycle(ctx context.Context) (bool, error) {
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(r.StopGrace, cancel)
		<-cctx.Done()
		t.Stop()
	})
	defer stop()
	return r.Cycle(cctx)
}

func (r *Runner) agentCycle(ctx context.Context) (bool, error) {
	if err := r.Agent.ReleaseFleetLock(ctx); err != nil {
		r.say("Could not give back the restart slot; will try again: %v", err)
	}
	return r.Agent.Upgrade(ctx)
}

// roundWait prints a wait to the second.
func roundWait(d time.Duration) time.Duration { return d.Round(time.Second) }
