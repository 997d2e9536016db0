package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

func newRolloutCmd(r *remote) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Start, inspect, pause, resume, halt and complete staged rollouts",
	}
	cmd.AddCommand(newRolloutStartCmd(r), newRolloutStatusCmd(r))
	for _, a := range []struct{ action, short, done string }{
		{client.ActionPause, "Pause a rollout: no more devices are offered the release", "paused"},
		{client.ActionResume, "Resume a paused or halted rollout where its ramp stopped", "resumed"},
		{client.ActionHalt, "Halt a rollout: stop offering the release (emergency stop)", "halted"},
		{client.ActionComplete, "Complete a rollout: offer the release to every device", "completed"},
	} {
		cmd.AddCommand(newRolloutActionCmd(r, a.action, a.short, a.done))
	}
	return cmd
}

func newRolloutStartCmd(r *remote) *cobra.Command {
	var req api.RolloutStartRequest
	cmd := &cobra.Command{
		Use:   "start --channel C --version V [--arch A] [--ramp 1%,10%@24h,50%@48h,100%@72h]",
		Short: "Start a staged rollout of a published version",
		Long: `Start offers a published version of a channel to a growing share of its
devices. --ramp lists "percent@offset" steps from the start (the first step
has no offset and the last is 100%); without it the channel's default ramp
applies. Without --arch every architecture that has the version starts its
own rollout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.Channel == "" || req.Version == "" {
				return userError("--channel and --version are required")
			}
			if req.Ramp != "" {
				// Catch a typo here rather than after a round trip.
				if _, err := rollout.ParseRamp(req.Ramp); err != nil {
					return userError("--ramp: %v", err)
				}
			}
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			started, err := c.StartRollout(cmd.Context(), req)
			if err != nil {
				return r.explain(err)
			}
			out := cmd.OutOrStdout()
			if len(started) == 0 {
				say(out, "The server started no rollout of %s on %s.", req.Version, req.Channel)
			}
			for _, s := range started {
				say(out, "Started rollout %s: %s on %s/%s, ramp %s, now %s at %s.",
					s.ID, s.Version, s.Channel, s.Arch, s.Ramp, s.State, percent(s.Fraction))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Channel, "channel", "", "channel, e.g. stable")
	f.StringVar(&req.Version, "version", "", "published version to roll out, e.g. 10.0.2")
	f.StringVar(&req.Arch, "arch", "", "architecture (default: every one that has the version)")
	f.StringVar(&req.Ramp, "ramp", "", "ramp, e.g. 1%,10%@24h,50%@48h,100%@72h (default: the channel's)")
	return cmd
}

func newRolloutStatusCmd(r *remote) *cobra.Command {
	var channel string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--channel C]",
		Short: "Show rollouts, newest first, with their state and share of devices",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			list, err := c.Rollouts(cmd.Context(), channel)
			if err != nil {
				return r.explain(err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, nonNil(list))
			}
			if len(list) == 0 {
				if channel != "" {
					say(out, "No rollouts on %s.", channel)
				} else {
					say(out, "No rollouts.")
				}
				return nil
			}
			printRollouts(out, list)
			return nil
		},
	}
	cmd.Flags().StringVar(&channel, "channel", "", "only this channel's rollouts")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printRollouts(out io.Writer, list []api.RolloutStatus) {
	now := time.Now()
	t := newTable(out, "ID", "CHANNEL", "ARCH", "VERSION", "STATE", "SHARE", "OK", "FAILED", "RAMP", "NEXT STEP", "UPDATED", "REASON")
	for _, s := range list {
		reason := s.HaltReason
		if reason == "" {
			reason = " " // an empty last column, not "-"
		}
		t.row(s.ID, s.Channel, s.Arch, s.Version, s.State, percent(s.Fraction),
			strconv.Itoa(s.Successes), strconv.Itoa(s.Failures), s.Ramp, nextStep(s, now), when(s.UpdatedAt), reason)
	}
	t.flush()
}

// nextStep is when an active rollout's ramp next raises its share: "10%
// at 2026-03-02 12:00Z (in 5h)", computed as the server does
// (rollout.Ramp.NextChange from the start, which resume shifts past the
// pause). "-" for a rollout that is paused, halted, complete, or at its
// last step.
func nextStep(s api.RolloutStatus, now time.Time) string {
	if s.State != string(rollout.StateActive) || s.StartedAt.IsZero() {
		return "-"
	}
	ramp, err := rollout.ParseRamp(s.Ramp)
	if err != nil {
		return "-"
	}
	at, ok := ramp.NextChange(s.StartedAt, now)
	if !ok {
		return "-"
	}
	steps := ramp.Steps()
	next := steps[0]
	if i := ramp.StepAt(s.StartedAt, now); i >= 0 {
		next = steps[i+1]
	}
	return msg.T("%s at %s (in %s)", percent(next.Fraction()), when(at), inDuration(at.Sub(now)))
}

// inDuration is a wait to the minute: "5h0m", "12m", "under a minute".
func inDuration(d time.Duration) string {
	if d < time.Minute {
		return msg.T("under a minute")
	}
	s := d.Truncate(time.Minute).String()
	return strings.TrimSuffix(s, "0s")
}

func newRolloutActionCmd(r *remote, action, short, done string) *cobra.Command {
	var reason, channel, arch string
	cmd := &cobra.Command{
		Use:   action + " (ID | --channel C [--arch A]) [--reason R]",
		Short: short,
		Long: short + `.

Name the rollout by its ID (see "mxosctl rollout status"), or by --channel
and, when the channel has rollouts on several architectures, --arch: the
command then acts on the newest rollout there. --reason goes into the audit
log.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 1 && channel != "":
				return userError("give a rollout ID or --channel, not both")
			case len(args) == 0 && channel == "":
				return userError("give a rollout ID, or --channel C [--arch A] for the channel's current rollout")
			case arch != "" && channel == "":
				return userError("--arch goes with --channel")
			case len(args) == 1 && strings.TrimSpace(args[0]) == "":
				return userError("the rollout ID is empty")
			}
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			var id string
			if len(args) == 1 {
				id = args[0]
			} else if id, err = currentRollout(cmd.Context(), c, channel, arch); err != nil {
				return r.explain(err)
			}
			s, err := c.RolloutAction(cmd.Context(), id, action, reason)
			if err != nil {
				return r.explain(err)
			}
			say(cmd.OutOrStdout(), "Rollout %s (%s on %s/%s) %s: now %s at %s.",
				s.ID, s.Version, s.Channel, s.Arch, msg.T(done), s.State, percent(s.Fraction))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&reason, "reason", "", "why, for the audit log")
	f.StringVar(&channel, "channel", "", "act on this channel's current rollout instead of an ID")
	f.StringVar(&arch, "arch", "", "with --channel: the architecture")
	return cmd
}

// currentRollout finds the rollout "--channel C [--arch A]" means: the
// newest on each architecture (the server lists rollouts newest first, as
// its CurrentRollout does). Several architectures without --arch is an
// error rather than a guess.
func currentRollout(ctx context.Context, c *client.Client, channel, arch string) (string, error) {
	list, err := c.Rollouts(ctx, channel)
	if err != nil {
		return "", err
	}
	var current []api.RolloutStatus
	seen := map[string]bool{}
	for _, s := range list {
		if s.Channel != channel || (arch != "" && s.Arch != arch) || seen[s.Arch] {
			continue
		}
		seen[s.Arch] = true
		current = append(current, s)
	}
	switch len(current) {
	case 0:
		if arch != "" {
			return "", userError("no rollout on %s/%s", channel, arch)
		}
		return "", userError("no rollout on %s", channel)
	case 1:
		return current[0].ID, nil
	}
	var names []string
	for _, s := range current {
		names = append(names, fmt.Sprintf("%s on %s", s.ID, s.Arch))
	}
	return "", userError("%s has rollouts on several architectures (%s): add --arch or give the ID",
		channel, strings.Join(names, ", "))
}
