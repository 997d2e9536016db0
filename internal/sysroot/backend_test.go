package sysroot_test

import (
	"path/filepath"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
	"github.com/mxos-linux/mxos-update/internal/sysroot/backendtest"
)

// TestBackendContract runs the shared backend suite against the pure-Go
// sysroot (config `backend: sysroot`).
func TestBackendContract(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) (backendtest.Backend, func() backendtest.Backend) {
		root := filepath.Join(t.TempDir(), "sysroot")
		open := func() backendtest.Backend {
			s, err := sysroot.Open(root)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		s := open()
		if _, err := ostree.Create(s.RepoPath()); err != nil {
			t.Fatal(err)
		}
		return s, open
	})
}
