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
	var name, role string
	cmd := &cobra.Command{
		Use:   "create --name N --role R",
		Short: "Create a token for a person, a CI job or a device; it is shown only once",
		Long: `Create makes a token with one role: release (publish, promote, rollouts),
admin (pins, devices, tokens) or device (check and report). The token is
printed once, on the last line; the server keeps only its hash.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || role == "" {
				return userError("--name and --role are required")
			}
			if _, err := auth.ParseRole(role); err != nil {
				return userError("--role: %v", err)
			}
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			t, err := c.CreateToken(cmd.Context(), api.TokenCreateRequest{Name: name, Role: role})
			if err != nil {
				return r.explain(err)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Created %s token %s (id %s). Copy it now, it is not shown again:\n", t.Role, t.Name, t.ID)
			fmt.Fprintln(out, t.Token)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name for the token, e.g. ci-testing or ana")
	cmd.Flags().StringVar(&role, "role", "", "role: release, admin or device")
	return cmd
}

func newTokenListCmd(r *remote) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := r.client(cmd)
			if err != nil {
				return err
			}
			list, err := c.Tokens(cmd.Context())
			if err != nil {
				return r.explain(err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, nonNil(list))
			}
			if len(list) == 0 {
				fmt.Fprintln(out, "No tokens.")
				return nil
			}
			t := newTable(out, "NAME", "ROLE", "ID", "CREATED", "BY", "REVOKED")
			for _, k := range list {
				t.row(k.Name, k.Role, k.ID, when(k.CreatedAt), k.CreatedBy, when(k.RevokedAt))
			}
			t.flush()
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
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
			fmt.Fprintf(cmd.OutOrStdout(), "Revoked token %s.\n", args[0])
			return nil
		},
	}
}
