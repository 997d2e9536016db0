package main

import (
	"github.com/spf13/cobra"
)

// newFleetLockCmd shows and frees the reboot slots of the fleet-lock
// strategy (admin role).
func newFleetLockCmd(r *remote) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fleetlock",
		Short: "Show or free the restart slots of groups that update a few machines at a time",
	}
	var group string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list [--group G]",
		Short: "List the machines that hold a restart slot",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			locks, err := c.FleetLocks(cmd.Context(), group)
			if err != nil {
				return r.explain(err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, nonNil(locks))
			}
			if len(locks) == 0 {
				say(out, "No machine holds a restart slot.")
				return nil
			}
			t := newTable(out, "GROUP", "DEVICE", "SINCE", "EXPIRES")
			for _, l := range locks {
				t.row(l.Group, l.DeviceID, when(l.AcquiredAt), when(l.ExpiresAt))
			}
			t.flush()
			return nil
		},
	}
	list.Flags().StringVar(&group, "group", "", "only this group")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var relGroup, device string
	release := &cobra.Command{
		Use:   "release --group G --device ID",
		Short: "Free the slot of a machine that will not finish its update (it expires by itself after an hour)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if relGroup == "" || device == "" {
				return userError("--group and --device are required")
			}
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			if err := c.ForceReleaseFleetLock(cmd.Context(), relGroup, device); err != nil {
				return r.explain(err)
			}
			say(cmd.OutOrStdout(), "Freed the restart slot of %s in group %s.", cell(device), cell(relGroup))
			return nil
		},
	}
	release.Flags().StringVar(&relGroup, "group", "", "group name")
	release.Flags().StringVar(&device, "device", "", "device ID")
	cmd.AddCommand(list, release)
	return cmd
}
