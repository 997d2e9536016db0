package ostreeadmin_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/sysroot/backendtest"
	"github.com/mxos-linux/mxos-update/internal/sysroot/ostreeadmin"
	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// TestBackendContract runs the shared backend suite against stock `ostree
// admin` (config `backend: ostree`) on a throw-away sysroot. It needs root
// (ostree admin deploy writes files owned by the commit's owners), as CI
// has.
func TestBackendContract(t *testing.T) {
	testtool.Require(t, "ostree")
	testtool.RequireRoot(t, "ostree admin deploy writes files owned by the commit's owners")
	// As ostree's own tests do: t.TempDir may not support the immutable bit.
	opts := ostreeadmin.Options{Env: []string{"OSTREE_SYSROOT_DEBUG=mutable-deployments"}}
	backendtest.Run(t, func(t *testing.T) (backendtest.Backend, func() backendtest.Backend) {
		path := filepath.Join(t.TempDir(), "sysroot")
		if err := ostreeadmin.Init(context.Background(), path, opts); err != nil {
			t.Fatal(err)
		}
		open := func() backendtest.Backend {
			s, err := ostreeadmin.Open(context.Background(), path, opts)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		return open(), open
	})
}
