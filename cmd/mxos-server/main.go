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

	"github.com/mxos-linux/mxos-update/internal/ostree"
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

// prepareData makes sure the data directory has what the server serves:
// an archive OSTree repository, created empty on first start.
func prepareData(dir string) error {
	if _, err := ostree.Create(filepath.Join(dir, "repo")); err != nil {
		return fmt.Errorf("preparing data directory: %w", err)
	}
	return nil
}
