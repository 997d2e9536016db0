package main

// mxosctl log show and log verify: the public release transparency log
// (internal/tlogmon). Both need the log's public key (--log-key: the
// verifier key itself, or a file holding it such as the server's
// DATA/log-key.pub), never one the server hands out. verify remembers the
// newest consistent checkpoint in --state and refuses a log that does not
// extend it.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/tlog"
	"github.com/mxos-linux/mxos-update/internal/tlogmon"
)

type logOptions struct {
	key      string
	channels string
	state    string
}

func newLogCmd(r *remote) *cobra.Command {
	var o logOptions
	cmd := &cobra.Command{
		Use:   "log",
		Short: "Read and monitor the public release transparency log",
	}
	cmd.PersistentFlags().StringVar(&o.key, "log-key", envOr("MXOS_LOG_KEY", ""), "the log's public key (name+hash+base64), or a file holding it, e.g. the server's DATA/log-key.pub (env MXOS_LOG_KEY)")
	show := &cobra.Command{
		Use:   "show",
		Short: "List the log's entries in plain words",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := o.monitor(r)
			if err != nil {
				return err
			}
			cp, entries, err := tlogmon.Read(cmd.Context(), opts)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "log %s: %d entries (checkpoint signature verified)\n", cp.Origin, cp.Size)
			for _, l := range entries {
				fmt.Fprintf(out, "%6d  %s\n", l.Index, l.Entry.Describe())
			}
			return nil
		},
	}
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Monitor the log: signature, consistency with the last run, every entry against the repository",
		Long: "verify checks the checkpoint's signature, recomputes the tree from every entry, checks it extends the\n" +
			"checkpoint remembered from the last run (--state), re-derives each release from the public repository,\n" +
			"and reports every commit on a channel that the log does not list. It exits non-zero on any finding.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.verify(cmd.Context(), cmd, r) },
	}
	verify.Flags().StringVar(&o.channels, "channels", envOr("MXOS_CHANNELS", ""), "channel definitions, to map refs to channels (env MXOS_CHANNELS; default ./channels when it exists)")
	verify.Flags().StringVar(&o.state, "state", "", "file remembering the newest verified checkpoint (default $XDG_STATE_HOME/mxos/tlog/ORIGIN/checkpoint)")
	cmd.AddCommand(show, verify)
	return cmd
}

func (o logOptions) monitor(r *remote) (tlogmon.Options, error) {
	key := strings.TrimSpace(o.key)
	if key == "" {
		return tlogmon.Options{}, errors.New("the log's public key is needed: --log-key or MXOS_LOG_KEY (the server writes it to DATA/log-key.pub)")
	}
	if fileExists(key) { // a file holding the key
		b, err := os.ReadFile(key)
		if err != nil {
			return tlogmon.Options{}, fmt.Errorf("--log-key: %w", err)
		}
		key = strings.TrimSpace(string(b))
	}
	v, err := note.NewVerifier(key)
	if err != nil {
		return tlogmon.Options{}, fmt.Errorf("--log-key: not a log public key (name+hash+base64): %w", err)
	}
	tlsCfg, err := client.TLSConfig(r.caFile)
	if err != nil {
		return tlogmon.Options{}, fmt.Errorf("--ca-file or MXOS_CA_FILE: %w", err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, Proxy: http.ProxyFromEnvironment}}
	return tlogmon.Options{Server: r.server, HTTP: hc, Verifier: v}, nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func (o logOptions) verify(ctx context.Context, cmd *cobra.Command, r *remote) error {
	opts, err := o.monitor(r)
	if err != nil {
		return err
	}
	chDir := o.channels
	if chDir == "" && fileExists("channels") {
		chDir = "channels"
	}
	if chDir != "" {
		if opts.Channels, err = channel.LoadDir(chDir); err != nil {
			return fmt.Errorf("loading channel definitions (--channels): %w", err)
		}
	}
	state := o.state
	if state == "" {
		if state, err = defaultLogState(opts.Verifier.Name()); err != nil {
			return err
		}
	}
	remembered, err := os.ReadFile(state)
	if errors.Is(err, os.ErrNotExist) {
		remembered = nil
	} else if err != nil {
		return fmt.Errorf("reading the remembered checkpoint: %w", err)
	}
	rep, err := tlogmon.Verify(ctx, opts, remembered)
	if err != nil {
		if errors.Is(err, tlog.ErrFork) || errors.Is(err, tlog.ErrShrunk) {
			return fmt.Errorf("SECURITY ERROR: %w", err)
		}
		return err
	}
	if err := os.MkdirAll(filepath.Dir(state), 0o700); err != nil {
		return fmt.Errorf("remembering the checkpoint: %w", err)
	}
	if err := writeFileDurable(state, rep.Checkpoint.Raw); err != nil { // release.go
		return fmt.Errorf("remembering the checkpoint: %w", err)
	}
	out := cmd.OutOrStdout()
	fmt.Fprintf(out, "log %s: %d entries, checkpoint signature verified, consistent with the last run\n", rep.Checkpoint.Origin, rep.Checkpoint.Size)
	for _, p := range rep.Problems {
		fmt.Fprintf(out, "NOT IN THE LOG: %s\n", p)
	}
	if n := len(rep.Problems); n > 0 {
		return fmt.Errorf("%d finding(s): the repository does not match the public log", n)
	}
	fmt.Fprintln(out, "every release re-derived from the repository; every commit on a channel is in the log")
	return nil
}

// defaultLogState is $XDG_STATE_HOME/mxos/tlog/ORIGIN/checkpoint.
func defaultLogState(origin string) (string, error) {
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no home directory for the remembered checkpoint: give --state: %w", err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	safe := strings.Map(func(c rune) rune {
		if c == '/' || c == '\\' || c < ' ' {
			return '_'
		}
		return c
	}, origin)
	return filepath.Join(base, "mxos", "tlog", safe, "checkpoint"), nil
}
