package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
)

const testToken = "mxos_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// recorded is one request the fake server saw.
type recorded struct {
	Method, Path, RawPath, Query, Auth, ContentType string
	Body                                            string
}

// fake answers every request with status and body and records it.
type fake struct {
	mu     sync.Mutex
	reqs   []recorded
	status int
	body   string
	ctype  string
}

func newFake(t *testing.T, status int, body string) (*fake, *Client) {
	t.Helper()
	f := &fake{status: status, body: body, ctype: "application/json"}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, testToken, WithRetries(2, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, recorded{
		Method: r.Method, Path: r.URL.Path, RawPath: r.URL.EscapedPath(), Query: r.URL.RawQuery,
		Auth: r.Header.Get("Authorization"), ContentType: r.Header.Get("Content-Type"), Body: string(b),
	})
	status, body, ctype := f.status, f.body, f.ctype
	f.mu.Unlock()
	if ctype != "" {
		w.Header().Set("Content-Type", ctype)
	}
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func (f *fake) last(t *testing.T) recorded {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		t.Fatal("no request reached the server")
	}
	return f.reqs[len(f.reqs)-1]
}

func (f *fake) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

func jsonEqual(t *testing.T, got, want string) {
	t.Helper()
	if want == "" {
		if got != "" {
			t.Errorf("body = %s, want none", got)
		}
		return
	}
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("request body %q: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("body = %s, want %s", got, want)
	}
}

func TestRoutes(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name                string
		status              int
		answer              string
		call                func(c *Client) (any, error)
		method, path, query string
		body                string
		want                any
	}{
		{
			name: "check", status: 200, answer: `{"update":true,"target":{"channel":"stable","arch":"x86_64","version":"10.0.2","ref":"r","commit":"c"},"reason":"eligible"}`,
			call: func(c *Client) (any, error) {
				return c.Check(ctx, api.CheckRequest{DeviceID: "lab-01", Arch: "x86_64", Channel: "stable", Version: "10.0.1"})
			},
			method: "POST", path: "/api/v1/check",
			body: `{"device_id":"lab-01","arch":"x86_64","channel":"stable","booted_commit":"","version":"10.0.1"}`,
			want: api.CheckResponse{Update: true, Reason: "eligible", Target: &api.Target{Channel: "stable", Arch: "x86_64", Version: "10.0.2", Ref: "r", Commit: "c"}},
		},
		{
			name: "report", status: 204,
			call: func(c *Client) (any, error) {
				return nil, c.Report(ctx, api.ReportRequest{DeviceID: "lab-01", Seq: 3, Version: "10.0.2", Event: api.EventHealthOK, RolloutID: "r1"})
			},
			method: "POST", path: "/api/v1/report",
			body: `{"device_id":"lab-01","seq":3,"rollout_id":"r1","version":"10.0.2","event":"health-ok"}`,
		},
		{
			name: "enroll", status: 201, answer: `{"device_id":"lab-01","token":"mxos_x","expires_at":"2027-01-02T03:04:05Z"}`,
			call:   func(c *Client) (any, error) { return c.Enroll(ctx, "lab-01") },
			method: "POST", path: "/api/v1/enroll",
			body: `{"device_id":"lab-01"}`,
			want: api.Credential{DeviceID: "lab-01", Token: "mxos_x", ExpiresAt: time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)},
		},
		{
			name: "rotate", status: 201, answer: `{"device_id":"lab-01","token":"mxos_y","expires_at":"2027-01-02T03:04:05Z"}`,
			call:   func(c *Client) (any, error) { return c.RotateCredential(ctx) },
			method: "POST", path: "/api/v1/credential/rotate",
			want: api.Credential{DeviceID: "lab-01", Token: "mxos_y", ExpiresAt: time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)},
		},
		{
			name: "identities", status: 200, answer: `[{"device_id":"pc/1","state":"enrolled","credentials":1}]`,
			call:   func(c *Client) (any, error) { return c.Identities(ctx) },
			method: "GET", path: "/api/v1/identities",
			want: []api.DeviceIdentity{{DeviceID: "pc/1", State: "enrolled", Credentials: 1}},
		},
		{
			name: "authorize", status: 200, answer: `{"device_id":"pc/1","state":"authorized","credentials":0}`,
			call:   func(c *Client) (any, error) { return c.AuthorizeDevice(ctx, "pc/1") },
			method: "PUT", path: "/api/v1/identities/pc/1", // sent escaped (pc%2F1), as DeletePin
			want: api.DeviceIdentity{DeviceID: "pc/1", State: "authorized"},
		},
		{
			name: "revoke device", status: 200, answer: `{"device_id":"pc1","state":"revoked","credentials":0,"revoked":2}`,
			call:   func(c *Client) (any, error) { return c.RevokeDevice(ctx, "pc1") },
			method: "DELETE", path: "/api/v1/identities/pc1",
			want: api.DeviceIdentity{DeviceID: "pc1", State: "revoked", Revoked: 2},
		},
		{
			name: "channels", status: 200, answer: `[{"name":"stable","default_ramp":"100%","arches":[{"arch":"x86_64","ref":"mxos/10/x86_64/stable"}]}]`,
			call:   func(c *Client) (any, error) { return c.Channels(ctx) },
			method: "GET", path: "/api/v1/channels",
			want: []api.ChannelStatus{{Name: "stable", DefaultRamp: "100%", Arches: []api.ArchStatus{{Arch: "x86_64", Ref: "mxos/10/x86_64/stable"}}}},
		},
		{
			name: "rollouts", status: 200, answer: `[{"id":"r1","channel":"stable","state":"active","fraction":0.1}]`,
			call:   func(c *Client) (any, error) { return c.Rollouts(ctx, "stable") },
			method: "GET", path: "/api/v1/rollouts", query: "channel=stable",
			want: []api.RolloutStatus{{ID: "r1", Channel: "stable", State: "active", Fraction: 0.1}},
		},
		{
			name: "rollouts-all", status: 200, answer: `[]`,
			call:   func(c *Client) (any, error) { return c.Rollouts(ctx, "") },
			method: "GET", path: "/api/v1/rollouts",
			want: []api.RolloutStatus{},
		},
		{
			name: "start-rollout", status: 201, answer: `[{"id":"r2","channel":"stable","arch":"x86_64","version":"10.0.2","ramp":"1%,100%@24h","state":"active","fraction":0.01}]`,
			call: func(c *Client) (any, error) {
				return c.StartRollout(ctx, api.RolloutStartRequest{Channel: "stable", Version: "10.0.2", Ramp: "1%,100%@24h"})
			},
			method: "POST", path: "/api/v1/rollouts",
			body: `{"channel":"stable","version":"10.0.2","ramp":"1%,100%@24h"}`,
			want: []api.RolloutStatus{{ID: "r2", Channel: "stable", Arch: "x86_64", Version: "10.0.2", Ramp: "1%,100%@24h", State: "active", Fraction: 0.01}},
		},
		{
			name: "rollout-action", status: 200, answer: `{"id":"r 1","state":"halted","halt_reason":"boot loops"}`,
			call:   func(c *Client) (any, error) { return c.RolloutAction(ctx, "r 1", ActionHalt, "boot loops") },
			method: "POST", path: "/api/v1/rollouts/r 1/halt",
			body: `{"reason":"boot loops"}`,
			want: api.RolloutStatus{ID: "r 1", State: "halted", HaltReason: "boot loops"},
		},
		{
			name: "pins", status: 200, answer: `[{"scope":"group","target":"lab","channel":"edu"}]`,
			call:   func(c *Client) (any, error) { return c.Pins(ctx) },
			method: "GET", path: "/api/v1/pins",
			want: []api.Pin{{Scope: "group", Target: "lab", Channel: "edu"}},
		},
		{
			name: "set-pin", status: 200, answer: `{"scope":"device","target":"d1","version":"10.0.1","created_by":"token:ana","created_at":"2026-03-01T12:00:00Z"}`,
			call: func(c *Client) (any, error) {
				return c.SetPin(ctx, api.Pin{Scope: ScopeDevice, Target: "d1", Version: "10.0.1"})
			},
			method: "PUT", path: "/api/v1/pins",
			body: `{"scope":"device","target":"d1","version":"10.0.1"}`,
			want: api.Pin{Scope: "device", Target: "d1", Version: "10.0.1", CreatedBy: "token:ana", CreatedAt: at},
		},
		{
			name: "delete-pin", status: 204,
			call:   func(c *Client) (any, error) { return nil, c.DeletePin(ctx, ScopeGroup, "lab/2") },
			method: "DELETE", path: "/api/v1/pins/group/lab/2",
		},
		{
			name: "devices", status: 200, answer: `{"devices":[{"id":"d1","arch":"x86_64","channel":"edu","first_seen":"2026-03-01T12:00:00Z","last_seen":"2026-03-01T12:00:00Z"}],"total":7,"next":"d1"}`,
			call: func(c *Client) (any, error) {
				return c.Devices(ctx, DeviceFilter{Channel: "edu", Group: "lab a", Limit: 1, After: "d0"})
			},
			method: "GET", path: "/api/v1/devices", query: "after=d0&channel=edu&group=lab+a&limit=1",
			want: api.DeviceList{Devices: []api.Device{{ID: "d1", Arch: "x86_64", Channel: "edu", FirstSeen: at, LastSeen: at}}, Total: 7, Next: "d1"},
		},
		{
			name: "set-group", status: 204,
			call:   func(c *Client) (any, error) { return nil, c.SetDeviceGroup(ctx, "d1", "lab") },
			method: "PUT", path: "/api/v1/devices/d1/group",
			body: `{"group":"lab"}`,
		},
		{
			name: "clear-group", status: 204,
			call:   func(c *Client) (any, error) { return nil, c.SetDeviceGroup(ctx, "d1", "") },
			method: "PUT", path: "/api/v1/devices/d1/group",
			body: `{"group":""}`,
		},
		{
			name: "audit", status: 200, answer: `{"entries":[{"seq":5,"actor":"token:ana","action":"pin","subject":"device d1","at":"2026-03-01T12:00:00Z","prev_hash":"a","hash":"b"}],"verified":true,"head_seq":5,"head_hash":"b"}`,
			call:   func(c *Client) (any, error) { return c.Audit(ctx, 4, 10) },
			method: "GET", path: "/api/v1/audit", query: "after=4&limit=10",
			want: api.AuditList{Entries: []api.AuditEntry{{Seq: 5, Actor: "token:ana", Action: "pin", Subject: "device d1", At: at, PrevHash: "a", Hash: "b"}}, Verified: true, HeadSeq: 5, HeadHash: "b"},
		},
		{
			name: "audit-defaults", status: 200, answer: `{"entries":[],"verified":true}`,
			call:   func(c *Client) (any, error) { return c.Audit(ctx, 0, 0) },
			method: "GET", path: "/api/v1/audit",
			want: api.AuditList{Entries: []api.AuditEntry{}, Verified: true},
		},
		{
			name: "tokens", status: 200, answer: `[{"id":"t1","name":"ci","role":"release","created_at":"2026-03-01T12:00:00Z"}]`,
			call:   func(c *Client) (any, error) { return c.Tokens(ctx) },
			method: "GET", path: "/api/v1/tokens",
			want: []api.TokenInfo{{ID: "t1", Name: "ci", Role: "release", CreatedAt: at}},
		},
		{
			name: "create-token", status: 201, answer: `{"id":"t2","name":"ci","role":"release","created_at":"2026-03-01T12:00:00Z","token":"mxos_new"}`,
			call: func(c *Client) (any, error) {
				return c.CreateToken(ctx, api.TokenCreateRequest{Name: "ci", Role: "release"})
			},
			method: "POST", path: "/api/v1/tokens",
			body: `{"name":"ci","role":"release"}`,
			want: api.TokenCreated{TokenInfo: api.TokenInfo{ID: "t2", Name: "ci", Role: "release", CreatedAt: at}, Token: "mxos_new"},
		},
		{
			name: "revoke-token", status: 204,
			call:   func(c *Client) (any, error) { return nil, c.RevokeToken(ctx, "ci") },
			method: "DELETE", path: "/api/v1/tokens/ci",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, c := newFake(t, tc.status, tc.answer)
			got, err := tc.call(c)
			if err != nil {
				t.Fatal(err)
			}
			r := f.last(t)
			if r.Method != tc.method || r.Path != tc.path || r.Query != tc.query {
				t.Errorf("request %s %s?%s, want %s %s?%s", r.Method, r.Path, r.Query, tc.method, tc.path, tc.query)
			}
			if r.Auth != "Bearer "+testToken {
				t.Errorf("Authorization = %q", r.Auth)
			}
			jsonEqual(t, r.Body, tc.body)
			if tc.body != "" && r.ContentType != "application/json" {
				t.Errorf("Content-Type = %q", r.ContentType)
			}
			if tc.want != nil && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("answer = %+v\nwant     %+v", got, tc.want)
			}
		})
	}
}

// Path segments are escaped, so a "/" in a name cannot reach another route.
func TestPathEscaping(t *testing.T) {
	f, c := newFake(t, 204, "")
	if err := c.DeletePin(context.Background(), ScopeGroup, "lab/2"); err != nil {
		t.Fatal(err)
	}
	if got := f.last(t).RawPath; got != "/api/v1/pins/group/lab%2F2" {
		t.Fatalf("escaped path = %s", got)
	}
	if err := c.RevokeToken(context.Background(), "../pins"); err != nil {
		t.Fatal(err)
	}
	if got := f.last(t).RawPath; got != "/api/v1/tokens/..%2Fpins" {
		t.Fatalf("escaped path = %s", got)
	}
}

func TestLocalValidation(t *testing.T) {
	f, c := newFake(t, 204, "")
	ctx := context.Background()
	errs := []error{
		func() error { _, err := c.RolloutAction(ctx, "r1", "explode", ""); return err }(),
		func() error { _, err := c.RolloutAction(ctx, "", ActionHalt, ""); return err }(),
		c.DeletePin(ctx, "", "x"),
		c.DeletePin(ctx, ScopeDevice, ""),
		c.SetDeviceGroup(ctx, "", "lab"),
		c.RevokeToken(ctx, ""),
		c.RevokeToken(ctx, ".."),
		c.DeletePin(ctx, ScopeGroup, "."),
		func() error { _, err := c.Check(ctx, api.CheckRequest{Arch: "x86_64", Channel: "stable"}); return err }(),
		c.Report(ctx, api.ReportRequest{DeviceID: "d", Seq: 1, Version: "1", Event: "exploded"}),
		c.Report(ctx, api.ReportRequest{DeviceID: "d", Version: "1", Event: api.EventHealthOK}),
	}
	for i, err := range errs {
		if err == nil {
			t.Errorf("case %d: no error", i)
		}
	}
	if n := f.count(); n != 0 {
		t.Fatalf("%d invalid requests reached the server", n)
	}
}

func TestAPIError(t *testing.T) {
	_, c := newFake(t, 403, `{"error":{"code":"forbidden","message":"the device role cannot do this"}}`)
	_, err := c.Pins(context.Background())
	if !errors.Is(err, &api.Error{Code: api.CodeForbidden}) {
		t.Fatalf("err = %v, not forbidden", err)
	}
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Message != "the device role cannot do this" {
		t.Fatalf("errors.As: %v", err)
	}
	if !strings.Contains(err.Error(), "listing pins") {
		t.Fatalf("error lacks context: %v", err)
	}
}

func TestNonJSONError(t *testing.T) {
	f, c := newFake(t, 502, "upstream\nconnect error\x1b[31m")
	f.ctype = "text/plain"
	_, err := c.Channels(context.Background())
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 502 {
		t.Fatalf("err = %#v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "502 Bad Gateway") || !strings.Contains(msg, "upstream connect error") || strings.ContainsAny(msg, "\n\x1b") {
		t.Fatalf("message = %q", msg)
	}

	// An HTML page is not quoted, only its status.
	f.ctype, f.body = "text/html; charset=utf-8", "<html><body>Bad gateway</body></html>"
	_, err = c.Channels(context.Background())
	if err == nil || strings.Contains(err.Error(), "<html>") || !strings.Contains(err.Error(), "502") {
		t.Fatalf("html error: %v", err)
	}

	// An error body without a code is not an API error.
	f.ctype, f.body, f.status = "application/json", `{"error":{}}`, 400
	_, err = c.Channels(context.Background())
	if !errors.As(err, &se) || se.StatusCode != 400 {
		t.Fatalf("empty api error: %v", err)
	}
}

func TestSuccessNotJSON(t *testing.T) {
	f, c := newFake(t, 200, "<html>Welcome to the school Wi-Fi</html>")
	f.ctype = "text/html"
	_, err := c.Channels(context.Background())
	if err == nil || !strings.Contains(err.Error(), "text/html") {
		t.Fatalf("err = %v", err)
	}
	f.ctype, f.body = "application/json", "{"
	if _, err := c.Channels(context.Background()); err == nil || !strings.Contains(err.Error(), "decoding") {
		t.Fatalf("err = %v", err)
	}
	f.status, f.body = 204, ""
	if _, err := c.Channels(context.Background()); err == nil || !strings.Contains(err.Error(), "no body") {
		t.Fatalf("err = %v", err)
	}
}

func TestOversizeBody(t *testing.T) {
	big := `[` + strings.Repeat(`{"name":"x","arches":[]},`, 100) + `{"name":"y"}]`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, big)
	}))
	defer srv.Close()
	c, err := New(srv.URL, testToken, WithMaxResponseBytes(1024))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Channels(context.Background()); err == nil || !strings.Contains(err.Error(), "larger than 1024 bytes") {
		t.Fatalf("err = %v", err)
	}
	c, _ = New(srv.URL, testToken, WithMaxResponseBytes(int64(len(big))))
	if got, err := c.Channels(context.Background()); err != nil || len(got) != 101 {
		t.Fatalf("body at the limit: %d, %v", len(got), err)
	}
}

func TestDefaultLimit(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`"`))
		chunk := []byte(strings.Repeat("a", 1<<16))
		for range (16 << 20) / len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		w.Write([]byte(`"`))
	}))
	defer srv.Close()
	c, _ := New(srv.URL, "")
	if _, err := c.Tokens(context.Background()); err == nil || !strings.Contains(err.Error(), "larger than 16 MiB") {
		t.Fatalf("err = %v", err)
	}
}

// The token appears in no error, even when a server echoes it back.
func TestTokenNeverInErrors(t *testing.T) {
	bodies := []struct {
		status int
		ctype  string
		body   string
	}{
		{401, "application/json", `{"error":{"code":"unauthorized","message":"unknown token ` + testToken + `"}}`},
		{500, "text/plain", "bad header Authorization: Bearer " + testToken},
		{200, "application/json", `{"x":"` + testToken},
	}
	for _, b := range bodies {
		f, c := newFake(t, b.status, b.body)
		f.ctype = b.ctype
		_, err := c.Tokens(context.Background())
		if err == nil {
			t.Fatalf("%d: no error", b.status)
		}
		if strings.Contains(err.Error(), testToken) || strings.Contains(err.Error(), testToken[5:]) {
			t.Fatalf("token in error: %v", err)
		}
	}
	// Connection errors name the URL, never the header.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	c, _ := New("http://"+addr, testToken, WithRetries(0, 0))
	if _, err := c.Pins(context.Background()); err == nil || strings.Contains(err.Error(), testToken) {
		t.Fatalf("connection error: %v", err)
	}
	// Nor does a bad token itself.
	if _, err := New("http://x", "mxos_abc\r\nX-Evil: 1"); err == nil || strings.Contains(err.Error(), "mxos_abc") {
		t.Fatalf("bad token: %v", err)
	}
}

func TestNoTokenNoHeader(t *testing.T) {
	var auth atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth.Store(r.Header.Values("Authorization"))
		io.WriteString(w, "[]")
	}))
	defer srv.Close()
	c, _ := New(srv.URL+"/", "")
	if _, err := c.Pins(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := auth.Load().([]string); len(v) != 0 {
		t.Fatalf("Authorization sent: %v", v)
	}
}

func TestBaseURL(t *testing.T) {
	var path atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path.Store(r.URL.Path)
		io.WriteString(w, "[]")
	}))
	defer srv.Close()
	c, err := New(srv.URL+"/mxos/", testToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Tokens(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p := path.Load(); p != "/mxos/api/v1/tokens" {
		t.Fatalf("path = %v", p)
	}
	for _, bad := range []string{"", "127.0.0.1:8080", "ftp://x", "http://", "http://x/?a=b", "http://u:p@x", "http://x/#f", "http://[::1"} {
		if _, err := New(bad, testToken); err == nil {
			t.Errorf("New(%q) accepted", bad)
		}
	}
}

func TestRetries(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= 2 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(503)
			io.WriteString(w, `{"error":{"code":"internal","message":"starting"}}`)
			return
		}
		if r.Method == http.MethodGet {
			io.WriteString(w, "[]")
		} else {
			w.WriteHeader(204)
		}
	}))
	defer srv.Close()
	ctx := context.Background()

	// A GET is retried past two 503s.
	c, _ := New(srv.URL, testToken, WithRetries(3, time.Millisecond))
	if _, err := c.Pins(ctx); err != nil || n.Load() != 3 {
		t.Fatalf("GET after 503s: %v, %d requests", err, n.Load())
	}
	// Bounded: with one retry the second 503 is the answer.
	n.Store(0)
	c, _ = New(srv.URL, testToken, WithRetries(1, time.Millisecond))
	_, err := c.Pins(ctx)
	if n.Load() != 2 || !errors.Is(err, &api.Error{Code: api.CodeInternal}) {
		t.Fatalf("bounded retries: %v, %d requests", err, n.Load())
	}
	// Writes are never retried.
	n.Store(0)
	c, _ = New(srv.URL, testToken, WithRetries(5, time.Millisecond))
	if err := c.RevokeToken(ctx, "ci"); err == nil || n.Load() != 1 {
		t.Fatalf("DELETE: %v, %d requests", err, n.Load())
	}
	n.Store(0)
	if _, err := c.SetPin(ctx, api.Pin{Scope: "device", Target: "d"}); err == nil || n.Load() != 1 {
		t.Fatalf("PUT: %v, %d requests", err, n.Load())
	}
	// Other errors are not retried.
	var m atomic.Int32
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.Add(1)
		w.WriteHeader(500)
	}))
	defer srv2.Close()
	c, _ = New(srv2.URL, testToken, WithRetries(5, time.Millisecond))
	if _, err := c.Pins(ctx); err == nil || m.Load() != 1 {
		t.Fatalf("500: %v, %d requests", err, m.Load())
	}
}

func TestRetryConnectionError(t *testing.T) {
	// A listener that closes the first connections without answering.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var drops atomic.Int32
	drops.Store(2)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if drops.Add(-1) >= 0 {
			hj, _ := w.(http.Hijacker)
			conn, _, _ := hj.Hijack()
			conn.Close()
			return
		}
		io.WriteString(w, "[]")
	})}
	go srv.Serve(l)
	defer srv.Close()
	c, _ := New("http://"+l.Addr().String(), testToken, WithRetries(3, time.Millisecond))
	if _, err := c.Tokens(context.Background()); err != nil {
		t.Fatalf("GET after dropped connections: %v", err)
	}
}

func TestContextCancelStopsRetries(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(503)
	}))
	defer srv.Close()
	c, _ := New(srv.URL, testToken, WithRetries(10, time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Pins(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second || n.Load() != 1 {
		t.Fatalf("err = %v after %s, %d requests", err, time.Since(start), n.Load())
	}
}

func TestTimeoutOption(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	c, _ := New(srv.URL, testToken, WithTimeout(50*time.Millisecond), WithRetries(0, 0))
	start := time.Now()
	if _, err := c.Pins(context.Background()); err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("err = %v after %s", err, time.Since(start))
	}
}

func TestParseRetryAfter(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 0, "2": 2 * time.Second, "x": 0, "-1": 0, "99999": time.Hour} {
		if got := parseRetryAfter(in); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
	if got := parseRetryAfter(time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)); got != 0 {
		t.Errorf("past date = %s", got)
	}
}

// A redirect is reported with its target, never followed: following it
// would turn a DELETE into a GET elsewhere.
func TestRedirectNotFollowed(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		http.Redirect(w, r, "https://updates.example.mx/api/v1/tokens/ci", http.StatusPermanentRedirect)
	}))
	defer srv.Close()
	c, _ := New(srv.URL, testToken)
	err := c.RevokeToken(context.Background(), "ci")
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 308 || n.Load() != 1 ||
		!strings.Contains(err.Error(), "to https://updates.example.mx/api/v1/tokens/ci: check the server address") {
		t.Fatalf("redirect: %v (%d requests)", err, n.Load())
	}
}

func TestWithHTTPClientUntouched(t *testing.T) {
	hc := &http.Client{Timeout: time.Minute}
	c, _ := New("http://x", "", WithHTTPClient(hc), WithTimeout(time.Second))
	if hc.Timeout != time.Minute || c.hc.Timeout != time.Second {
		t.Fatalf("caller's client %s, used %s", hc.Timeout, c.hc.Timeout)
	}
}
