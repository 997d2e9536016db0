package updater

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/mxos-linux/mxos-update/internal/sysroot"
)

// When the agent restarts the machine (decided here, documented in the
// README):
//
//   - After `mxos-updater boot` rolled back while the abandoned version is
//     the one running (a failed required health check; the boot counter
//     used up in user space), it restarts at once, so the machine runs
//     the previous version again without anyone touching it. When the
//     boot loader already went back (boot counting in GRUB) the previous
//     version is running and nothing is restarted. `boot --reboot=false`
//     only prints that a restart is needed.
//   - After `mxos-updater run` switched to a new version: with `--reboot`
//     always; with `--reboot=false` never; without the flag only for the
//     strategies that exist to choose the moment of the restart, `window`
//     and `fleet-lock` (the reboot slot was taken for it). `immediate`
//     leaves the restart to the user, as a desktop expects.
//
// The restart is `systemctl reboot` (a clean shutdown: the journal and the
// agent's state are on disk before the machine goes down).

// RebootAfterSwitch reports whether `run` restarts the machine after a
// switch: flag is the --reboot flag when given, else nil.
func RebootAfterSwitch(strategy string, flag *bool) bool {
	if flag != nil {
		return *flag
	}
	return strategy == "window" || strategy == "fleet-lock"
}

// SystemReboot asks systemd for a clean restart. It only queues the job
// (--no-block), skips logind's inhibitor check (a minimal system has no
// D-Bus: "Failed to connect to bus") and does not hang on ctx. The
// shutdown it starts stops the agent's service, which may end systemctl
// itself with SIGTERM or SIGKILL before it exits: that is the restart
// under way, not a failure (the VM printed "Could not restart the
// machine" while it restarted).
func SystemReboot(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, systemctl, "--no-block", "--check-inhibitors=no", "reboot").CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ctx.Err() == nil {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() &&
			(ws.Signal() == syscall.SIGTERM || ws.Signal() == syscall.SIGKILL) {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("systemctl reboot: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// systemctl is the program SystemReboot runs (a test replaces it).
var systemctl = "systemctl"

// restartAfterRollback restarts the machine (a.Reboot) when, after a
// rollback, the running deployment is not the default any more; else, or
// without a.Reboot, it tells the technician what to do.
func (a *Agent) restartAfterRollback(ctx context.Context) {
	cur, err := a.Sys.Current()
	if err != nil {
		a.say("Restart the machine to use the previous version.")
		return
	}
	booted, err := a.Sys.Booted()
	if err == nil && booted.Name == cur.Name {
		return // the previous version is already running
	}
	if err != nil && !errors.Is(err, sysroot.ErrNoDeployment) {
		a.say("Restart the machine to use version %s.", cur.Origin.Version)
		return
	}
	if a.Reboot == nil {
		a.say("Restart the machine to use version %s.", cur.Origin.Version)
		return
	}
	a.say("Restarting the machine to go back to version %s.", cur.Origin.Version)
	if err := a.Reboot(ctx); err != nil {
		a.say("Could not restart the machine: %v. Restart it to use version %s.", err, cur.Origin.Version)
	}
}
