package ocitest_test

import (
	"testing"

	"github.com/mxos-linux/mxos-update/internal/oci/content"
	"github.com/mxos-linux/mxos-update/internal/oci/content/contenttest"
	"github.com/mxos-linux/mxos-update/internal/oci/ocitest"
)

// TestContentStoreContract runs the shared ContentStore suite against
// MemStore, so tests using it see what the real stores do.
func TestContentStoreContract(t *testing.T) {
	contenttest.Run(t, func(*testing.T) content.ContentStore { return ocitest.NewMemStore() })
}
