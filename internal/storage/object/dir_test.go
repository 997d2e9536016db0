package object_test

import (
	"testing"

	"github.com/mxos-linux/mxos-update/internal/storage/object"
	"github.com/mxos-linux/mxos-update/internal/storage/storagetest"
)

func TestDirConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) object.Store {
		s, err := object.NewDir(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
