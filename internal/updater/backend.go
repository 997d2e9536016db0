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
// cases) and the backend deploys from it.
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
	GC(ctx context.Context, keep int) error
}

var _ Backend = (*sysroot.Sysroot)(nil)
