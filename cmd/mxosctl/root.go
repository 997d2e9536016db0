package main

import (
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxos-linux/mxos-update/internal/buildinfo"
	"github.com/mxos-linux/mxos-update/internal/i18n"
)

// msg prints this run's messages in the language of LC_ALL, LC_MESSAGES
// or LANG (internal/i18n); newRootCmd sets it. Tables' column names, JSON
// and identifiers are not translated.
var msg = i18n.New(i18n.English)

// say writes a catalog message and a newline to w.
func say(w io.Writer, key string, args ...any) { msg.Say(w, key, args...) }

func newRootCmd() *cobra.Command {
	msg = i18n.FromEnv(os.Getenv)
	cmd := &cobra.Command{
		Use:           "mxosctl",
		Short:         "Manage MxOS releases",
		Version:       buildinfo.Version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	r := addServerCmds(cmd)
	cmd.AddCommand(newKeysCmd(), newPublishCmd(r), newFsckCmd(), newPromoteCmd(r), newMetadataCmd(r), newImageKeyCmd(), newImageCmd(r),
		newLogCmd(r)) // log.go
	i18n.Localize(cmd, msg)
	return cmd
}

// repoDir is where the OSTree repository lives inside a data directory;
// mxos-server serves the same path.
func repoDir(data string) string { return filepath.Join(data, "repo") }

func envOr(key, fallback string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return fallback
}

// newLogger writes short plain lines to stderr for people at a terminal.
func newLogger(verbose bool) *zap.Logger {
	lvl := zapcore.WarnLevel
	if verbose {
		lvl = zapcore.DebugLevel
	}
	ec := zap.NewDevelopmentEncoderConfig()
	ec.TimeKey = ""
	ec.CallerKey = ""
	return zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(ec), zapcore.Lock(os.Stderr), lvl))
}

// userError is an error in the user's input; format is a catalog message.
func userError(format string, args ...any) error { return i18n.Errorf(format, args...) }
