package ostreeadmin

import (
	"context"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
)

// backend is the method set the device agent uses. Both backends must
// have it, so the agent can hold either behind this interface.
type backend interface {
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
	IsBad(commit ostree.Checksum) (bool, error)
	BadCommits() (map[string]sysroot.BadCommit, error)
	GC(ctx context.Context, keep int) error
}

var (
	_ backend = (*sysroot.Sysroot)(nil)
	_ backend = (*Sysroot)(nil)
)
