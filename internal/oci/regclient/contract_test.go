package regclient_test

import (
	"testing"

	"github.com/mxos-linux/mxos-update/internal/oci/content"
	"github.com/mxos-linux/mxos-update/internal/oci/content/contenttest"
	"github.com/mxos-linux/mxos-update/internal/oci/regclient"
)

// TestContentStoreContract runs the shared ContentStore suite against the
// client talking to our registry over HTTP: the errors it maps from the
// wire must be the ones the store returns in process.
func TestContentStoreContract(t *testing.T) {
	contenttest.Run(t, func(t *testing.T) content.ContentStore {
		_, srv := newRegistry(t)
		c, err := regclient.New(srv.URL, token)
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}
