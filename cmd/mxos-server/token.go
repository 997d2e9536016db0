package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/server"
)

// newTokenCmd manages tokens on the server's own machine: the bootstrap,
// where no token exists yet to call the API with, and the way out when the
// last admin token must go (the API refuses that).
func newTokenCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage API tokens locally"}
	open := func(cmd *cobra.Command) (*db.Store, error) {
		if err := prepareData(g.dataDir); err != nil {
			return nil, err
		}
		store, err := db.Open(cmd.Context(), g.database, g.dataDir)
		if err != nil {
			return nil, fmt.Errorf("opening the metadata database: %w", err)
		}
		return store, nil
	}
	var role, name, expires, device string
	create := &cobra.Command{
		Use:   "create --data DIR --role ROLE --name NAME [--expires 90d] [--device ID]",
		Short: "Create a token and print it once",
		Long: `Create makes a token and prints only the token on stdout, so
TOKEN=$(mxos-server token create ...) captures it; what it is goes to
stderr. Tokens expire: --expires (e.g. 30d, 36h; at most 730d), by default
90 days for release and admin, 365 for enroll, 180 for device. --device
binds a device token to one device id (otherwise the first id that uses it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := auth.ParseRole(role)
			if err != nil {
				return err
			}
			if name == "" {
				return fmt.Errorf("--name is required")
			}
			opts := server.TokenOptions{Name: name, Role: r, By: "local:mxos-server", Now: time.Now(), DeviceID: device}
			if expires != "" {
				if opts.TTL, err = auth.ParseTTL(expires); err != nil {
					return fmt.Errorf("--expires: %w", err)
				}
			}
			store, err := open(cmd)
			if err != nil {
				return err
			}
			defer store.Close()
			t, err := server.CreateTokenWith(cmd.Context(), store, opts)
			if err != nil {
				return fmt.Errorf("creating token %q: %w", name, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n", t.Token)
			fmt.Fprintf(cmd.ErrOrStderr(), "Token %q (%s) created, valid until %s. It is shown only once: keep it safe.\n",
				name, r, t.ExpiresAt.Local().Format(time.DateOnly))
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", "", "role: release, admin, device or enroll")
	create.Flags().StringVar(&name, "name", "", "a name for the token, unique among active tokens")
	create.Flags().StringVar(&expires, "expires", "", "lifetime, e.g. 90d or 36h (default: the role's, see --help)")
	create.Flags().StringVar(&device, "device", "", "bind a device token to this device id")
	revoke := &cobra.Command{
		Use:   "revoke --data DIR NAME",
		Short: "Revoke a token by name or id (also the last admin token)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := open(cmd)
			if err != nil {
				return err
			}
			defer store.Close()
			now := time.Now()
			err = store.Tx(cmd.Context(), func(tx *db.Tx) error {
				t, err := tx.RevokeToken(cmd.Context(), args[0], now)
				if err != nil {
					return err
				}
				_, err = tx.AppendAudit(cmd.Context(), db.Entry{Actor: "local:mxos-server", Action: "token.revoke", Subject: t.Name, At: now})
				return err
			})
			if err != nil {
				return fmt.Errorf("revoking token %q: %w", args[0], err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Revoked token %s. A running server stops accepting it within a second.\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, revoke)
	return cmd
}
