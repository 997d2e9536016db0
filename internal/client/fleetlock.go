package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/mxos-linux/mxos-update/internal/api"
)

// AcquireFleetLock asks for a reboot slot of the device's group (POST
// /fleetlock/acquire). When every slot is held the error matches
// &api.Error{Code: api.CodeFleetLockBusy}; the caller waits and asks again.
func (c *Client) AcquireFleetLock(ctx context.Context, req api.FleetLockRequest) (api.FleetLockGrant, error) {
	var out api.FleetLockGrant
	what := "asking for a reboot slot of group " + req.Group
	if err := req.Validate(); err != nil {
		return out, fmt.Errorf("%s: %w", what, err)
	}
	err := c.do(ctx, request{what: what, method: http.MethodPost, path: "/fleetlock/acquire", in: req, out: &out})
	return out, err
}

// ReleaseFleetLock gives back every slot the device holds (POST
// /fleetlock/release); holding none is not an error.
func (c *Client) ReleaseFleetLock(ctx context.Context, deviceID string) error {
	req := api.FleetLockRelease{DeviceID: deviceID}
	if err := req.Validate(); err != nil {
		return fmt.Errorf("giving back the reboot slot: %w", err)
	}
	return c.do(ctx, request{what: "giving back the reboot slot", method: http.MethodPost, path: "/fleetlock/release", in: req})
}

// FleetLocks lists the held slots of a group, or of every group for ""
// (admin).
func (c *Client) FleetLocks(ctx context.Context, group string) ([]api.FleetLock, error) {
	var q url.Values
	if group != "" {
		q = url.Values{"group": {group}}
	}
	var out []api.FleetLock
	err := c.do(ctx, request{what: "listing fleet locks", method: http.MethodGet, path: "/fleetlocks", query: q, out: &out})
	return out, err
}

// ForceReleaseFleetLock frees the slot a device holds in a group (admin),
// e.g. for a machine that broke while updating.
func (c *Client) ForceReleaseFleetLock(ctx context.Context, group, deviceID string) error {
	what := fmt.Sprintf("releasing the slot of %s in group %s", deviceID, group)
	eg, err := seg("group", group)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	ed, err := seg("device", deviceID)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return c.do(ctx, request{what: what, method: http.MethodDelete, path: "/fleetlocks/" + eg + "/" + ed})
}
