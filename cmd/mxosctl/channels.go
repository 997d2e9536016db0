package main

import (
	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/client"
)

func newChannelsCmd(r *remote) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "channels",
		Short: "List channels with their latest release and rollout per architecture",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			list, err := c.Channels(cmd.Context())
			if err != nil {
				return r.explain(err)
			}
			warnMetadataExpiry(cmd, c)
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, nonNil(list))
			}
			if len(list) == 0 {
				say(out, "No channels.")
				return nil
			}
			t := newTable(out, "CHANNEL", "ARCH", "LATEST", "ROLLOUT", "STATE", "SHARE")
			for _, ch := range list {
				if len(ch.Arches) == 0 {
					t.row(ch.Name, "", "", "", "", "")
				}
				for _, a := range ch.Arches {
					t.row(append([]string{ch.Name, a.Arch, latest(a.Latest)}, rolloutCells(a.Rollout)...)...)
				}
			}
			t.flush()
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func latest(r *api.Release) string {
	if r == nil {
		return ""
	}
	return r.Version
}

// rolloutCells are the version, state and share of a rollout.
func rolloutCells(r *api.RolloutStatus) []string {
	if r == nil {
		return []string{"", "", ""}
	}
	return []string{r.Version, r.State, percent(r.Fraction)}
}

// nonNil makes JSON output print [] rather than null for an empty list.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// warnMetadataExpiry warns on stderr when the server's signed root or
// targets expire within 30 days (channelmeta.RenewWarning). A server
// without signed metadata, or one that cannot be read, gets no warning:
// listing channels does not depend on it.
func warnMetadataExpiry(cmd *cobra.Command, c *client.Client) {
	var st []publish.RoleStatus
	for _, role := range []string{"root", "targets"} {
		data, err := c.Metadata(cmd.Context(), role+".json")
		if err != nil || data == nil {
			return
		}
		rs, err := publish.RoleInfo(role, data)
		if err != nil {
			return
		}
		st = append(st, rs)
	}
	warnExpiring(cmd, st, metaNow())
}
