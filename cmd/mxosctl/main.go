// Command mxosctl is the release team's and admins' tool: keys, publishing,
// repository checks, and (as they are added) promotion, rollouts, pins and
// the audit log. It speaks es-MX or English, as LC_ALL, LC_MESSAGES or LANG
// say (internal/i18n).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mxosctl:", msg.Error(err))
		os.Exit(1)
	}
}
