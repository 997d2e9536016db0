package main

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/oci/registry"
	"github.com/mxos-linux/mxos-update/internal/storage/object"
	"github.com/mxos-linux/mxos-update/internal/storage/s3store"
	"github.com/mxos-linux/mxos-update/internal/storage/storageconfig"
)

// blobPrefix is where the registry's blobs live in a bucket.
const blobPrefix = "oci/blobs/"

// openStorage reads the storage file (--storage) and returns the blob
// store the registry should use: nil (its directory in --data) without a
// file or for kind dir, the bucket for kind s3. The bucket must exist and
// answer, or the server does not start.
func openStorage(ctx context.Context, path string, log *zap.Logger) (registry.BlobStore, error) {
	if path == "" {
		return nil, nil
	}
	c, err := storageconfig.Load(path)
	if err != nil {
		return nil, fmt.Errorf("--storage: %w", err)
	}
	st, err := c.Open(ctx)
	if err != nil {
		return nil, fmt.Errorf("--storage %s: %w", path, err)
	}
	if st == nil {
		log.Info("storage: registry blobs in the data directory")
		return nil, nil
	}
	if s3, ok := st.(*s3store.Store); ok {
		log.Info("storage: registry blobs in S3", zap.String("where", s3.Config().String()), zap.String("prefix", blobPrefix))
	}
	b, err := object.NewBlobs(st, blobPrefix)
	if err != nil {
		return nil, err
	}
	return b, nil
}
