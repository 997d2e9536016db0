package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/mxos-linux/mxos-update/internal/api"
)

// Rollout actions accepted by RolloutAction.
const (
	ActionPause    = "pause"
	ActionResume   = "resume"
	ActionHalt     = "halt"
	ActionComplete = "complete"
)

// Pin scopes.
const (
	ScopeDevice = "device"
	ScopeGroup  = "group"
)

// Check asks whether the device should update (POST /check). The request
// is validated first, so a malformed one never leaves the device.
func (c *Client) Check(ctx context.Context, req api.CheckRequest) (api.CheckResponse, error) {
	var out api.CheckResponse
	if err := req.Validate(); err != nil {
		return out, fmt.Errorf("checking for updates: %w", err)
	}
	err := c.do(ctx, request{what: "checking for updates", method: http.MethodPost, path: "/check", in: req, out: &out})
	return out, err
}

// Report sends one device event (POST /report).
func (c *Client) Report(ctx context.Context, req api.ReportRequest) error {
	if err := req.Validate(); err != nil {
		return fmt.Errorf("reporting %s: %w", req.Event, err)
	}
	return c.do(ctx, request{what: "reporting " + string(req.Event), method: http.MethodPost, path: "/report", in: req})
}

// Channels lists the channels with their latest releases and rollouts.
func (c *Client) Channels(ctx context.Context) ([]api.ChannelStatus, error) {
	var out []api.ChannelStatus
	err := c.do(ctx, request{what: "listing channels", method: http.MethodGet, path: "/channels", out: &out})
	return out, err
}

// Rollouts lists the rollouts of a channel, or of every channel for "".
func (c *Client) Rollouts(ctx context.Context, channel string) ([]api.RolloutStatus, error) {
	var q url.Values
	if channel != "" {
		q = url.Values{"channel": {channel}}
	}
	var out []api.RolloutStatus
	err := c.do(ctx, request{what: "listing rollouts", method: http.MethodGet, path: "/rollouts", query: q, out: &out})
	return out, err
}

// StartRollout starts a rollout; with no Arch it starts one per
// architecture that has the version, hence the list.
func (c *Client) StartRollout(ctx context.Context, req api.RolloutStartRequest) ([]api.RolloutStatus, error) {
	var out []api.RolloutStatus
	what := fmt.Sprintf("starting the rollout of %s on %s", req.Version, req.Channel)
	err := c.do(ctx, request{what: what, method: http.MethodPost, path: "/rollouts", in: req, out: &out})
	return out, err
}

// RolloutAction pauses, resumes, halts or completes a rollout; reason goes
// into the audit log.
func (c *Client) RolloutAction(ctx context.Context, id, action, reason string) (api.RolloutStatus, error) {
	var out api.RolloutStatus
	what := fmt.Sprintf("%s rollout %s", action, id)
	switch action {
	case ActionPause, ActionResume, ActionHalt, ActionComplete:
	default:
		return out, fmt.Errorf("%s: unknown action %q (use pause, resume, halt or complete)", what, action)
	}
	eid, err := seg("rollout id", id)
	if err != nil {
		return out, fmt.Errorf("%s: %w", what, err)
	}
	err = c.do(ctx, request{what: what, method: http.MethodPost, path: "/rollouts/" + eid + "/" + action,
		in: api.RolloutActionRequest{Reason: reason}, out: &out})
	return out, err
}

// Pins lists every pin.
func (c *Client) Pins(ctx context.Context) ([]api.Pin, error) {
	var out []api.Pin
	err := c.do(ctx, request{what: "listing pins", method: http.MethodGet, path: "/pins", out: &out})
	return out, err
}

// SetPin creates or replaces the pin of a device or group and returns it
// as stored.
func (c *Client) SetPin(ctx context.Context, p api.Pin) (api.Pin, error) {
	var out api.Pin
	what := fmt.Sprintf("pinning %s %s", p.Scope, p.Target)
	err := c.do(ctx, request{what: what, method: http.MethodPut, path: "/pins", in: p, out: &out})
	return out, err
}

// DeletePin removes the pin of a device or group (scope "device" or
// "group").
func (c *Client) DeletePin(ctx context.Context, scope, target string) error {
	what := fmt.Sprintf("unpinning %s %s", scope, target)
	es, err := seg("scope", scope)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	et, err := seg("target", target)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return c.do(ctx, request{what: what, method: http.MethodDelete, path: "/pins/" + es + "/" + et})
}

// DeviceFilter selects a page of devices; zero fields select everything
// and the server's page size.
type DeviceFilter struct {
	Channel string
	Group   string
	Limit   int
	After   string // DeviceList.Next of the previous page
}

// Devices lists one page of devices.
func (c *Client) Devices(ctx context.Context, f DeviceFilter) (api.DeviceList, error) {
	q := url.Values{}
	if f.Channel != "" {
		q.Set("channel", f.Channel)
	}
	if f.Group != "" {
		q.Set("group", f.Group)
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if f.After != "" {
		q.Set("after", f.After)
	}
	var out api.DeviceList
	err := c.do(ctx, request{what: "listing devices", method: http.MethodGet, path: "/devices", query: q, out: &out})
	return out, err
}

// SetDeviceGroup puts a device in a group; "" takes it out of its group.
func (c *Client) SetDeviceGroup(ctx context.Context, deviceID, group string) error {
	what := fmt.Sprintf("setting the group of device %s", deviceID)
	id, err := seg("device id", deviceID)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return c.do(ctx, request{what: what, method: http.MethodPut, path: "/devices/" + id + "/group",
		in: api.GroupRequest{Group: group}})
}

// Audit reads the audit log from after the entry with sequence number
// after (0: from the start), at most limit entries (0: the server's
// default), and whether the whole chain verified on the server.
func (c *Client) Audit(ctx context.Context, after int64, limit int) (api.AuditList, error) {
	q := url.Values{}
	if after > 0 {
		q.Set("after", strconv.FormatInt(after, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out api.AuditList
	err := c.do(ctx, request{what: "reading the audit log", method: http.MethodGet, path: "/audit", query: q, out: &out})
	return out, err
}

// Tokens lists the API tokens, without their secrets.
func (c *Client) Tokens(ctx context.Context) ([]api.TokenInfo, error) {
	var out []api.TokenInfo
	err := c.do(ctx, request{what: "listing tokens", method: http.MethodGet, path: "/tokens", out: &out})
	return out, err
}

// CreateToken creates a token; the answer is the only time its secret is
// shown.
func (c *Client) CreateToken(ctx context.Context, req api.TokenCreateRequest) (api.TokenCreated, error) {
	var out api.TokenCreated
	what := fmt.Sprintf("creating token %s", req.Name)
	err := c.do(ctx, request{what: what, method: http.MethodPost, path: "/tokens", in: req, out: &out})
	return out, err
}

// RevokeToken revokes the token called name.
func (c *Client) RevokeToken(ctx context.Context, name string) error {
	what := fmt.Sprintf("revoking token %s", name)
	n, err := seg("token name", name)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return c.do(ctx, request{what: what, method: http.MethodDelete, path: "/tokens/" + n})
}

// ReportTimeline reads report counts over the last days (0: the server's
// default), of one rollout or ("") of all.
func (c *Client) ReportTimeline(ctx context.Context, rolloutID string, days int) (api.ReportTimeline, error) {
	q := url.Values{}
	if rolloutID != "" {
		q.Set("rollout", rolloutID)
	}
	if days > 0 {
		q.Set("days", strconv.Itoa(days))
	}
	var out api.ReportTimeline
	err := c.do(ctx, request{what: "reading the report timeline", method: http.MethodGet, path: "/reports/timeline", query: q, out: &out})
	return out, err
}
