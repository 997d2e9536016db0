package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/mxos-linux/mxos-update/internal/api"
)

// Device returns one device with its latest reports, newest first (limit
// 0: the server's default, 20).
func (c *Client) Device(ctx context.Context, deviceID string, limit int) (api.DeviceDetail, error) {
	var out api.DeviceDetail
	what := "reading device " + deviceID
	n, err := seg("device id", deviceID)
	if err != nil {
		return out, fmt.Errorf("%s: %w", what, err)
	}
	var q url.Values
	if limit > 0 {
		q = url.Values{"limit": {strconv.Itoa(limit)}}
	}
	err = c.do(ctx, request{what: what, method: http.MethodGet, path: "/devices/" + n, query: q, out: &out})
	return out, err
}

// DeviceStatuses returns the latest report and failure of each of ids
// that has reported (at most 1000 ids).
func (c *Client) DeviceStatuses(ctx context.Context, ids []string) ([]api.DeviceStatus, error) {
	var out []api.DeviceStatus
	if len(ids) == 0 {
		return out, nil
	}
	err := c.do(ctx, request{what: "reading device status", method: http.MethodGet, path: "/device-status", query: url.Values{"id": ids}, out: &out})
	return out, err
}
