package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/server"
)

// newTokenCmd bootstraps tokens on the server's own machine, where no
// token exists yet to call the API with.
func newTokenCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage API tokens locally"}
	var role, name string
	create := &cobra.Command{
		Use:   "create --data DIR --role ROLE --name NAME",
		Short: "Create a token and print it once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := auth.ParseRole(role)
			if err != nil {
				return err
			}
			if name == "" {
				return fmt.Errorf("--name is required")
			}
			if err := prepareData(g.dataDir); err != nil {
				return err
			}
			store, err := db.Open(cmd.Context(), g.database, g.dataDir)
			if err != nil {
				return fmt.Errorf("opening the metadata database: %w", err)
			}
			defer store.Close()
			t, err := server.CreateToken(cmd.Context(), store, name, r, "local:mxos-server", time.Now())
			if err != nil {
				return fmt.Errorf("creating token %q: %w", name, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", t.Token)
			fmt.Fprintf(cmd.ErrOrStderr(), "Token %q (%s) created. It is shown only once: keep it safe.\n", name, r)
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", "", "role: release, admin or device")
	create.Flags().StringVar(&name, "name", "", "a name for the token, unique among active tokens")
	cmd.AddCommand(create)
	return cmd
}
