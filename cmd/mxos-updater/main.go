// Command mxos-updater is the device agent of MxOS Update:
//
//	mxos-updater status     show the installed versions
//	mxos-updater check      ask the server whether an update is offered
//	mxos-updater upgrade    download, verify and install an offered update
//	                        (--from DIR: from an update bundle, no network)
//	mxos-updater rollback   go back to the previous version
//	mxos-updater unmark V   let a version rolled back from be installed again
//	mxos-updater boot       boot-time step: count the boot, run health checks,
//	                        keep the update or roll it back
//	mxos-updater run        the daemon: check every interval (plus jitter),
//	                        install per strategy, keep going after errors,
//	                        stop on SIGTERM/SIGINT
//
// Exit codes of `check` (for scripts; rpm-ostree's convention for 77):
//
//	0   an update is offered and passed the device's own checks
//	77  no update
//	3   an update is offered but this machine refuses it (see the message)
//	1   anything else: no answer from the server, a bad configuration
//
// Every command prints in the language of LC_ALL, LC_MESSAGES or LANG
// (es-MX or English; internal/i18n). `status --json` and the exit codes
// are the same in every language.
//
// deploy/systemd has the units: mxos-updater.service runs `run`,
// mxos-updater-boot.service runs `boot` once per boot.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/buildinfo"
	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/i18n"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
	"github.com/mxos-linux/mxos-update/internal/sysroot/ostreeadmin"
	"github.com/mxos-linux/mxos-update/internal/updater"
)

const defaultConfig = "/etc/mxos-updater/config.yaml"

// The `ostree` backend installs an update with one ostree admin deploy.
var _ updater.DeploySwitcher = (*ostreeadmin.Sysroot)(nil)

// Exit codes of `check`.
const (
	exitNoUpdate = 77
	exitRefused  = 3
)

// exitCode is an error, or a plain result, that ends the process with a
// given status; its message (if any) is already printed.
type exitCode struct {
	code int
	err  error
}

func (e *exitCode) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitCode) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	os.Exit(report(os.Stderr, i18n.FromEnv(os.Getenv), err))
}

// report prints err (in p's language) and returns the exit status.
func report(w io.Writer, p *i18n.Printer, err error) int {
	if err == nil {
		return 0
	}
	code := 1
	var ec *exitCode
	if errors.As(err, &ec) {
		code = ec.code
		if ec.err == nil {
			return code
		}
	}
	fmt.Fprintln(w, "mxos-updater:", p.Error(err))
	return code
}

func newRootCmd() *cobra.Command {
	var cfgPath string
	p := i18n.FromEnv(os.Getenv)
	root := &cobra.Command{
		Use:           "mxos-updater",
		Short:         "Keeps this MxOS machine up to date",
		Version:       buildinfo.Version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&cfgPath, "config", defaultConfig, "configuration file")
	var statusJSON bool
	status := &cobra.Command{Use: "status [--json]", Short: "Show the installed versions: booted, pending, staged, previous", Args: cobra.NoArgs}
	status.Flags().BoolVar(&statusJSON, "json", false, "print JSON")

	withAgent := func(fn func(cmd *cobra.Command, a *updater.Agent) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			a, err := newAgent(cmd.Context(), cfgPath)
			if err != nil {
				return err
			}
			a.Out = cmd.OutOrStdout()
			a.Lang = p
			if p := newProgress(cmd.OutOrStdout()); p != nil {
				a.Puller.Progress = p.count
			}
			return fn(cmd, a)
		}
	}
	root.AddCommand(
		status,
		&cobra.Command{Use: "check", Short: "Ask the server whether an update is offered (exit status 0: yes, 77: no)", Args: cobra.NoArgs,
			RunE: withAgent(func(cmd *cobra.Command, a *updater.Agent) error {
				resp, err := a.Check(cmd.Context())
				if errors.Is(err, updater.ErrRefused) {
					return &exitCode{code: exitRefused, err: err}
				}
				if err != nil {
					return err
				}
				if resp.Update && resp.Target != nil {
					p.Say(cmd.OutOrStdout(), "Update available: version %s (%s).", resp.Target.Version, p.Reason(resp.Reason))
					return nil
				}
				p.Say(cmd.OutOrStdout(), "No update (%s).", p.Reason(resp.Reason))
				return &exitCode{code: exitNoUpdate}
			})},
		newUpgradeCmd(withAgent),
		&cobra.Command{Use: "rollback", Short: "Go back to the previous version", Args: cobra.NoArgs,
			RunE: withAgent(func(cmd *cobra.Command, a *updater.Agent) error {
				return a.Rollback(cmd.Context())
			})},
		&cobra.Command{Use: "unmark VERSION|COMMIT", Short: "Let a version this machine rolled back from be installed again", Args: cobra.ExactArgs(1),
			RunE: withAgent(func(cmd *cobra.Command, a *updater.Agent) error {
				c, err := a.Unmark(cmd.Context(), cmd.Flags().Arg(0))
				if err != nil {
					return err
				}
				p.Say(cmd.OutOrStdout(), "Commit %s may be installed again.", c)
				return nil
			})},
		newBootCmd(withAgent),
		newRunCmd(p, withAgent),
	)
	status.RunE = withAgent(func(cmd *cobra.Command, a *updater.Agent) error {
		st, err := a.Status(cmd.Context())
		if err != nil {
			return err
		}
		if statusJSON {
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(st)
		}
		printStatus(cmd.OutOrStdout(), p, st)
		return nil
	})
	i18n.Localize(root, p)
	return root
}

// newUpgradeCmd installs an offered update, or with --from DIR the one
// in an update bundle (a USB stick; internal/updater/bundle.go), with no
// network.
func newUpgradeCmd(withAgent func(func(*cobra.Command, *updater.Agent) error) func(*cobra.Command, []string) error) *cobra.Command {
	var from string
	cmd := &cobra.Command{Use: "upgrade [--from DIR]", Short: "Download and install an offered update", Args: cobra.NoArgs}
	cmd.Flags().StringVar(&from, "from", "", "install from the update bundle in DIR (made by mxosctl bundle create), without the network")
	cmd.RunE = withAgent(func(cmd *cobra.Command, a *updater.Agent) error {
		var err error
		if from != "" {
			_, err = a.UpgradeFrom(cmd.Context(), from)
		} else {
			_, err = a.Upgrade(cmd.Context())
		}
		return err
	})
	return cmd
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
func newRunCmd(p *i18n.Printer, withAgent func(func(*cobra.Command, *updater.Agent) error) func(*cobra.Command, []string) error) *cobra.Command {
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
		p.Say(cmd.OutOrStdout(), "Checking for updates every %s (plus up to %s), strategy %s.",
			time.Duration(a.Cfg.Interval), time.Duration(a.Cfg.Jitter), a.Cfg.Strategy.Kind)
		return r.Run(cmd.Context())
	})
	return cmd
}

// printStatus prints the versions on this machine; the marks say what
// each is (Status's DeploymentInfo).
func printStatus(w io.Writer, p *i18n.Printer, st updater.Status) {
	show := func(label string, d *updater.DeploymentInfo) {
		if d == nil {
			fmt.Fprintf(w, "%-9s %s\n", label, p.T("none"))
			return
		}
		fmt.Fprintf(w, "%-9s %s (%s)\n", label, d.Version, d.Commit)
	}
	show(p.T("Current:"), st.Current)
	show(p.T("Previous:"), st.Previous)
	if len(st.Deployments) > 0 {
		p.Say(w, "Versions on this machine (newest last):")
	}
	for _, d := range st.Deployments {
		var marks []string
		for _, m := range []struct {
			on   bool
			text string
		}{
			{d.Booted, p.T("booted (running now)")},
			{d.Pending, p.T("pending: restart to use it")},
			{d.Default && !d.Pending && !d.Booted, p.T("default at the next restart")},
			{d.Staged, p.T("staged: switched on later")},
			{d.Previous, p.T("previous (rollback target)")},
			{d.Bad, p.T("rolled back; not installed again")},
		} {
			if m.on {
				marks = append(marks, m.text)
			}
		}
		star := " "
		if d.Booted {
			star = "*"
		}
		version := d.Version
		if version == "" {
			version = "?"
		}
		fmt.Fprintf(w, "%s %-12s %.12s  %s\n", star, version, d.Commit, strings.Join(marks, ", "))
	}
	for c, b := range st.Bad {
		fmt.Fprintf(w, "%s %s (%s)\n", p.T("Rolled back from:"), c, b.Reason)
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
			return nil, i18n.Errorf("reading the device token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	tr, err := cfg.Transports()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg.Server, token, tr.API)
	if err != nil {
		return nil, i18n.Errorf("server: %w", err)
	}
	verifiers, err := sign.LoadVerifiers(cfg.TrustedKeys)
	if err != nil {
		return nil, i18n.Errorf("loading trusted keys: %w", err)
	}
	var imageKeys [][]byte
	if cfg.Transport == updater.TransportOCI {
		if imageKeys, err = updater.ImageKeys(cfg.TrustedKeys); err != nil {
			return nil, i18n.Errorf("loading trusted keys: %w", err)
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
		return nil, i18n.Errorf("opening the sysroot: %w", err)
	}
	repo, err := ostree.Create(sys.RepoPath())
	if err != nil {
		return nil, i18n.Errorf("opening the local repository: %w", err)
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
