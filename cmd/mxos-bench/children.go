package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/server"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// The hidden child subcommands run our code in a process of its own, the
// way mxos-server and mxosctl run it: the same library calls with the same
// defaults, plus an optional CPU profile.

// startProfile starts a CPU profile into path ("" for none) and returns
// the function that stops it.
func startProfile(path string) (func() error, error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		return nil
	}, nil
}

// profiledChild is a hidden child subcommand whose run is wrapped in the
// CPU profile its --cpuprofile flag names.
func profiledChild(use, short string, args cobra.PositionalArgs, run func(cmd *cobra.Command, args []string) error) *cobra.Command {
	var profile string
	cmd := &cobra.Command{
		Use:    use,
		Short:  short,
		Hidden: true,
		Args:   args,
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			stop, err := startProfile(profile)
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, stop()) }()
			return run(cmd, args)
		},
	}
	cmd.Flags().StringVar(&profile, "cpuprofile", "", "write a CPU profile here")
	return cmd
}

// childLogger logs warnings and errors to stderr, like the daemons do at
// their default level (request logs are debug-only).
func childLogger() *zap.Logger {
	ec := zap.NewDevelopmentEncoderConfig()
	ec.TimeKey = ""
	return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(ec), zapcore.Lock(os.Stderr), zapcore.WarnLevel))
}

// serveAndAnnounce listens, prints the address as the first line of
// stdout (the parent reads it) and serves until the command is cancelled.
func serveAndAnnounce(cmd *cobra.Command, srv *server.Server, listen string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(cmd.Context(), "tcp", listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", listen, err)
	}
	fmt.Fprintln(cmd.OutOrStdout(), ln.Addr().String())
	if err := srv.Serve(cmd.Context(), ln); err != nil {
		return fmt.Errorf("%s: %w", cmd.Name(), err)
	}
	return nil
}

// newPublishChildCmd is `mxosctl publish`: the same calls with the same
// defaults (no owner override, xattrs kept, special files refused). The
// publish benchmark runs it instead of mxosctl only with --cpuprofile.
func newPublishChildCmd() *cobra.Command {
	var data, keys, ref, version string
	cmd := profiledChild("publish-child --data DIR --keys KEYDIR --ref REF --version V SOURCE", "Run our publisher as a benchmark child (internal)", cobra.ExactArgs(1), func(cmd *cobra.Command, args []string) (err error) {
		signers, err := sign.LoadSigners(keys)
		if err != nil {
			return fmt.Errorf("publish-child: %w", err)
		}
		repo, err := ostree.Create(filepath.Join(data, "repo"))
		if err != nil {
			return fmt.Errorf("publish-child: %w", err)
		}
		p := &release.Publisher{Repo: repo, Signers: signers, Log: childLogger()}
		res, err := p.Publish(cmd.Context(), release.Request{Ref: ref, Version: version, Source: args[0]})
		if err != nil {
			return fmt.Errorf("publish-child: %w", err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Published %s %s as commit %s.\n", ref, version, res.Commit)
		return nil
	})
	f := cmd.Flags()
	f.StringVar(&data, "data", "", "data directory")
	f.StringVar(&keys, "keys", "", "directory with the signing keys")
	f.StringVar(&ref, "ref", "", "ref to publish on")
	f.StringVar(&version, "version", "", "release version")
	return cmd
}

// newCheckChildCmd is mxos-server with the update API: the store in DATA
// (or --database), the channel definitions in CHANNELS and, with
// --online-keys, the signed channel metadata in DATA/metadata, as
// runServer sets them up.
func newCheckChildCmd() *cobra.Command {
	var data, channels, listen, database, onlineKeys string
	cmd := profiledChild("check-child", "Run our server with the update API as a benchmark child (internal)", cobra.NoArgs, func(cmd *cobra.Command, _ []string) (err error) {
		log := childLogger()
		set, err := channel.LoadDir(channels)
		if err != nil {
			return fmt.Errorf("check-child: loading channel definitions: %w", err)
		}
		store, err := db.Open(cmd.Context(), database, data)
		if err != nil {
			return fmt.Errorf("check-child: %w", err)
		}
		defer func() { err = errors.Join(err, store.Close()) }()
		cfg := server.Config{DataDir: data, Listen: listen, Logger: log, Store: store, Channels: set}
		if onlineKeys != "" {
			signers, err := publish.LoadEd25519Signers(onlineKeys)
			if err != nil {
				return fmt.Errorf("check-child: online keys: %w", err)
			}
			if cfg.Metadata, err = publish.Open(filepath.Join(data, "metadata"), signers, publish.Options{}); err != nil {
				return fmt.Errorf("check-child: signed channel metadata: %w", err)
			}
		}
		srv, err := server.New(cfg)
		if err != nil {
			return fmt.Errorf("check-child: %w", err)
		}
		defer srv.Close()
		return serveAndAnnounce(cmd, srv, listen)
	})
	f := cmd.Flags()
	f.StringVar(&data, "data", "", "data directory (store and repo/)")
	f.StringVar(&channels, "channels", "", "directory of channel definitions")
	f.StringVar(&listen, "listen", "127.0.0.1:0", "address to listen on")
	f.StringVar(&database, "database", "", "database (as mxos-server --database; default SQLite in DATA)")
	f.StringVar(&onlineKeys, "online-keys", "", "online key directory: serve DATA/metadata signed with it")
	return cmd
}

// newTrivialChildCmd is the check benchmark's peer: the least a Go JSON
// endpoint does (net/http, decode the request, write a fixed answer).
func newTrivialChildCmd() *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:    "trivial-child",
		Short:  "Run a trivial net/http JSON handler as a benchmark child (internal)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			answer := []byte(trivialAnswer)
			mux := http.NewServeMux()
			mux.HandleFunc("POST "+api.Prefix+"/check", func(w http.ResponseWriter, r *http.Request) {
				var req api.CheckRequest
				if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.DeviceID == "" {
					http.Error(w, "bad request", http.StatusBadRequest)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write(answer)
			})
			mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, "ok\n")
			})
			hs := &http.Server{Handler: mux, ReadHeaderTimeout: server.DefaultReadHeaderTimeout, IdleTimeout: server.DefaultIdleTimeout}
			var lc net.ListenConfig
			ln, err := lc.Listen(cmd.Context(), "tcp", listen)
			if err != nil {
				return fmt.Errorf("listening on %s: %w", listen, err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), ln.Addr().String())
			errc := make(chan error, 1)
			go func() { errc <- hs.Serve(ln) }()
			select {
			case err := <-errc:
				return fmt.Errorf("trivial-child: %w", err)
			case <-cmd.Context().Done():
			}
			ctx, cancel := context.WithTimeout(context.Background(), server.DefaultShutdownTimeout)
			defer cancel()
			if err := hs.Shutdown(ctx); err != nil {
				return fmt.Errorf("trivial-child: shutting down: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "address to listen on")
	return cmd
}
