package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/mxos-linux/mxos-update/internal/api"
)

// WithToken returns a copy of c that sends token instead (the device
// agent switches to its own credential after enrolling or rotating).
func (c *Client) WithToken(token string) (*Client, error) {
	if err := checkToken(token); err != nil {
		return nil, err
	}
	cp := *c
	cp.token = token
	return &cp, nil
}

// Enroll trades the client's enroll token for the device's own
// credential (POST /enroll). It is sent once: a device id enrolls once.
func (c *Client) Enroll(ctx context.Context, deviceID string) (api.Credential, error) {
	var out api.Credential
	req := api.EnrollRequest{DeviceID: deviceID}
	if err := req.Validate(); err != nil {
		return out, fmt.Errorf("enrolling: %w", err)
	}
	err := c.do(ctx, request{what: "enrolling device " + deviceID, method: http.MethodPost, path: "/enroll", in: req, out: &out})
	return out, err
}

// RotateCredential asks for a new credential for the device whose
// credential the client sends (POST /credential/rotate); the old one keeps
// working for a day.
func (c *Client) RotateCredential(ctx context.Context) (api.Credential, error) {
	var out api.Credential
	err := c.do(ctx, request{what: "rotating the device credential", method: http.MethodPost, path: "/credential/rotate", out: &out})
	return out, err
}

// Identities lists the device ids admins authorized, revoked or that
// enrolled, and ids a device token is bound to.
func (c *Client) Identities(ctx context.Context) ([]api.DeviceIdentity, error) {
	var out []api.DeviceIdentity
	err := c.do(ctx, request{what: "listing device identities", method: http.MethodGet, path: "/identities", out: &out})
	return out, err
}

// AuthorizeDevice lets a device id enroll (once), revoking any credential
// it still has.
func (c *Client) AuthorizeDevice(ctx context.Context, deviceID string) (api.DeviceIdentity, error) {
	return c.identity(ctx, http.MethodPut, "authorizing device", deviceID)
}

// RevokeDevice revokes every credential of a device id and keeps it from
// enrolling until it is authorized again.
func (c *Client) RevokeDevice(ctx context.Context, deviceID string) (api.DeviceIdentity, error) {
	return c.identity(ctx, http.MethodDelete, "revoking device", deviceID)
}

func (c *Client) identity(ctx context.Context, method, what, deviceID string) (api.DeviceIdentity, error) {
	var out api.DeviceIdentity
	what += " " + deviceID
	n, err := seg("device id", deviceID)
	if err != nil {
		return out, fmt.Errorf("%s: %w", what, err)
	}
	err = c.do(ctx, request{what: what, method: method, path: "/identities/" + n, out: &out})
	return out, err
}

// AllTokens lists the API tokens including device credentials.
func (c *Client) AllTokens(ctx context.Context) ([]api.TokenInfo, error) {
	var out []api.TokenInfo
	err := c.do(ctx, request{what: "listing tokens", method: http.MethodGet, path: "/tokens", query: url.Values{"credentials": {"1"}}, out: &out})
	return out, err
}

// DeviceReports returns a device's latest reports, newest first (limit 0:
// the server's default).
func (c *Client) DeviceReports(ctx context.Context, deviceID string, limit int) ([]api.DeviceReport, error) {
	var out []api.DeviceReport
	what := "reading the reports of " + deviceID
	n, err := seg("device id", deviceID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var q url.Values
	if limit > 0 {
		q = url.Values{"limit": {strconv.Itoa(limit)}}
	}
	err = c.do(ctx, request{what: what, method: http.MethodGet, path: "/devices/" + n + "/reports", query: q, out: &out})
	return out, err
}
