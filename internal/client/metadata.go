package client

import (
	"context"
	"net/http"

	"github.com/mxos-linux/mxos-update/internal/api"
)

// PutMetadata uploads signed channel metadata (a renewed or rotated root,
// re-signed targets); the server verifies it before installing it and
// answers with every role's version and expiry.
func (c *Client) PutMetadata(ctx context.Context, u api.MetadataUpdate) ([]api.MetadataRole, error) {
	var out []api.MetadataRole
	err := c.do(ctx, request{what: "installing signed channel metadata", method: http.MethodPut, path: "/metadata", in: u, out: &out})
	return out, err
}
