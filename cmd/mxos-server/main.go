// Command mxos-server serves MxOS updates: the OSTree repository today, and
// the update API, admin API, OCI registry and metrics as they are added.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mxos-server:", err)
		os.Exit(1)
	}
}

// prepareData makes sure the data directory has what the server serves.
// For now that is only the (possibly empty) repository directory.
func prepareData(dir string) error {
	repo := filepath.Join(dir, "repo")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		return fmt.Errorf("creating repository directory: %w", err)
	}
	return nil
}
