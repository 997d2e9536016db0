package main

import (
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/bundle"
	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/i18n"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// Where an MxOS image ships its trust roots (keys/README.md); bundle
// create checks a bundle with them, as a device will.
const (
	shippedKeys = "/usr/share/mxos-update/keys"
	shippedRoot = shippedKeys + "/root.json"
)

// newBundleCmd: `mxosctl bundle create` writes an offline update bundle
// (internal/bundle) from the server's public files: no token needed.
func newBundleCmd(r *remote) *cobra.Command {
	cmd := &cobra.Command{Use: "bundle", Short: "Make update bundles for machines without a network (USB sticks)"}
	var channel, arch, version, out, keys, root string
	var from []string
	var quiet bool
	create := &cobra.Command{
		Use:   "create --channel CHANNEL --arch ARCH --out DIR",
		Short: "Write a self-contained update bundle of a channel's current release",
		Long: `Create writes into DIR (new or empty) one release of a channel with its
signed channel metadata and signed summary, ready to copy to a USB stick.
On each machine: mxos-updater upgrade --from DIR. The bundle is checked
here with the same trust roots a machine ships (--trusted-root,
--trusted-keys), and again on every machine before anything is installed.
The signed metadata expires (1 day by default): make the bundle shortly
before going to the school.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if channel == "" || arch == "" || out == "" {
				return userError("--channel, --arch and --out are required")
			}
			rootJSON, err := os.ReadFile(root)
			if err != nil {
				return i18n.Errorf("--trusted-root: %w", err)
			}
			verifiers, err := sign.LoadVerifiers(keys)
			if err != nil {
				return i18n.Errorf("--trusted-keys: %w", err)
			}
			tlsCfg, err := client.TLSConfig(r.caFile)
			if err != nil {
				return i18n.Errorf("--ca-file or MXOS_CA_FILE: %w", err)
			}
			hc := &http.Client{Timeout: 10 * time.Minute,
				Transport: &http.Transport{TLSClientConfig: tlsCfg, Proxy: http.ProxyFromEnvironment}}
			bar := newProgress(os.Stderr, quiet)
			m, err := bundle.Create(cmd.Context(), bundle.CreateOptions{Server: r.server, HTTP: hc,
				Channel: channel, Arch: arch, Version: version, TrustedRoot: rootJSON, ReleaseKeys: verifiers,
				Out: out, Progress: bar.count, FromReleases: from})
			bar.done()
			if err != nil {
				return i18n.Errorf("making the bundle: %w", err)
			}
			say(cmd.OutOrStdout(), "Bundle of version %s (%s, %s, commit %s) written to %s.", m.Version, m.Channel, m.Arch, m.Commit, out)
			say(cmd.OutOrStdout(), "On each machine: mxos-updater upgrade --from DIR (where DIR is this directory on the USB stick).")
			return nil
		},
	}
	f := create.Flags()
	f.StringVar(&channel, "channel", "", "channel (e.g. edu)")
	f.StringVar(&arch, "arch", "", "architecture (e.g. x86_64)")
	f.StringVar(&version, "version", "", "release to bundle (default: the channel's rollout, else its newest release)")
	f.StringVar(&out, "out", "", "new or empty directory to write the bundle to")
	f.StringVar(&keys, "trusted-keys", envOr("MXOS_TRUSTED_KEYS", shippedKeys), "release public keys, as machines ship them (env MXOS_TRUSTED_KEYS)")
	f.StringVar(&root, "trusted-root", envOr("MXOS_TRUSTED_ROOT", shippedRoot), "the signed metadata's root.json, as machines ship it (env MXOS_TRUSTED_ROOT)")
	f.StringArrayVar(&from, "from-release", nil, "make a smaller bundle with only the changes from this release of the channel (repeat for several); it installs only on machines that run one of them")
	f.BoolVar(&quiet, "quiet", false, "no progress counter")
	cmd.AddCommand(create)
	return cmd
}
