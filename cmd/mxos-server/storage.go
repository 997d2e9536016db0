package main

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/oci/registry"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/server"
	"github.com/mxos-linux/mxos-update/internal/storage/object"
	"github.com/mxos-linux/mxos-update/internal/storage/s3store"
	"github.com/mxos-linux/mxos-update/internal/storage/storageconfig"
)

// blobPrefix is where the registry's blobs live in a bucket.
const blobPrefix = "oci/blobs/"

// openStorage reads the storage file (--storage) and, for kind s3, puts
// the registry's blobs and the served repository in the bucket (cfg's
// RegistryOptions.Blobs, RepoStore, RepoRedirect). Without a file or for
// kind dir nothing changes. The bucket must exist and answer, or the
// server does not start.
func openStorage(ctx context.Context, path string, cfg *server.Config, log *zap.Logger) error {
	blobs, repo, redirect, err := loadStorage(ctx, path, log)
	if err != nil {
		return err
	}
	if blobs != nil {
		cfg.RegistryOptions.Blobs = blobs
	}
	cfg.RepoStore, cfg.RepoRedirect, cfg.RepoFetch = repo, redirect, pull.FetchVerified
	if c, ok := repo.(object.Counted); ok {
		cfg.StorageErrors = c.Errors
	}
	return nil
}

func loadStorage(ctx context.Context, path string, log *zap.Logger) (registry.BlobStore, object.Store, bool, error) {
	if path == "" {
		return nil, nil, false, nil
	}
	c, err := storageconfig.Load(path)
	if err != nil {
		return nil, nil, false, fmt.Errorf("--storage: %w", err)
	}
	st, err := c.Open(ctx)
	if err != nil {
		return nil, nil, false, fmt.Errorf("--storage %s: %w", path, err)
	}
	if st == nil {
		log.Info("storage: everything in the data directory")
		return nil, nil, false, nil
	}
	if s3, ok := st.(*s3store.Store); ok {
		log.Info("storage: registry blobs and the served repository in S3", zap.String("where", s3.Config().String()),
			zap.String("serve", c.Serve))
	}
	st = object.CountErrors(st) // mxos_storage_errors_total
	b, err := object.NewBlobs(st, blobPrefix)
	if err != nil {
		return nil, nil, false, err
	}
	return b, st, c.Serve == storageconfig.ServeRedirect, nil
}
