package main

import (
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/i18n"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

func newMetadataCmd(r *remote) *cobra.Command {
	cmd := &cobra.Command{Use: "metadata", Short: "Manage the signed channel metadata (TUF)"}
	var keys, onlinePub, out string
	initCmd := &cobra.Command{
		Use:   "init --keys RELEASEKEYDIR --online-pub ONLINEKEYDIR --out DIR",
		Short: "Create the signed channel metadata: root and an empty targets",
		Long: `Init creates, in DIR, root version 1 and an empty targets version 1 of the
signed channel metadata. It runs on the release team's machine, where the
release key is: the release key in RELEASEKEYDIR (ed25519.secret) signs
root and targets, and the online public key in ONLINEKEYDIR (ed25519.pub,
the key mxos-server gets with --online-keys) is named in root for
timestamps, snapshots and rollout state.

Copy DIR as is to the server's DATA/metadata directory, then (re)start
mxos-server with --online-keys: it signs the remaining roles, serves the
files at /metadata/ and from then on requires every release to come with
targets signed by the release key (mxosctl publish --channel and promote
build them). Ship DIR/root.json with the OS image as the devices' trust
anchor.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keys == "" || onlinePub == "" || out == "" {
				return userError("--keys, --online-pub and --out are required")
			}
			signers, err := publish.LoadEd25519Signers(keys)
			if err != nil {
				return i18n.Errorf("release key (--keys): %w", err)
			}
			releasePubs, err := publish.PublicKeys(signers...)
			if err != nil {
				return err
			}
			pubFile, err := os.ReadFile(filepath.Join(onlinePub, sign.Ed25519PublicFile))
			if err != nil {
				return i18n.Errorf("online public key (--online-pub): %w", err)
			}
			onlinePubs, err := publish.Ed25519PublicKeys(pubFile)
			if err != nil {
				return i18n.Errorf("online public key (--online-pub): %w", err)
			}
			// For now the release key doubles as the root key (see
			// internal/channelmeta): one offline key, threshold 1.
			k := publish.Keys{
				Root:    publish.RoleKeys{Keys: releasePubs, Threshold: 1},
				Release: publish.RoleKeys{Keys: releasePubs, Threshold: 1},
				Online:  publish.RoleKeys{Keys: onlinePubs, Threshold: 1},
			}
			if err := publish.Init(out, k, signers, signers, publish.Options{}, time.Now()); err != nil {
				return err
			}
			say(cmd.OutOrStdout(), "Signed channel metadata created in %s. Copy it to the server's DATA/metadata and restart mxos-server with --online-keys; ship %s with the OS.",
				out, filepath.Join(out, "root.json"))
			return nil
		},
	}
	f := initCmd.Flags()
	f.StringVar(&keys, "keys", envOr("MXOS_KEYS", ""), "directory with the release key (env MXOS_KEYS)")
	f.StringVar(&onlinePub, "online-pub", "", "directory with the server's online public key (ed25519.pub)")
	f.StringVar(&out, "out", "", "directory to create (copy it to the server's DATA/metadata)")
	cmd.AddCommand(initCmd, newMetadataStatusCmd(r), newMetadataRenewCmd(r), newMetadataSignExistingCmd(r), newMetadataRotateCmd(r))
	return cmd
}
