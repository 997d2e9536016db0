// Command mxos-updater is the device agent of MxOS Update:
//
//	mxos-updater status     show the installed versions
//	mxos-updater check      ask the server whether an update is offered
//	mxos-updater upgrade    download, verify and install an offered update
//	mxos-updater rollback   go back to the previous version
//	mxos-updater boot       boot-time step: count the boot, run health checks,
//	                        keep the update or roll it back
//	mxos-updater run        the daemon: check every interval (plus jitter),
//	                        install per strategy, keep going after errors,
//	                        stop on SIGTERM/SIGINT
//
// deploy/systemd has the units: mxos-updater.service runs `run`,
// mxos-updater-boot.service runs `boot` once per boot.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
	"github.com/mxos-linux/mxos-update/internal/sysroot/ostreeadmin"
	"github.com/mxos-linux/mxos-update/internal/updater"
)

const defaultConfig = "/etc/mxos-updater/config.yaml"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mxos-updater:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	var cfgPath string
	root := &cobra.Command{
		Use:           "mxos-updater",
		Short:         "Keeps this MxOS machine up to date",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&cfgPath, "config", defaultConfig, "configuration file")

	withAgent := func(fn func(cmd *cobra.Command, a *updater.Agent) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			a, err := newAgent(cmd.Context(), cfgPath)
			if err != nil {
				return err
			}
			a.Out = cmd.OutOrStdout()
			if p := newProgress(cmd.OutOrStdout()); p != nil {
				a.Puller.Progress = p.count
			}
			return fn(cmd, a)
		}
	}
	root.AddCommand(
		&cobra.Command{Use: "status", Short: "Show the installed versions", Args: cobra.NoArgs,
			RunE: withAgent(func(cmd *cobra.Command, a *updater.Agent) error {
				st, err := a.Status(cmd.Context())
				if err != nil {
					return err
				}
				printStatus(cmd, st)
				return nil
			})},
		&cobra.Command{Use: "check", Short: "Ask the server whether an update is offered", Args: cobra.NoArgs,
			RunE: withAgent(func(cmd *cobra.Command, a *updater.Agent) error {
				resp, err := a.Check(cmd.Context())
				if err != nil {
					return err
				}
				if resp.Update && resp.Target != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "Update available: version %s (%s).\n", resp.Target.Version, resp.Reason)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "No update (%s).\n", resp.Reason)
				}
				return nil
			})},
		&cobra.Command{Use: "upgrade", Short: "Download and install an offered update", Args: cobra.NoArgs,
			RunE: withAgent(func(cmd *cobra.Command, a *updater.Agent) error {
				_, err := a.Upgrade(cmd.Context())
				return err
			})},
		&cobra.Command{Use: "rollback", Short: "Go back to the previous version", Args: cobra.NoArgs,
			RunE: withAgent(func(cmd *cobra.Command, a *updater.Agent) error {
				return a.Rollback(cmd.Context())
			})},
		newBootCmd(withAgent),
		newRunCmd(withAgent),
	)
	return root
}

// newBootCmd is the boot-time step. After rolling back the running
// version it restarts the machine (internal/updater/reboot.go) unless
// --reboot=false.
func newBootCmd(withAgent func(func(*cobra.Command, *updater.Agent) error) func(*cobra.Command, []string) error) *cobra.Command {
	var reboot bool
	cmd := &cobra.Command{Use: "boot", Short: "Boot-time step: health checks, keep or roll back", Args: cobra.NoArgs}
	cmd.Flags().BoolVar(&reboot, "reboot", true, "restart the machine after rolling back the running version")
	cmd.RunE = withAgent(func(cmd *cobra.Command, a *updater.Agent) error {
		if reboot {
			a.Reboot = updater.SystemReboot
		}
		return a.Boot(cmd.Context())
	})
	return cmd
}

// newRunCmd is the daemon loop (internal/updater/run.go). The name "run"
// is what the systemd unit calls.
func newRunCmd(withAgent func(func(*cobra.Command, *updater.Agent) error) func(*cobra.Command, []string) error) *cobra.Command {
	var reboot bool
	cmd := &cobra.Command{Use: "run", Short: "Keep checking for updates and install them (the service)", Args: cobra.NoArgs}
	cmd.Flags().BoolVar(&reboot, "reboot", false, "restart the machine after switching to a new version "+
		"(default: only with the window and fleet-lock strategies; see internal/updater/reboot.go)")
	cmd.RunE = withAgent(func(cmd *cobra.Command, a *updater.Agent) error {
		r := &updater.Runner{Agent: a}
		var flag *bool
		if cmd.Flags().Changed("reboot") {
			flag = &reboot
		}
		if updater.RebootAfterSwitch(a.Cfg.Strategy.Kind, flag) {
			r.Reboot = updater.SystemReboot
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Checking for updates every %s (plus up to %s), strategy %s.\n",
			time.Duration(a.Cfg.Interval), time.Duration(a.Cfg.Jitter), a.Cfg.Strategy.Kind)
		return r.Run(cmd.Context())
	})
	return cmd
}

func printStatus(cmd *cobra.Command, st updater.Status) {
	w := cmd.OutOrStdout()
	show := func(label string, d *updater.DeploymentInfo) {
		if d == nil {
			fmt.Fprintf(w, "%-9s none\n", label+":")
			return
		}
		fmt.Fprintf(w, "%-9s %s (%s)\n", label+":", d.Version, d.Commit)
	}
	show("Current", st.Current)
	show("Previous", st.Previous)
	for c, b := range st.Bad {
		fmt.Fprintf(w, "Bad:      %s (%s)\n", c, b.Reason)
	}
}

func newAgent(ctx context.Context, cfgPath string) (*updater.Agent, error) {
	cfg, err := updater.LoadConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	token := ""
	if cfg.TokenFile != "" {
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("reading the device token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	tr, err := cfg.Transports()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg.Server, token, tr.API)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	verifiers, err := sign.LoadVerifiers(cfg.TrustedKeys)
	if err != nil {
		return nil, fmt.Errorf("loading trusted keys: %w", err)
	}
	var imageKeys [][]byte
	if cfg.Transport == updater.TransportOCI {
		if imageKeys, err = updater.ImageKeys(cfg.TrustedKeys); err != nil {
			return nil, fmt.Errorf("loading trusted keys: %w", err)
		}
	}
	var sys updater.Backend
	switch cfg.Backend {
	case "ostree":
		// Stock `ostree admin` on the real sysroot; the environment passes
		// through, so OSTREE_SYSROOT_DEBUG works on a test sysroot.
		sys, err = ostreeadmin.Open(ctx, cfg.Sysroot, ostreeadmin.Options{})
	default:
		sys, err = sysroot.Open(cfg.Sysroot)
	}
	if err != nil {
		return nil, fmt.Errorf("opening the sysroot: %w", err)
	}
	repo, err := ostree.Create(sys.RepoPath())
	if err != nil {
		return nil, fmt.Errorf("opening the local repository: %w", err)
	}
	return &updater.Agent{
		Cfg:       cfg,
		Client:    c,
		Puller:    &pull.Puller{URLs: cfg.Mirrors, Verifiers: verifiers, HTTP: tr.Repo},
		MetaHTTP:  tr.Meta,
		Sys:       sys,
		Repo:      repo,
		ImageKeys: imageKeys,
	}, nil
}
