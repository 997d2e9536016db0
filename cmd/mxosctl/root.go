package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func newRootCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:           "mxosctl",
		Short:         "Manage MxOS releases",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	r := addServerCmds(cmd)
	cmd.AddCommand(newKeysCmd(), newPublishCmd(r), newFsckCmd(), newPromoteCmd(r), newMetadataCmd(r), newImageKeyCmd(), newImageCmd(r),
		newLogCmd(r)) // log.go
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

func userError(format string, args ...any) error { return fmt.Errorf(format, args...) }
