package s3store_test

import (
	"context"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/storage/object"
	"github.com/mxos-linux/mxos-update/internal/storage/s3store"
	"github.com/mxos-linux/mxos-update/internal/storage/storagetest"
)

// TestS3Conformance runs the storage conformance suite against a real
// S3 server (versitygw, posix backend), one bucket per subtest.
func TestS3Conformance(t *testing.T) {
	srv := storagetest.StartS3(t)
	storagetest.Run(t, func(t *testing.T) object.Store {
		st, err := s3store.New(context.Background(), srv.Bucket(t))
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}
