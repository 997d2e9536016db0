package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/server"
)

// globalOptions are shared by the root command and its subcommands.
type globalOptions struct {
	dataDir   string
	database  string
	channels  string
	logLevel  string
	logFormat string
}

// newRootCmd builds the mxos-server command. Running it without a
// subcommand starts the server; subcommands are added here.
func newRootCmd() *cobra.Command {
	var g globalOptions
	var listen string
	cmd := &cobra.Command{
		Use:           "mxos-server",
		Short:         "Serve MxOS updates",
		Long:          "mxos-server serves the MxOS OSTree repository from DIR/repo at /repo/.",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServer(cmd.Context(), cmd.OutOrStdout(), g, listen)
		},
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&g.dataDir, "data", envOr("MXOS_DATA", "./mxos-data"), "data directory (env MXOS_DATA)")
	pf.StringVar(&g.database, "database", envOr("MXOS_DATABASE", ""), "metadata database: empty for SQLite in the data directory, or postgres://… (env MXOS_DATABASE)")
	pf.StringVar(&g.channels, "channels", envOr("MXOS_CHANNELS", ""), "directory of channel definitions (env MXOS_CHANNELS; default ./channels when it exists)")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	pf.StringVar(&g.logFormat, "log-format", "console", "log format: console or json")
	cmd.Flags().StringVar(&listen, "listen", envOr("MXOS_LISTEN", server.DefaultListen), "address to listen on (env MXOS_LISTEN)")
	cmd.AddCommand(newTokenCmd(&g))
	return cmd
}

func runServer(ctx context.Context, out io.Writer, g globalOptions, listen string) error {
	log, err := newLogger(g.logLevel, g.logFormat)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	if err := prepareData(g.dataDir); err != nil {
		return err
	}
	cfg := server.Config{DataDir: g.dataDir, Listen: listen, Logger: log}
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
	}
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	defer srv.Close()

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", listen, err)
	}
	repoDir, err := filepath.Abs(filepath.Join(g.dataDir, "repo"))
	if err != nil {
		repoDir = filepath.Join(g.dataDir, "repo")
	}
	url := "http://" + publicHostPort(ln.Addr()) + "/repo"
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

func envOr(key, fallback string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return fallback
}
