package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/mirror"
	"github.com/mxos-linux/mxos-update/internal/server"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// mirrorOptions are the flags of `mxos-server mirror`.
type mirrorOptions struct {
	upstream    string
	channels    []string
	interval    time.Duration
	once        bool
	trustedRoot string
	trustedKeys string
	listen      string
	tls         tlsOptions
}

// newMirrorCmd is `mxos-server mirror`: a school's verified copy of chosen
// channels (internal/mirror), synced every --interval and served
// read-only at /repo/ and /metadata/, or synced once with --once.
func newMirrorCmd(g *globalOptions) *cobra.Command {
	var o mirrorOptions
	cmd := &cobra.Command{
		Use:   "mirror --upstream URL --data DIR",
		Short: "Keep and serve a verified copy of chosen channels (a school mirror)",
		Long: "mirror copies the signed channel metadata, the summary, the commits of the chosen channels and their static deltas " +
			"from the upstream server into DIR, checking them as a device does, and serves them at /repo/ and /metadata/. " +
			"Machines list it first in mirrors; they trust it no more than any other mirror.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMirror(cmd.Context(), cmd.OutOrStdout(), *g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.upstream, "upstream", envOr("MXOS_UPSTREAM", ""), "the upstream server's URL, as machines have it in server: (env MXOS_UPSTREAM)")
	f.StringArrayVar(&o.channels, "channel", nil, "a channel to keep (repeatable; default every channel)")
	f.DurationVar(&o.interval, "interval", time.Hour, "how often to sync while serving")
	f.BoolVar(&o.once, "once", false, "sync once and exit, without serving (for scripts and cron)")
	f.StringVar(&o.trustedRoot, "trusted-root", envOr("MXOS_TRUSTED_ROOT", ""), "the root.json the school's machines ship (their trusted_root; env MXOS_TRUSTED_ROOT)")
	f.StringVar(&o.trustedKeys, "trusted-keys", envOr("MXOS_TRUSTED_KEYS", ""), "directory of the release public keys (the machines' trusted_keys; env MXOS_TRUSTED_KEYS)")
	f.StringVar(&o.listen, "listen", envOr("MXOS_LISTEN", server.DefaultListen), "address to serve on (env MXOS_LISTEN)")
	f.StringVar(&o.tls.cert, "tls-cert", envOr("MXOS_TLS_CERT", ""), "PEM certificate (chain) to serve HTTPS with (env MXOS_TLS_CERT)")
	f.StringVar(&o.tls.key, "tls-key", envOr("MXOS_TLS_KEY", ""), "PEM private key of --tls-cert (env MXOS_TLS_KEY)")
	f.BoolVar(&o.tls.insecureHTTP, "insecure-http", envOr("MXOS_INSECURE_HTTP", "") == "true",
		"serve plain HTTP on a non-loopback address (env MXOS_INSECURE_HTTP; a mirror serves only signed files, which machines verify)")
	return cmd
}

// config checks the flags and loads the trust anchors.
func (o mirrorOptions) config(dataDir string, log *zap.Logger) (mirror.Config, error) {
	var cfg mirror.Config
	if o.upstream == "" {
		return cfg, errors.New("--upstream is required: the upstream server's URL")
	}
	if _, err := mirror.BaseURL(o.upstream); err != nil {
		return cfg, fmt.Errorf("--upstream: %w", err)
	}
	if o.trustedRoot == "" {
		return cfg, errors.New("--trusted-root is required: the root.json the school's machines ship")
	}
	if o.trustedKeys == "" {
		return cfg, errors.New("--trusted-keys is required: the release public keys the school's machines ship")
	}
	if !o.once && o.interval <= 0 {
		return cfg, fmt.Errorf("--interval %s: must be positive", o.interval)
	}
	for _, c := range o.channels {
		if c == "" || strings.ContainsAny(c, "/ ") {
			return cfg, fmt.Errorf("--channel %q: not a channel name", c)
		}
	}
	root, err := os.ReadFile(o.trustedRoot)
	if err != nil {
		return cfg, fmt.Errorf("--trusted-root: %w", err)
	}
	if err := mirror.CheckRoot(root); err != nil {
		return cfg, fmt.Errorf("--trusted-root %s: %w", o.trustedRoot, err)
	}
	keys, err := sign.LoadVerifiers(o.trustedKeys)
	if err != nil {
		return cfg, fmt.Errorf("--trusted-keys: %w", err)
	}
	return mirror.Config{Upstream: o.upstream, Dir: dataDir, Channels: o.channels, TrustedRoot: root, ReleaseKeys: keys, Log: log}, nil
}

func runMirror(ctx context.Context, out io.Writer, g globalOptions, o mirrorOptions) error {
	log, err := newLogger(g.logLevel, g.logFormat)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	if !o.once {
		// Before anything is read: a refused address changes nothing.
		if err := o.tls.checkListen(o.listen); err != nil {
			return err
		}
	}
	cfg, err := o.config(g.dataDir, log)
	if err != nil {
		return err
	}
	if o.once {
		res, err := mirror.Sync(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, describe(res))
		return nil
	}
	var tlsCfg *tls.Config
	if o.tls.enabled() {
		if tlsCfg, err = o.tls.serverTLS(); err != nil {
			return err
		}
	}
	if _, err := mirror.Prepare(g.dataDir); err != nil {
		return err
	}
	srv, err := server.New(server.Config{DataDir: g.dataDir, Listen: o.listen, Logger: log,
		MetadataDir: filepath.Join(g.dataDir, mirror.MetadataDir)})
	if err != nil {
		return err
	}
	defer srv.Close()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", o.listen, err)
	}
	if err := o.tls.checkBound(ln.Addr()); err != nil {
		ln.Close()
		return err
	}
	scheme := "http://"
	if tlsCfg != nil {
		ln, scheme = tls.NewListener(ln, tlsCfg), "https://"
	}
	fmt.Fprintf(out, "Mirroring %s; machines list %s%s/repo first in mirrors\n", o.upstream, scheme, publicHostPort(ln.Addr()))

	go syncLoop(ctx, cfg, o.interval, log)
	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	log.Info("mirror stopped")
	return nil
}

// syncLoop syncs now and then every interval until ctx ends. A failed
// sync changes nothing served; it is logged and retried at the next tick.
func syncLoop(ctx context.Context, cfg mirror.Config, interval time.Duration, log *zap.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var expires time.Time // of the copy served, once a sync succeeded
	for {
		res, err := mirror.Sync(ctx, cfg)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && expires.IsZero():
			log.Warn("sync failed; serving what the data directory holds", zap.Error(err))
		case err != nil:
			log.Warn("sync failed; still serving the last verified copy, which machines refuse after it expires",
				zap.Time("expires", expires), zap.Error(err))
		default:
			expires = res.Expires
			log.Info(describe(res), zap.Time("expires", expires))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// describe says what a sync left the mirror serving.
func describe(res *mirror.Result) string {
	refs := make([]string, 0, len(res.Refs))
	for r, c := range res.Refs {
		refs = append(refs, fmt.Sprintf("%s at %.12s", r, c))
	}
	sort.Strings(refs)
	left := ""
	if n := len(res.DeltaErrors); n > 0 {
		left = fmt.Sprintf(" (%d left out: %v)", n, errors.Join(res.DeltaErrors...))
	}
	return fmt.Sprintf("Synced: %s; %d static deltas%s; channel metadata timestamp version %d",
		strings.Join(refs, ", "), res.Deltas, left, res.Metadata)
}
