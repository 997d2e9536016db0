package main

import (
	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/sign"
)

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Create and inspect signing keys"}
	var dir, name, email string
	gen := &cobra.Command{
		Use:   "generate --dir DIR",
		Short: "Create an Ed25519 and an OpenPGP signing key pair in DIR",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return userError("--dir is required")
			}
			if err := sign.GenerateKeys(dir, sign.GenerateOptions{Name: name, Email: email}); err != nil {
				return err
			}
			say(cmd.OutOrStdout(), "Keys written to %s. Keep %s and %s secret; share %s and %s.",
				dir, sign.Ed25519SecretFile, sign.OpenPGPSecretFile, sign.Ed25519PublicFile, sign.OpenPGPPublicFile)
			return nil
		},
	}
	gen.Flags().StringVar(&dir, "dir", "", "directory for the key files (created if missing)")
	gen.Flags().StringVar(&name, "name", "", "OpenPGP user name (default: MxOS Update release key)")
	gen.Flags().StringVar(&email, "email", "", "OpenPGP user e-mail")
	cmd.AddCommand(gen)
	return cmd
}
