package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/client"
)

// newDevicesCmd is `mxosctl devices` (alone: the same as `devices list`)
// and its subcommands for device identity: identities, authorize, revoke.
func newDevicesCmd(r *remote) *cobra.Command {
	cmd := newDevicesListCmd(r, "devices [--channel C] [--group G] [--limit N] [--after ID]")
	cmd.Short = "List the devices the server knows; manage their identities (subcommands)"
	cmd.AddCommand(newDevicesListCmd(r, "list [--channel C] [--group G] [--limit N] [--after ID]"),
		newDevicesIdentitiesCmd(r), newDevicesAuthorizeCmd(r), newDevicesRevokeCmd(r), newDevicesReportsCmd(r), newDevicesShowCmd(r))
	return cmd
}

func newDevicesIdentitiesCmd(r *remote) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "identities",
		Short: "List device ids that enrolled, were authorized or revoked, or hold a bound token",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			list, err := c.Identities(cmd.Context())
			if err != nil {
				return r.explain(err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, nonNil(list))
			}
			if len(list) == 0 {
				say(out, "No device identities.")
				return nil
			}
			t := newTable(out, "DEVICE", "STATE", "CREDENTIALS", "EXPIRES", "CHANGED", "BY")
			for _, d := range list {
				st := d.State
				if st == "" {
					st = "bound-token"
				}
				t.row(d.DeviceID, st, fmt.Sprint(d.Credentials), when(d.CredentialExpires), when(d.UpdatedAt), d.UpdatedBy)
			}
			t.flush()
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newDevicesReportsCmd(r *remote) *cobra.Command {
	var asJSON bool
	var limit int
	cmd := &cobra.Command{
		Use:   "reports ID [--limit N]",
		Short: "Show a device's latest reports; COUNTED marks those that count toward auto-halt",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			list, err := c.DeviceReports(cmd.Context(), args[0], limit)
			if err != nil {
				return r.explain(err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, nonNil(list))
			}
			if len(list) == 0 {
				say(out, "No reports from %s.", args[0])
				return nil
			}
			t := newTable(out, "AT", "EVENT", "COUNTED", "VERSION", "ROLLOUT", "ERROR")
			for _, rep := range list {
				counted := "no"
				if rep.Counted {
					counted = "yes"
				}
				t.row(when(rep.At), string(rep.Event), counted, rep.Version, rep.RolloutID, rep.Error)
			}
			t.flush()
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many reports (default: the server's, 100)")
	return cmd
}

func newDevicesAuthorizeCmd(r *remote) *cobra.Command {
	return deviceIdentityCmd(r, "authorize ID",
		"Pre-authorize a device id to enroll once (a new or re-imaged machine); revokes its old credentials",
		(*client.Client).AuthorizeDevice, "Device %s may enroll once now (%s revoked).")
}

func newDevicesRevokeCmd(r *remote) *cobra.Command {
	return deviceIdentityCmd(r, "revoke ID",
		"Revoke every credential of a device; it cannot enroll again until authorized",
		(*client.Client).RevokeDevice, "Device %s revoked (%s).")
}

// deviceIdentityCmd is a command that changes one device id's identity
// through call and says what happened with done, a catalog message (id,
// credentials revoked).
func deviceIdentityCmd(r *remote, use, short string, call func(*client.Client, context.Context, string) (api.DeviceIdentity, error), done string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			d, err := call(c, cmd.Context(), args[0])
			if err != nil {
				return r.explain(err)
			}
			say(cmd.OutOrStdout(), done, d.DeviceID, plural(d.Revoked, "credential", "credentials"))
			return nil
		},
	}
}

func newDevicesListCmd(r *remote, use string) *cobra.Command {
	var f client.DeviceFilter
	var asJSON bool
	cmd := &cobra.Command{
		Use:   use,
		Short: "List the devices the server knows, one page at a time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.Limit < 0 {
				return userError("--limit must be 0 (the server's page size) or more")
			}
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			list, err := c.Devices(cmd.Context(), f)
			if err != nil {
				return r.explain(err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				list.Devices = nonNil(list.Devices)
				return printJSON(out, list)
			}
			if len(list.Devices) == 0 {
				say(out, "No devices (%s in all).", plural(list.Total, "device", "devices"))
				return nil
			}
			ids := make([]string, len(list.Devices))
			for i, d := range list.Devices {
				ids[i] = d.ID
			}
			status, err := deviceStatuses(cmd.Context(), c, ids)
			if err != nil {
				return r.explain(err)
			}
			t := newTable(out, "DEVICE", "ARCH", "CHANNEL", "GROUP", "VERSION", "LAST SEEN", "STATUS", "LAST FAILURE")
			for _, d := range list.Devices {
				st := status[d.ID]
				t.row(d.ID, d.Arch, d.Channel, d.Group, d.Version, when(d.LastSeen), reportCell(st.Last, false), reportCell(st.LastFailure, true))
			}
			t.flush()
			say(out, "Showing %d of %s.", len(list.Devices), plural(list.Total, "device", "devices"))
			if list.Next != "" {
				say(out, "More: mxosctl devices --after %s", cell(list.Next))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.Channel, "channel", "", "only devices on this channel")
	fl.StringVar(&f.Group, "group", "", "only devices in this group")
	fl.IntVar(&f.Limit, "limit", 0, "at most this many devices (default: the server's page size)")
	fl.StringVar(&f.After, "after", "", "start after this device ID (the next page)")
	fl.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newGroupCmd(r *remote) *cobra.Command {
	var device, group string
	cmd := &cobra.Command{
		Use:   "group --device ID --group G",
		Short: `Put a device in a group (--group "" takes it out)`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if device == "" {
				return userError("--device is required")
			}
			// An explicit empty --group is how a device leaves its group.
			if !cmd.Flags().Changed("group") {
				return userError(`--group is required (--group "" takes the device out of its group)`)
			}
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			if err := c.SetDeviceGroup(cmd.Context(), device, group); err != nil {
				return r.explain(err)
			}
			if group == "" {
				say(cmd.OutOrStdout(), "Device %s is in no group now.", device)
			} else {
				say(cmd.OutOrStdout(), "Device %s is now in group %s.", device, group)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&device, "device", "", "device ID")
	cmd.Flags().StringVar(&group, "group", "", "group name")
	return cmd
}

// deviceStatuses returns the latest report and failure of ids; a server
// without the device-status route (older than this mxosctl) gives none.
func deviceStatuses(ctx context.Context, c *client.Client, ids []string) (map[string]api.DeviceStatus, error) {
	out := map[string]api.DeviceStatus{}
	list, err := c.DeviceStatuses(ctx, ids)
	var ae *api.Error
	if errors.As(err, &ae) && ae.Code == api.CodeNotFound {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for _, s := range list {
		out[s.DeviceID] = s
	}
	return out, nil
}

// reportCell is a report in one table cell: "health-ok 10.0.3" or, with
// its error, "health-failed 10.0.3: sshd did not start" (cut to 60
// characters; devices show prints it whole).
func reportCell(r *api.DeviceReport, withError bool) string {
	if r == nil {
		return "-"
	}
	s := string(r.Event) + " " + r.Version
	if withError && r.Error != "" {
		s += ": " + r.Error
	}
	if rs := []rune(s); len(rs) > 60 {
		s = string(rs[:59]) + "…"
	}
	return s
}

func newDevicesShowCmd(r *remote) *cobra.Command {
	var asJSON bool
	var limit int
	cmd := &cobra.Command{
		Use:   "show ID [--limit N]",
		Short: "Show one device: where it is, its last report and failure, its report history",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return userError("--limit must be 0 (the server's default) or more")
			}
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			d, err := c.Device(cmd.Context(), args[0], limit)
			if err != nil {
				return r.explain(err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				d.Reports = nonNil(d.Reports)
				return printJSON(out, d)
			}
			kv := newTable(out, msg.T("Device:"), cell(d.ID))
			kv.row(msg.T("Architecture:"), d.Arch)
			kv.row(msg.T("Channel:"), d.Channel)
			kv.row(msg.T("Group:"), d.Group)
			kv.row(msg.T("Version:"), d.Version)
			kv.row(msg.T("Booted commit:"), d.BootedCommit)
			kv.row(msg.T("First seen:"), when(d.FirstSeen))
			kv.row(msg.T("Last seen:"), when(d.LastSeen))
			kv.row(msg.T("Last report:"), reportLine(d.Last))
			kv.row(msg.T("Last failure:"), reportLine(d.LastFailure))
			kv.flush()
			if len(d.Reports) == 0 {
				say(out, "No reports from %s.", d.ID)
				return nil
			}
			fmt.Fprintln(out)
			say(out, "Reports, newest first (COUNTED: counts toward auto-halt):")
			t := newTable(out, "AT", "EVENT", "COUNTED", "VERSION", "ROLLOUT", "ERROR")
			for _, rep := range d.Reports {
				counted := msg.T("no")
				if rep.Counted {
					counted = msg.T("yes")
				}
				t.row(when(rep.At), string(rep.Event), counted, rep.Version, rep.RolloutID, rep.Error)
			}
			t.flush()
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many reports (default: the server's, 20)")
	return cmd
}

// reportLine is a report on one line, its error whole.
func reportLine(r *api.DeviceReport) string {
	if r == nil {
		return "-"
	}
	s := fmt.Sprintf("%s %s, %s", r.Event, r.Version, when(r.At))
	if r.RolloutID != "" {
		s += " (rollout " + r.RolloutID + ")"
	}
	if r.Error != "" {
		s += ": " + r.Error
	}
	return s
}
