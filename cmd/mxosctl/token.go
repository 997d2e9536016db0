package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
)

func newTokenCmd(r *remote) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Create, list and revoke API tokens"}
	cmd.AddCommand(newTokenCreateCmd(r), newTokenListCmd(r), newTokenRevokeCmd(r))
	return cmd
}

func newTokenCreateCmd(r *remote) *cobra.Command {
	var name, role, expires, device string
	var maxDevices int
	cmd := &cobra.Command{
		Use:   "create --name N --role R [--expires 90d] [--device ID] [--max-devices N]",
		Short: "Create a token for a person, a CI job, a device or a school image; it is shown only once",
		Long: `Create makes a token with one role: release (publish, promote, rollouts),
admin (pins, devices, tokens), device (check and report for one device) or
enroll (baked into a school's image: each machine trades it once for its own
credential). Only a release token makes release tokens; an admin token makes
the others.

Only the token is printed on stdout, so TOKEN=$(mxosctl token create ...)
captures it; what was made goes to stderr. The server keeps only its hash.
Tokens expire: --expires (e.g. 30d, 36h; at most 730d), by default 90 days
for release and admin, 365 for enroll, 180 for device. --device binds a
device token to one device id (otherwise the first id that uses it).
--max-devices caps how many devices an enroll token enrolls (default 500;
it also enrolls at most 250 an hour; ids an admin authorized are exempt).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || role == "" {
				return userError("--name and --role are required")
			}
			if _, err := auth.ParseRole(role); err != nil {
				return userError("--role: %v", err)
			}
			if expires != "" {
				if _, err := auth.ParseTTL(expires); err != nil {
					return userError("--expires: %v", err)
				}
			}
			if maxDevices < 0 || (maxDevices != 0 && role != string(auth.RoleEnroll)) {
				return userError("--max-devices: only an enroll token has a cap, and it is a positive number")
			}
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			t, err := c.CreateToken(cmd.Context(), api.TokenCreateRequest{Name: name, Role: role, Expires: expires, DeviceID: device, MaxDevices: maxDevices})
			if err != nil {
				return r.explain(err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			bound := ""
			if t.DeviceID != "" {
				bound = msg.T(" for device %s", t.DeviceID)
			}
			say(cmd.ErrOrStderr(), "Created %s token %s%s (id %s), valid until %s. It is not shown again.",
				t.Role, t.Name, bound, t.ID, when(t.ExpiresAt))
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name for the token, e.g. ci-testing or ana")
	cmd.Flags().StringVar(&role, "role", "", "role: release, admin, device or enroll")
	cmd.Flags().StringVar(&expires, "expires", "", "lifetime, e.g. 90d or 36h (default: the role's, see --help)")
	cmd.Flags().StringVar(&device, "device", "", "bind a device token to this device id")
	cmd.Flags().IntVar(&maxDevices, "max-devices", 0, "an enroll token's cap on enrolled devices (default 500)")
	return cmd
}

func newTokenListCmd(r *remote) *cobra.Command {
	var asJSON, all bool
	cmd := &cobra.Command{
		Use:   "list [--all]",
		Short: "List tokens (never their secrets); --all adds device credentials",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			fetch := c.Tokens
			if all {
				fetch = c.AllTokens
			}
			list, err := fetch(cmd.Context())
			if err != nil {
				return r.explain(err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, nonNil(list))
			}
			if len(list) == 0 {
				say(out, "No tokens.")
				return nil
			}
			t := newTable(out, "NAME", "ROLE", "DEVICE", "ID", "CREATED", "BY", "EXPIRES", "REVOKED")
			for _, k := range list {
				t.row(k.Name, k.Role, k.DeviceID, k.ID, when(k.CreatedAt), k.CreatedBy, when(k.ExpiresAt), when(k.RevokedAt))
			}
			t.flush()
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&all, "all", false, "include the credentials devices got by enrolling")
	return cmd
}

func newTokenRevokeCmd(r *remote) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a token; requests with it fail from now on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "" {
				return userError("the token name is empty")
			}
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			if err := c.RevokeToken(cmd.Context(), args[0]); err != nil {
				return r.explain(err)
			}
			say(cmd.ErrOrStderr(), "Revoked token %s.", args[0])
			return nil
		},
	}
}
