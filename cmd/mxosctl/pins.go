package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/client"
)

// pinTarget reads --device/--group: exactly one names what a pin is for.
func pinTarget(device, group string) (scope, target string, err error) {
	switch {
	case device != "" && group != "":
		return "", "", userError("use --device or --group, not both")
	case device != "":
		return client.ScopeDevice, device, nil
	case group != "":
		return client.ScopeGroup, group, nil
	}
	return "", "", userError("use --device ID or --group G to say which devices")
}

func newPinCmd(r *remote) *cobra.Command {
	var device, group, channel, version string
	cmd := &cobra.Command{
		Use:   "pin (--device ID | --group G) (--channel C | --version V | both)",
		Short: "Assign a device or group to a channel, hold it on a version, or both",
		Long: `Pin assigns a device or a group of devices to a channel (they follow that
channel instead of their own) and/or holds them on a version (they are not
offered anything newer). A new pin replaces the old one; "mxosctl unpin"
removes it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			scope, target, err := pinTarget(device, group)
			if err != nil {
				return err
			}
			if channel == "" && version == "" {
				return userError("use --channel, --version or both to say what to pin %s %s to", scope, target)
			}
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			p, err := c.SetPin(cmd.Context(), api.Pin{Scope: scope, Target: target, Channel: channel, Version: version})
			if err != nil {
				return r.explain(err)
			}
			say(cmd.OutOrStdout(), "Pinned %s %s: %s.", p.Scope, p.Target, pinWhat(p))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&device, "device", "", "device ID")
	f.StringVar(&group, "group", "", "group name")
	f.StringVar(&channel, "channel", "", "channel to follow")
	f.StringVar(&version, "version", "", "version to hold on")
	return cmd
}

// pinWhat says what a pin does, e.g. "channel edu, held on 10.0.1".
func pinWhat(p api.Pin) string {
	var parts []string
	if p.Channel != "" {
		parts = append(parts, "channel "+p.Channel)
	}
	if p.Version != "" {
		parts = append(parts, "held on "+p.Version)
	}
	return strings.Join(parts, ", ")
}

func newUnpinCmd(r *remote) *cobra.Command {
	var device, group string
	cmd := &cobra.Command{
		Use:   "unpin (--device ID | --group G)",
		Short: "Remove the pin of a device or group",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			scope, target, err := pinTarget(device, group)
			if err != nil {
				return err
			}
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			if err := c.DeletePin(cmd.Context(), scope, target); err != nil {
				return r.explain(err)
			}
			say(cmd.OutOrStdout(), "Removed the pin of %s %s.", scope, target)
			return nil
		},
	}
	cmd.Flags().StringVar(&device, "device", "", "device ID")
	cmd.Flags().StringVar(&group, "group", "", "group name")
	return cmd
}

func newPinsCmd(r *remote) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "pins",
		Short: "List the pins of devices and groups",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			pins, err := c.Pins(cmd.Context())
			if err != nil {
				return r.explain(err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, nonNil(pins))
			}
			if len(pins) == 0 {
				say(out, "No pins.")
				return nil
			}
			t := newTable(out, "SCOPE", "TARGET", "CHANNEL", "VERSION", "BY", "SINCE")
			for _, p := range pins {
				t.row(p.Scope, p.Target, p.Channel, p.Version, p.CreatedBy, when(p.CreatedAt))
			}
			t.flush()
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
