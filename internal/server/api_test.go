package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/db"
)

type apiFixture struct {
	url    string
	store  *db.Store
	tokens map[string]string // role (and "revoked") → token

	clockMu sync.Mutex
	clock   func() time.Time // the server's clock; time.Now unless setNow
}

// setNow replaces the server's clock.
func (f *apiFixture) setNow(t *testing.T, now func() time.Time) {
	f.clockMu.Lock()
	f.clock = now
	f.clockMu.Unlock()
}

func (f *apiFixture) now() time.Time {
	f.clockMu.Lock()
	c := f.clock
	f.clockMu.Unlock()
	if c == nil {
		return time.Now()
	}
	return c()
}

func newAPIFixture(t *testing.T) *apiFixture {
	t.Helper()
	ctx := context.Background()
	data := newDataDir(t)
	store, set := openAPI(t, data)
	// The registry is on, as in mxos-server's default, so its routes are
	// in the auth matrix too.
	f := &apiFixture{store: store}
	srv, err := New(Config{DataDir: data, Store: store, Channels: set, Registry: true, Now: f.now})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	f.url, f.tokens = serveHandler(t, srv), roleTokens(t, store, now)
	tc, _ := CreateToken(ctx, store, "old", auth.RoleAdmin, "test", now)
	if _, err := store.RevokeToken(ctx, "old", now); err != nil {
		t.Fatal(err)
	}
	f.tokens["revoked"] = tc.Token
	for _, v := range []string{"10.0.1", "10.0.2"} {
		for _, ch := range []string{"testing", "stable"} {
			err := store.AddRelease(ctx, db.Release{Channel: ch, Arch: "x86_64", Version: v, Ref: "mxos/10/x86_64/" + ch,
				Commit: strings.Repeat(v[len(v)-1:], 64), PublishedAt: now, PublishedBy: "test"})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	return f
}

func (f *apiFixture) do(t *testing.T, token, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, f.url+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func errCode(b []byte) api.Code {
	var e api.ErrorBody
	if json.Unmarshal(b, &e) != nil || e.Error == nil {
		return ""
	}
	return e.Error.Code
}

// Every endpoint × every role × (no token, malformed, unknown, revoked,
// expired, another device's credential).
func TestAuthMatrix(t *testing.T) {
	f := newAPIFixture(t)
	ctx := context.Background()
	now := time.Now()
	ex, err := CreateTokenWith(ctx, f.store, TokenOptions{Name: "expired", Role: auth.RoleAdmin, By: "test", Now: now.Add(-2 * time.Hour), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	otherDevice := deviceToken(t, f.store, "d2")
	check := api.CheckRequest{DeviceID: "d1", Arch: "x86_64", Channel: "stable"}
	const forDevice = "d1" // the body names device d1: another device's credential is refused
	endpoints := []struct {
		method, path string
		body         any
		allowed      []string
		device       string
	}{
		{"POST", "/api/v1/check", check, []string{"device"}, forDevice},
		{"POST", "/api/v1/report", api.ReportRequest{DeviceID: "d1", Seq: 1, Version: "10.0.1", Event: api.EventHealthOK}, []string{"device"}, forDevice},
		{"POST", "/api/v1/enroll", api.EnrollRequest{DeviceID: "new-1"}, []string{"enroll"}, ""},
		{"POST", "/api/v1/credential/rotate", nil, []string{"device"}, ""},
		{"GET", "/api/v1/channels", nil, []string{"release", "admin", "device"}, ""},
		{"GET", "/api/v1/rollouts", nil, []string{"release", "admin"}, ""},
		{"POST", "/api/v1/rollouts", api.RolloutStartRequest{Channel: "testing", Version: "10.0.9"}, []string{"release"}, ""},
		{"POST", "/api/v1/rollouts/nope/pause", nil, []string{"release"}, ""},
		{"GET", "/api/v1/pins", nil, []string{"admin"}, ""},
		{"PUT", "/api/v1/pins", api.Pin{Scope: "device", Target: "d1", Version: "10.0.1"}, []string{"admin"}, ""},
		{"DELETE", "/api/v1/pins/device/none", nil, []string{"admin"}, ""},
		{"GET", "/api/v1/devices", nil, []string{"admin"}, ""},
		{"PUT", "/api/v1/devices/d1/group", api.GroupRequest{Group: "lab"}, []string{"admin"}, ""},
		{"GET", "/api/v1/identities", nil, []string{"admin"}, ""},
		{"GET", "/api/v1/devices/d1/reports", nil, []string{"admin"}, ""},
		{"PUT", "/api/v1/identities/d9", nil, []string{"admin"}, ""},
		{"DELETE", "/api/v1/identities/d9", nil, []string{"admin"}, ""},
		{"GET", "/api/v1/audit", nil, []string{"release", "admin"}, ""},
		{"GET", "/api/v1/reports/timeline?days=3", nil, []string{"release", "admin"}, ""},
		{"POST", "/api/v1/images", api.ImageImportRequest{Channel: "testing", Arch: "x86_64", Version: "10.0.1", Digest: "sha256:" + strings.Repeat("1", 64)}, []string{"release"}, ""},
		{"GET", "/api/v1/tokens", nil, []string{"admin"}, ""},
		{"POST", "/api/v1/tokens", api.TokenCreateRequest{Name: "x", Role: "device"}, []string{"admin"}, ""},
		{"POST", "/api/v1/tokens", api.TokenCreateRequest{Name: "y", Role: "enroll"}, []string{"admin"}, ""},
		{"POST", "/api/v1/tokens", api.TokenCreateRequest{Name: "z", Role: "admin"}, []string{"admin"}, ""},
		{"POST", "/api/v1/tokens", api.TokenCreateRequest{Name: "w", Role: "release"}, []string{"release"}, ""},
		{"DELETE", "/api/v1/tokens/nobody", nil, []string{"admin"}, ""},
		{"POST", "/api/v1/uploads", struct{}{}, []string{"release"}, ""},
		{"POST", "/api/v1/registry/gc", nil, []string{"release"}, ""},
		{"POST", "/api/v1/uploads/0123456789abcdef0123456789abcdef/missing", api.MissingRequest{}, []string{"release"}, ""},
		{"PUT", "/api/v1/uploads/0123456789abcdef0123456789abcdef/objects/" + strings.Repeat("a", 64) + ".dirmeta", "x", []string{"release"}, ""},
		{"POST", "/api/v1/uploads/0123456789abcdef0123456789abcdef/commit", struct{}{}, []string{"release"}, ""},
		{"POST", "/api/v1/releases", api.ReleaseRequest{Channel: "testing", Arch: "x86_64", Version: "10.0.9"}, []string{"release"}, ""},
		{"GET", "/api/v1/releases?channel=stable&arch=x86_64", nil, []string{"release", "admin", "device"}, ""},
		{"POST", "/api/v1/fleetlock/acquire", api.FleetLockRequest{DeviceID: "d1", Group: "lab", Slots: 1}, []string{"device"}, forDevice},
		{"POST", "/api/v1/fleetlock/release", api.FleetLockRelease{DeviceID: "d1"}, []string{"device"}, forDevice},
		{"GET", "/api/v1/fleetlocks", nil, []string{"admin"}, ""},
		{"DELETE", "/api/v1/fleetlocks/lab/d1", nil, []string{"admin"}, ""},
	}
	unknown, _, _ := auth.NewToken()
	bad := []struct{ name, tok string }{
		{"none", ""}, {"malformed", "abc"}, {"unknown", unknown}, {"revoked", f.tokens["revoked"]}, {"expired", ex.Token},
	}
	for _, e := range endpoints {
		name := e.method + e.path
		if b, ok := e.body.(api.TokenCreateRequest); ok {
			name += "/" + b.Role
		}
		t.Run(name, func(t *testing.T) {
			for _, b := range bad {
				code, body := f.do(t, b.tok, e.method, e.path, e.body)
				if code != 401 || errCode(body) != api.CodeUnauthorized {
					t.Errorf("%s token: %d %s", b.name, code, body)
				}
			}
			for _, role := range []string{"release", "admin", "device", "enroll", "other-device"} {
				tok, as := f.tokens[role], role
				if role == "other-device" {
					tok, as = otherDevice, "device"
				}
				code, body := f.do(t, tok, e.method, e.path, e.body)
				allowed := slices.Contains(e.allowed, as) && !(role == "other-device" && e.device != "")
				if allowed && (code == 401 || code == 403) {
					t.Errorf("%s refused: %d %s", role, code, body)
				}
				if !allowed && (code != 403 || errCode(body) != api.CodeForbidden) {
					t.Errorf("%s allowed: %d %s", role, code, body)
				}
			}
		})
	}
}

func TestBadRequestsChangeNothing(t *testing.T) {
	f := newAPIFixture(t)
	dev, rel, adm := deviceToken(t, f.store, "d"), f.tokens["release"], f.tokens["admin"]
	huge := `{"device_id":"` + strings.Repeat("x", 100<<10) + `"}`
	cases := []struct {
		name, tok, method, path string
		body                    any
		code                    api.Code
	}{
		{"malformed-json", dev, "POST", "/api/v1/check", `{"device_id":`, api.CodeBadRequest},
		{"unknown-field", dev, "POST", "/api/v1/check", `{"device_id":"d","arch":"x86_64","channel":"stable","evil":1}`, api.CodeBadRequest},
		{"trailing-data", dev, "POST", "/api/v1/check", `{"device_id":"d","arch":"x86_64","channel":"stable"} {}`, api.CodeBadRequest},
		{"huge-body", dev, "POST", "/api/v1/check", huge, api.CodeTooLarge},
		{"unknown-channel", dev, "POST", "/api/v1/check", api.CheckRequest{DeviceID: "d", Arch: "x86_64", Channel: "beta"}, api.CodeUnknownChannel},
		{"unknown-arch", dev, "POST", "/api/v1/check", api.CheckRequest{DeviceID: "d", Arch: "mips", Channel: "stable"}, api.CodeUnknownArch},
		{"report-unknown-device", deviceToken(t, f.store, "ghost"), "POST", "/api/v1/report", api.ReportRequest{DeviceID: "ghost", Seq: 1, Version: "1", Event: api.EventFailed}, api.CodeNotFound},
		{"report-without-seq", dev, "POST", "/api/v1/report", api.ReportRequest{DeviceID: "d", Version: "1", Event: api.EventFailed}, api.CodeBadRequest},
		{"token-bad-expiry", adm, "POST", "/api/v1/tokens", api.TokenCreateRequest{Name: "x", Role: "admin", Expires: "forever"}, api.CodeBadRequest},
		{"token-too-long", adm, "POST", "/api/v1/tokens", api.TokenCreateRequest{Name: "x", Role: "admin", Expires: "800d"}, api.CodeBadRequest},
		{"token-credential-name", adm, "POST", "/api/v1/tokens", api.TokenCreateRequest{Name: "device/pc1/x", Role: "device"}, api.CodeBadRequest},
		{"token-bound-admin", adm, "POST", "/api/v1/tokens", api.TokenCreateRequest{Name: "x", Role: "admin", DeviceID: "pc1"}, api.CodeBadRequest},
		{"enroll-no-id", f.tokens["enroll"], "POST", "/api/v1/enroll", api.EnrollRequest{}, api.CodeBadRequest},
		{"rollout-unknown-channel", rel, "POST", "/api/v1/rollouts", api.RolloutStartRequest{Channel: "beta", Version: "10.0.1"}, api.CodeUnknownChannel},
		{"rollout-unknown-version", rel, "POST", "/api/v1/rollouts", api.RolloutStartRequest{Channel: "stable", Version: "11.0"}, api.CodeNotFound},
		{"rollout-bad-ramp", rel, "POST", "/api/v1/rollouts", api.RolloutStartRequest{Channel: "stable", Version: "10.0.1", Ramp: "150%"}, api.CodeBadRequest},
		{"rollout-bad-action", rel, "POST", "/api/v1/rollouts/x/explode", nil, api.CodeBadRequest},
		{"pin-nothing", adm, "PUT", "/api/v1/pins", api.Pin{Scope: "device", Target: "d"}, api.CodeBadRequest},
		{"pin-bad-scope", adm, "PUT", "/api/v1/pins", api.Pin{Scope: "planet", Target: "d", Version: "10.0.1"}, api.CodeBadRequest},
		{"pin-unknown-channel", adm, "PUT", "/api/v1/pins", api.Pin{Scope: "device", Target: "d", Channel: "beta"}, api.CodeUnknownChannel},
		{"token-bad-role", adm, "POST", "/api/v1/tokens", api.TokenCreateRequest{Name: "x", Role: "root"}, api.CodeBadRequest},
		{"token-duplicate", adm, "POST", "/api/v1/tokens", api.TokenCreateRequest{Name: "t-admin", Role: "admin"}, api.CodeDuplicate},
		{"devices-bad-limit", adm, "GET", "/api/v1/devices?limit=0", nil, api.CodeBadRequest},
		{"timeline-bad-days", adm, "GET", "/api/v1/reports/timeline?days=91", nil, api.CodeBadRequest},
		{"timeline-unknown-rollout", rel, "GET", "/api/v1/reports/timeline?rollout=nope", nil, api.CodeNotFound},
		{"image-bad-digest", rel, "POST", "/api/v1/images", api.ImageImportRequest{Channel: "testing", Arch: "x86_64", Version: "10.0.1", Digest: "sha256:xyz"}, api.CodeBadRequest},
		{"image-unknown-channel", rel, "POST", "/api/v1/images", api.ImageImportRequest{Channel: "beta", Arch: "x86_64", Version: "10.0.1", Digest: "sha256:" + strings.Repeat("1", 64)}, api.CodeUnknownChannel},
		{"image-promotion-only", rel, "POST", "/api/v1/images", api.ImageImportRequest{Channel: "stable", Arch: "x86_64", Version: "10.0.1", Digest: "sha256:" + strings.Repeat("1", 64)}, api.CodePromotion},
		{"image-unknown-arch", rel, "POST", "/api/v1/images", api.ImageImportRequest{Channel: "testing", Arch: "mips", Version: "10.0.1", Digest: "sha256:" + strings.Repeat("1", 64)}, api.CodeUnknownArch},
	}
	ctx := context.Background()
	seq, _, _ := f.store.AuditHead(ctx)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := f.do(t, c.tok, c.method, c.path, c.body)
			if errCode(body) != c.code || code != c.code.HTTPStatus() {
				t.Fatalf("%d %s, want %s", code, body, c.code)
			}
		})
	}
	if n, _ := f.store.CountDevices(ctx, db.DeviceFilter{}); n != 0 {
		t.Errorf("refused requests registered %d devices", n)
	}
	if after, _, _ := f.store.AuditHead(ctx); after != seq {
		t.Errorf("refused requests wrote %d audit entries", after-seq)
	}
}

// A server, a rollout, a few hundred simulated devices reporting failures
// over HTTP: the rollout halts, offers stop, the audit log says why.
func TestAutoHaltOverHTTP(t *testing.T) {
	f := newAPIFixture(t)
	code, body := f.do(t, f.tokens["release"], "POST", "/api/v1/rollouts", api.RolloutStartRequest{Channel: "stable", Arch: "x86_64", Version: "10.0.2", Ramp: "100%"})
	if code != 201 {
		t.Fatalf("start: %d %s", code, body)
	}
	var started []api.RolloutStatus
	json.Unmarshal(body, &started)
	id := started[0].ID
	halted := false
	for i := 0; i < 300 && !halted; i++ {
		dev := fmt.Sprintf("aula-%03d", i)
		// Admin-made device tokens: devices enrolled after the rollout
		// started would not vote (TestEnrolledForgersChangeNothing).
		cred := deviceToken(t, f.store, dev)
		code, body := f.do(t, cred, "POST", "/api/v1/check", api.CheckRequest{DeviceID: dev, Arch: "x86_64", Channel: "stable", Version: "10.0.1"})
		var resp api.CheckResponse
		json.Unmarshal(body, &resp)
		if code != 200 {
			t.Fatalf("check: %d %s", code, body)
		}
		if !resp.Update {
			if resp.Reason != "halted" {
				t.Fatalf("%s: %+v", dev, resp)
			}
			halted = true
			break
		}
		ev := api.EventHealthOK
		if i%4 == 0 {
			ev = api.ReleaseFailures[(i/4)%len(api.ReleaseFailures)]
		}
		code, body = f.do(t, cred, "POST", "/api/v1/report", api.ReportRequest{DeviceID: dev, Seq: 1, RolloutID: id, Version: "10.0.2", Event: ev, Error: "health check failed"})
		if code != 204 {
			t.Fatalf("report: %d %s", code, body)
		}
	}
	if !halted {
		t.Fatal("rollout never halted")
	}
	_, body = f.do(t, f.tokens["admin"], "GET", "/api/v1/audit", nil)
	var audit api.AuditList
	json.Unmarshal(body, &audit)
	found := false
	for _, e := range audit.Entries {
		found = found || (e.Action == "rollout.halt" && e.Actor == "server:auto-halt")
	}
	if !found || !audit.Verified {
		t.Fatalf("audit: found=%v verified=%v (%s)", found, audit.Verified, audit.VerifyError)
	}
	// Resuming is the release team's call, and it is audited.
	code, body = f.do(t, f.tokens["release"], "POST", "/api/v1/rollouts/"+id+"/resume", api.RolloutActionRequest{Reason: "fixed the health check"})
	if code != 200 {
		t.Fatalf("resume: %d %s", code, body)
	}
	code, body = f.do(t, f.tokens["release"], "POST", "/api/v1/rollouts/"+id+"/resume", nil)
	if code != 409 || errCode(body) != api.CodeRolloutState {
		t.Fatalf("second resume: %d %s", code, body)
	}
	// Metrics count what happened.
	code, body = f.do(t, "", "GET", "/metrics", nil)
	if code != 200 || !strings.Contains(string(body), `mxos_update_reports_total{class="release-failure",event="rolled-back"}`) {
		t.Fatalf("metrics: %d\n%.500s", code, body)
	}
	if strings.Contains(string(body), "aula-") || strings.Contains(string(body), "mxos_") && strings.Contains(string(body), f.tokens["device"]) {
		t.Fatal("metrics leak device ids or tokens")
	}
}

func TestPinsTokensAndDevicesOverHTTP(t *testing.T) {
	f := newAPIFixture(t)
	adm, dev := f.tokens["admin"], deviceToken(t, f.store, "pc1")
	f.do(t, dev, "POST", "/api/v1/check", api.CheckRequest{DeviceID: "pc1", Arch: "x86_64", Channel: "stable", Version: "10.0.1"})
	if code, b := f.do(t, adm, "PUT", "/api/v1/devices/pc1/group", api.GroupRequest{Group: "lab"}); code != 204 {
		t.Fatalf("group: %d %s", code, b)
	}
	if code, b := f.do(t, adm, "PUT", "/api/v1/pins", api.Pin{Scope: "group", Target: "lab", Version: "10.0.2"}); code != 200 {
		t.Fatalf("pin: %d %s", code, b)
	}
	_, b := f.do(t, dev, "POST", "/api/v1/check", api.CheckRequest{DeviceID: "pc1", Arch: "x86_64", Channel: "stable", Version: "10.0.1"})
	var resp api.CheckResponse
	json.Unmarshal(b, &resp)
	if !resp.Update || resp.Target.Version != "10.0.2" || resp.Reason != "pinned" {
		t.Fatalf("pinned check: %s", b)
	}
	_, b = f.do(t, adm, "GET", "/api/v1/devices?group=lab", nil)
	var list api.DeviceList
	json.Unmarshal(b, &list)
	if list.Total != 1 || list.Devices[0].ID != "pc1" {
		t.Fatalf("devices: %s", b)
	}
	if code, b := f.do(t, adm, "DELETE", "/api/v1/pins/group/lab", nil); code != 204 {
		t.Fatalf("unpin: %d %s", code, b)
	}
	// A token made over the API works, and stops working once revoked.
	code, b := f.do(t, adm, "POST", "/api/v1/tokens", api.TokenCreateRequest{Name: "kiosk-fleet", Role: "device"})
	var created api.TokenCreated
	json.Unmarshal(b, &created)
	if code != 201 || created.Token == "" {
		t.Fatalf("token create: %d %s", code, b)
	}
	if code, _ := f.do(t, created.Token, "GET", "/api/v1/channels", nil); code != 200 {
		t.Fatalf("new token refused: %d", code)
	}
	_, lb := f.do(t, adm, "GET", "/api/v1/tokens", nil)
	if strings.Contains(string(lb), created.Token) {
		t.Fatal("token list shows a token")
	}
	if code, _ := f.do(t, adm, "DELETE", "/api/v1/tokens/kiosk-fleet", nil); code != 204 {
		t.Fatalf("revoke: %d", code)
	}
	if code, _ := f.do(t, created.Token, "GET", "/api/v1/channels", nil); code != 401 {
		t.Fatalf("revoked token accepted: %d", code)
	}
	_, ab := f.do(t, adm, "GET", "/api/v1/audit", nil)
	for _, want := range []string{"device.group", "pin.set", "pin.delete", "token.create", "token.revoke"} {
		if !strings.Contains(string(ab), `"action":"`+want+`"`) {
			t.Errorf("audit lacks %s", want)
		}
	}
	if strings.Contains(string(ab), created.Token) {
		t.Fatal("audit log contains a token")
	}
}
