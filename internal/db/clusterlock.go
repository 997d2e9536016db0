package db

import (
	"context"
	"fmt"
)

// Names of cluster-wide locks.
const (
	// LockPublish serializes what changes the OSTree repository and its
	// copy in object storage: publish, promotion, the summary rewrite
	// that follows, and repository GC.
	LockPublish = "publish"
)

// LockCluster takes the cluster-wide lock name until the transaction ends
// (commit or rollback, including a server that dies: PostgreSQL drops the
// session). On PostgreSQL it is a transaction-scoped advisory lock
// (pg_advisory_xact_lock), so every mxos-server on the same database
// waits for it; on SQLite, where one server owns the database, the
// transaction's write lock already excludes every other writer. Take it
// first in the transaction, before the locks AddRelease and AppendAudit
// take, so every transaction takes locks in the same order.
func (t *Tx) LockCluster(ctx context.Context, name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty lock name", ErrInvalid)
	}
	return t.d.lock(ctx, t.q, "cluster", name)
}
