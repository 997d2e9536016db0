package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxos-linux/mxos-update/internal/buildinfo"
	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/server"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/tlogstore"
)

// globalOptions are shared by the root command and its subcommands.
type globalOptions struct {
	dataDir   string
	database  string
	channels  string
	logLevel  string
	logFormat string
	repoLoops string
	cpuProf   string
	storage   string // --storage: the storage file (storage.go)
}

// newRootCmd builds the mxos-server command. Running it without a
// subcommand starts the server; subcommands are added here.
func newRootCmd() *cobra.Command {
	var g globalOptions
	var listen string
	var keys keyOptions
	var registry bool
	var tlsOpts tlsOptions
	cmd := &cobra.Command{
		Use:           "mxos-server",
		Short:         "Serve MxOS updates",
		Version:       buildinfo.Version(),
		Long:          "mxos-server serves the MxOS OSTree repository from DIR/repo at /repo/.",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServer(cmd.Context(), cmd.OutOrStdout(), g, listen, keys, registry, tlsOpts)
		},
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&g.dataDir, "data", envOr("MXOS_DATA", "./mxos-data"), "data directory (env MXOS_DATA)")
	pf.StringVar(&g.database, "database", envOr("MXOS_DATABASE", ""), "metadata database: empty for SQLite in the data directory, or postgres://… (env MXOS_DATABASE)")
	pf.StringVar(&g.channels, "channels", envOr("MXOS_CHANNELS", ""), "directory of channel definitions (env MXOS_CHANNELS; default ./channels when it exists)")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	pf.StringVar(&g.cpuProf, "cpuprofile", "", "write a CPU profile of the server to this file (for benchmarks)")
	_ = pf.MarkHidden("cpuprofile")
	pf.StringVar(&g.logFormat, "log-format", "console", "log format: console or json")
	cmd.Flags().StringVar(&g.storage, "storage", envOr("MXOS_STORAGE", ""), "storage file: kind dir (default, everything in --data) or s3 (registry blobs and the served repository in a bucket) (env MXOS_STORAGE)")
	cmd.Flags().StringVar(&g.repoLoops, "repo-loops", envOr("MXOS_REPO_LOOPS", "auto"), "event loops serving repository GETs: auto (half the CPUs, none on one CPU or with --storage s3), off, or a number (env MXOS_REPO_LOOPS)")
	cmd.Flags().StringVar(&listen, "listen", envOr("MXOS_LISTEN", server.DefaultListen), "address to listen on (env MXOS_LISTEN)")
	cmd.Flags().StringVar(&keys.release, "release-keys", envOr("MXOS_RELEASE_KEYS", ""), "directory of the release public keys published commits must be signed with (env MXOS_RELEASE_KEYS; default ./keys when it holds keys)")
	cmd.Flags().StringVar(&keys.online, "online-keys", envOr("MXOS_ONLINE_KEYS", ""), "directory of the online secret keys that sign the summary (env MXOS_ONLINE_KEYS; make them with mxosctl keys generate --dir)")
	cmd.Flags().StringVar(&keys.tlogKey, "tlog-key", envOr("MXOS_TLOG_KEY", ""), "the transparency log's signing key, generated (mode 0600, public key in FILE.pub) when missing (env MXOS_TLOG_KEY; default DIR/log-key)")
	cmd.Flags().StringVar(&keys.tlogOrigin, "tlog-origin", envOr("MXOS_TLOG_ORIGIN", tlogstore.DefaultOrigin), "the transparency log's name, used when its key is generated (env MXOS_TLOG_ORIGIN)")
	cmd.Flags().StringVar(&keys.tlogWitnessPolicy, "tlog-witness-policy", envOr("MXOS_TLOG_WITNESS_POLICY", ""), "a C2SP tlog-policy file naming the witnesses that must cosign each log checkpoint before it is published (env MXOS_TLOG_WITNESS_POLICY)")
	cmd.Flags().BoolVar(&registry, "registry", envOr("MXOS_REGISTRY", "true") == "true", "serve the OCI registry at /v2/ from DIR/oci (env MXOS_REGISTRY; pushing needs a release token)")
	cmd.Flags().StringVar(&tlsOpts.cert, "tls-cert", envOr("MXOS_TLS_CERT", ""), "PEM certificate (chain) to serve HTTPS with (env MXOS_TLS_CERT)")
	cmd.Flags().StringVar(&tlsOpts.key, "tls-key", envOr("MXOS_TLS_KEY", ""), "PEM private key of --tls-cert (env MXOS_TLS_KEY)")
	cmd.Flags().BoolVar(&tlsOpts.insecureHTTP, "insecure-http", envOr("MXOS_INSECURE_HTTP", "") == "true",
		"serve plain HTTP on a non-loopback address, for a TLS-terminating proxy in front (env MXOS_INSECURE_HTTP)")
	cmd.AddCommand(newTokenCmd(&g))
	cmd.AddCommand(newMirrorCmd(&g))
	return cmd
}

// keyOptions name the key directories of remote publishing.
type keyOptions struct {
	release, online     string
	tlogKey, tlogOrigin string // tlog.go
	tlogWitnessPolicy   string // tlog.go
}

// load returns the trusted release keys and the online signers. An
// explicitly named directory must load; without one, ./keys is used when
// it holds public keys. Missing either set disables publishing (the API
// says so) but not the server.
func (k keyOptions) load(log *zap.Logger) ([]sign.Verifier, []sign.Signer, error) {
	var (
		trusted []sign.Verifier
		online  []sign.Signer
		err     error
	)
	switch {
	case k.release != "":
		if trusted, err = sign.LoadVerifiers(k.release); err != nil {
			return nil, nil, fmt.Errorf("loading release keys (--release-keys): %w", err)
		}
	default:
		trusted, _ = sign.LoadVerifiers("keys")
	}
	if k.online != "" {
		if online, err = sign.LoadSigners(k.online); err != nil {
			return nil, nil, fmt.Errorf("loading online keys (--online-keys): %w", err)
		}
	}
	switch {
	case len(trusted) == 0:
		log.Warn("no release public keys (--release-keys): publishing is disabled")
	case len(online) == 0:
		log.Warn("no online keys (--online-keys): publishing is disabled")
	}
	return trusted, online, nil
}

// openMetadata opens DATA/metadata for signed channel metadata when it has
// been initialised (mxosctl metadata init, then copied there). Without it,
// or without the online key that must sign timestamps and rollouts, the
// feature is off and the server says so; a repository that is initialised
// but cannot be opened is an error, not a silent downgrade.
func openMetadata(dataDir, onlineDir string, log *zap.Logger) (*publish.Repo, error) {
	dir := filepath.Join(dataDir, "metadata")
	if _, err := os.Stat(filepath.Join(dir, "root.json")); errors.Is(err, fs.ErrNotExist) {
		log.Info("signed channel metadata is off: " + dir + " is not initialised (see mxosctl metadata init)")
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("signed channel metadata: %w", err)
	}
	if onlineDir == "" {
		log.Warn("signed channel metadata is off: " + dir + " is initialised but no --online-keys sign it")
		return nil, nil
	}
	signers, err := publish.LoadEd25519Signers(onlineDir)
	if err != nil {
		return nil, fmt.Errorf("signed channel metadata: online keys (--online-keys): %w", err)
	}
	repo, err := publish.Open(dir, signers, publish.Options{})
	if err != nil {
		return nil, fmt.Errorf("signed channel metadata: %w", err)
	}
	log.Info("serving signed channel metadata", zap.String("dir", dir))
	return repo, nil
}

func runServer(ctx context.Context, out io.Writer, g globalOptions, listen string, keys keyOptions, registry bool, tlsOpts tlsOptions) error {
	log, err := newLogger(g.logLevel, g.logFormat)
	if err != nil {
		return err
	}
	// Before anything is opened: a refused address changes nothing.
	if err := tlsOpts.checkListen(listen); err != nil {
		return err
	}
	var tlsCfg *tls.Config
	if tlsOpts.enabled() {
		if tlsCfg, err = tlsOpts.serverTLS(); err != nil {
			return err
		}
	}
	defer func() { _ = log.Sync() }()
	if g.cpuProf != "" {
		f, err := os.Create(g.cpuProf)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}

	if err := prepareData(g.dataDir); err != nil {
		return err
	}
	cfg := server.Config{DataDir: g.dataDir, Listen: listen, Logger: log, Registry: registry}
	if cfg.RepoLoops, err = parseRepoLoops(g.repoLoops); err != nil {
		return err
	}
	if err := openStorage(ctx, g.storage, &cfg, log); err != nil { // storage.go
		return err
	}
	if _, err := server.Recover(cfg.DataDir, cfg.RegistryOptions, time.Now(), log); err != nil {
		return err
	}
	chDir := g.channels
	if chDir == "" {
		if st, err := os.Stat("channels"); err == nil && st.IsDir() {
			chDir = "channels"
		}
	}
	if chDir == "" {
		// A plain repository server (a school's LAN mirror) needs no API.
		log.Warn("no channel definitions (--channels): serving the repository only, without the update API")
	} else {
		set, err := channel.LoadDir(chDir)
		if err != nil {
			return fmt.Errorf("loading channel definitions (--channels): %w", err)
		}
		store, err := db.Open(ctx, g.database, g.dataDir)
		if err != nil {
			return fmt.Errorf("opening the metadata database: %w", err)
		}
		defer store.Close()
		cfg.Store, cfg.Channels = store, set
		if cfg.TrustedKeys, cfg.OnlineSigners, err = keys.load(log); err != nil {
			return err
		}
		if cfg.RepoStore != nil && keys.online != "" {
			// Replicas sharing the bucket verify each other's summaries.
			if cfg.OnlineVerifiers, err = sign.LoadVerifiers(keys.online); err != nil {
				log.Warn("no public online keys in --online-keys: releases another server put in the bucket cannot be verified here, so publishing through this server fails once there are any", zap.Error(err))
			}
		}
		if cfg.Metadata, err = openMetadata(g.dataDir, keys.online, log); err != nil {
			return err
		}
		if _, err := server.RecoverReleases(ctx, cfg.DataDir, store, set, cfg.OnlineSigners, time.Now(), log); err != nil {
			return err
		}
		if cfg.TransparencyLog, err = keys.openTransparencyLog(ctx, g.dataDir, log); err != nil { // tlog.go
			return err
		}
		defer closeTransparencyLog(cfg.TransparencyLog, log)
	}
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	defer srv.Close()
	// With --storage s3, the bucket gets what was published while the
	// server was down (a no-op otherwise).
	if err := srv.MirrorRepo(ctx); err != nil {
		return err
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", listen, err)
	}
	if err := tlsOpts.checkBound(ln.Addr()); err != nil {
		ln.Close()
		return err
	}
	scheme := "http://"
	if tlsCfg != nil {
		ln, scheme = tls.NewListener(ln, tlsCfg), "https://"
	} else if tlsOpts.insecureHTTP {
		log.Warn("serving plain HTTP (--insecure-http): only behind a TLS-terminating proxy", zap.String("listen", ln.Addr().String()))
	}
	repoDir, err := filepath.Abs(filepath.Join(g.dataDir, "repo"))
	if err != nil {
		repoDir = filepath.Join(g.dataDir, "repo")
	}
	url := scheme + publicHostPort(ln.Addr()) + "/repo"
	fmt.Fprintf(out, "Serving %s; add it with: ostree remote add NAME %s\n", repoDir, url)

	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	log.Info("server stopped")
	return nil
}

// publicHostPort turns a listener address into one a client can dial:
// a wildcard address becomes the machine's host name.
func publicHostPort(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	host := tcp.IP.String()
	if tcp.IP == nil || tcp.IP.IsUnspecified() {
		host = "localhost"
		if name, err := os.Hostname(); err == nil && name != "" {
			host = name
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}

// newLogger builds the process logger, writing to stderr.
func newLogger(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("invalid log level %q: use debug, info, warn or error", level)
	}
	var enc zapcore.Encoder
	switch format {
	case "console":
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	case "json":
		ec := zap.NewProductionEncoderConfig()
		ec.TimeKey = "time"
		ec.EncodeTime = zapcore.RFC3339NanoTimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	default:
		return nil, fmt.Errorf("invalid log format %q: use console or json", format)
	}
	sink := zapcore.Lock(os.Stderr)
	return zap.New(zapcore.NewCore(enc, sink, lvl), zap.ErrorOutput(sink)), nil
}

// parseRepoLoops reads --repo-loops: "auto" is 0, "off" is -1
// (server.Config.RepoLoops).
func parseRepoLoops(v string) (int, error) {
	switch v {
	case "auto", "":
		return 0, nil
	case "off", "0":
		return -1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 1024 {
		return 0, fmt.Errorf("--repo-loops %q: want auto, off or a number of loops", v)
	}
	return n, nil
}

func envOr(key, fallback string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return fallback
}
