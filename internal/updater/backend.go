package updater

import (
	"context"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
)

// Backend is where deployments live: the pure-Go sysroot
// (*sysroot.Sysroot, config `backend: sysroot`) or stock `ostree admin`
// (*ostreeadmin.Sysroot, `backend: ostree`). Both return the sysroot
// package's types and errors, so the agent's steps and checks are the same
// for either; the agent pulls into RepoPath (an archive repository in both
// cases) and the backend deploys from it. The shared suite
// internal/sysroot/backendtest checks both against what follows.
//
// Methods:
//   - Root is the directory for the agent's own files (state, fleet lock,
//     trusted metadata); RepoPath the archive repository pulls go into.
//   - Deploy checks commit out of repo as a new deployment named
//     <commit>.<serial>, with /etc merged three ways from the default
//     deployment's, and records origin. It does not change the default
//     (except the first deploy on an empty `ostree admin` stateroot, which
//     ostree boots at once). A bad commit is sysroot.ErrBadCommit; a
//     commit missing from repo or a cancelled ctx fail before anything
//     is listed.
//   - Switch makes a deployment the default and records it as the pending
//     boot with Tries attempts; the old default becomes Previous. Switching
//     to the default is a no-op; an unknown deployment is
//     sysroot.ErrNoDeployment, a bad commit sysroot.ErrBadCommit.
//   - BootAttempt is called once per boot, before anything else: it records
//     the booted deployment and uses one attempt of a pending boot,
//     returning how many are left. With none left it rolls back itself and
//     returns sysroot.ErrCounterExhausted (wrapped).
//   - MarkGood ends the pending boot: the default is kept.
//   - Rollback makes Previous the default again and marks the abandoned
//     commit bad for good (IsBad, BadCommits with reason and time), so no
//     Deploy, Switch or later Rollback returns to it. Without a rollback
//     target it is sysroot.ErrNoDeployment.
//   - PendingBoot names the deployment on trial, or "". It may name one
//     that is not Current after a crash inside Switch; BootAttempt clears
//     that.
//   - Current, Previous and Booted return the default, the rollback target
//     and the last booted deployment, or sysroot.ErrNoDeployment; List
//     returns all, oldest first.
//   - Unmark forgets that a commit was rolled back from (IsBad false
//     again) and reports whether it was marked; deployments are unchanged.
//   - GC removes deployments other than the default, the rollback target,
//     the booted one, those deployed after the default (staged) and the
//     keep newest others, then what the repositories no longer need.
//
// Call order, as Agent uses it: an update is IsBad(target) (refuse), pull
// into RepoPath, Deploy (or reuse a complete deployment from List),
// save the agent state, Switch (or, on a DeploySwitcher switching at
// once, DeploySwitch, which saves the agent state through its callback);
// the machine restarts. At boot:
// BootAttempt first, then PendingBoot to see whether the default is on
// trial, the health checks, then MarkGood and GC(ctx, 0), or Rollback.
// `mxos-updater rollback` is Rollback alone. Every method may be called
// again after a crash or a restart (a new Backend on the same root sees
// the same state); methods are safe for concurrent use and the mutating
// ones take a file lock, so two processes are serialised.
type Backend interface {
	Root() string
	RepoPath() string
	Deploy(ctx context.Context, repo *ostree.Repo, commit ostree.Checksum, origin sysroot.Origin) (sysroot.Deployment, error)
	Switch(ctx context.Context, d sysroot.Deployment) error
	Rollback(ctx context.Context, reason string) error
	MarkGood() error
	BootAttempt() (int, error)
	PendingBoot() (string, error)
	Current() (sysroot.Deployment, error)
	Previous() (sysroot.Deployment, error)
	Booted() (sysroot.Deployment, error)
	List() ([]sysroot.Deployment, error)
	IsBad(ostree.Checksum) (bool, error)
	BadCommits() (map[string]sysroot.BadCommit, error)
	Unmark(ostree.Checksum) (bool, error)
	GC(ctx context.Context, keep int) error
}

var _ Backend = (*sysroot.Sysroot)(nil)

// DeploySwitcher is a Backend that can make a commit the default in one
// step, cheaper than Deploy then Switch (the `ostree` backend: one `ostree
// admin deploy` instead of two and an undeploy). Before the default moves
// it records its own pending boot and calls recorded with the new
// deployment's name, where the agent saves its state, as it does between
// Deploy and Switch; if the name changes, recorded is called again.
// The agent uses it when it would switch right away: the strategy's window
// is open and no fleet lock has to be taken between the two.
type DeploySwitcher interface {
	DeploySwitch(ctx context.Context, repo *ostree.Repo, commit ostree.Checksum, origin sysroot.Origin, recorded func(name string) error) (sysroot.Deployment, error)
}
