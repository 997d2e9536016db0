package registry_test

import (
	"path/filepath"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/oci/content"
	"github.com/mxos-linux/mxos-update/internal/oci/content/contenttest"
	"github.com/mxos-linux/mxos-update/internal/oci/registry"
)

// TestContentStoreContract runs the shared ContentStore suite against the
// registry's on-disk store.
func TestContentStoreContract(t *testing.T) {
	contenttest.Run(t, func(t *testing.T) content.ContentStore {
		s, err := registry.Open(filepath.Join(t.TempDir(), "oci"), registry.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
