package console_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/testserver"
)

// fleet is a running mxos-server with two releases on testing, a rollout
// of the second, and devices that reported on it: d-ok healthy, d-bad
// failed its health checks (with error text), d-old still on 10.0.1 and
// holding a restart slot of group lab-1.
type fleet struct {
	*testserver.Server
	rollout string
}

const failText = "required check network-online failed: no route to host"

func newFleet(t *testing.T) *fleet {
	t.Helper()
	ctx := context.Background()
	s := testserver.Start(t, testserver.Options{Roles: []auth.Role{auth.RoleRelease, auth.RoleAdmin}, Serve: true})
	now := time.Now()
	for i, v := range []string{"10.0.1", "10.0.2"} {
		err := s.Store.AddRelease(ctx, db.Release{Channel: "testing", Arch: "x86_64", Version: v, Ref: "mxos/10/x86_64/testing",
			Commit: strings.Repeat(string(rune('a'+i)), 64), PublishedAt: now.Add(time.Duration(i-2) * time.Hour), PublishedBy: "token:t-release",
			OCIDigest: "sha256:" + strings.Repeat(string(rune('1'+i)), 64)})
		if err != nil {
			t.Fatal(err)
		}
	}
	ros, err := s.Client(t, auth.RoleRelease).StartRollout(ctx, api.RolloutStartRequest{Channel: "testing", Version: "10.0.2", Ramp: "50%,100%@24h"})
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{Server: s, rollout: ros[0].ID}
	adm := s.Client(t, auth.RoleAdmin)
	for _, d := range []struct {
		id, version string
		ev          api.Event
		text        string
	}{
		{"d-ok", "10.0.2", api.EventHealthOK, ""},
		{"d-bad", "10.0.2", api.EventHealthFailed, failText},
		{"d-old", "10.0.1", api.EventHealthOK, ""},
	} {
		dc, err := client.New(s.URL, s.DeviceToken(t, d.id))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dc.Check(ctx, api.CheckRequest{DeviceID: d.id, Arch: "x86_64", Channel: "testing", Version: d.version}); err != nil {
			t.Fatal(err)
		}
		ro := f.rollout
		if d.version != "10.0.2" {
			ro = ""
		}
		if err := dc.Report(ctx, api.ReportRequest{DeviceID: d.id, Seq: 1, RolloutID: ro, Version: d.version, Event: d.ev, Error: d.text}); err != nil {
			t.Fatal(err)
		}
		if err := adm.SetDeviceGroup(ctx, d.id, "lab-1"); err != nil {
			t.Fatal(err)
		}
		if d.id == "d-old" { // waiting to restart into an update
			if _, err := dc.AcquireFleetLock(ctx, api.FleetLockRequest{DeviceID: d.id, Group: "lab-1", Slots: 2}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return f
}

// browser is an HTTP client with its own cookies, as a browser keeps them.
type browser struct {
	t    *testing.T
	base string
	hc   *http.Client
	lang string
}

func (f *fleet) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: f.URL, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, path string, form url.Values, header ...string) (*http.Response, string) {
	b.t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if b.lang != "" {
		req.Header.Set("Accept-Language", b.lang)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, string(data)
}

func (b *browser) get(path string) (*http.Response, string) { return b.do(http.MethodGet, path, nil) }

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads a form's CSRF token from a page.
func csrf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF field in the page:\n%s", page)
	}
	return m[1]
}

// signIn signs in with token and returns the channels page.
func (b *browser) signIn(token string) string {
	b.t.Helper()
	_, page := b.get("/console/login")
	resp, _ := b.do(http.MethodPost, "/console/login", url.Values{"csrf": {csrf(b.t, page)}, "token": {token}, "next": {"/console/channels"}})
	if resp.StatusCode != http.StatusSeeOther {
		b.t.Fatalf("sign in: %s", resp.Status)
	}
	resp, page = b.get("/console/channels")
	if resp.StatusCode != http.StatusOK {
		b.t.Fatalf("channels after sign in: %s\n%s", resp.Status, page)
	}
	return page
}

func (f *fleet) now() time.Time { return time.Now() }

// waitTokenCache outlasts the server's token cache (one second).
func waitTokenCache() { time.Sleep(1100 * time.Millisecond) }

type apiPin = api.Pin
