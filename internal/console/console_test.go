package console_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/auth"
)

func TestPages(t *testing.T) {
	f := newFleet(t)
	b := f.browser(t)
	if resp, _ := b.get("/console/devices"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/login") {
		t.Fatalf("signed out: %s to %q, want a redirect to the sign-in page", resp.Status, resp.Header.Get("Location"))
	}
	page := b.signIn(f.Tokens[auth.RoleAdmin])
	for _, want := range []string{"testing", "10.0.2", "50% of devices offered now", "Next step: 100% on ", "1 healthy, 1 failed", f.rollout,
		"over the last 14 days: healthy 1, failed 1", "healthy): 10.0.1 1, 10.0.2 1"} {
		if !strings.Contains(page, want) {
			t.Errorf("channels page lacks %q", want)
		}
	}
	for path, wants := range map[string][]string{
		"/console/releases":              {"10.0.1", "sha256:2222"},
		"/console/devices":               {"d-ok", "d-bad", "d-old", "health-failed"},
		"/console/devices?status=failed": {"d-bad"},
		"/console/devices/d-bad":         {failText, "health-failed"},
		"/console/pins":                  {"New pin"},
		"/console/locks":                 {"d-old", "lab-1", "Release the slot of d-old in lab-1"},
		"/console/tokens":                {"t-release", "t-admin"},
		"/console/audit":                 {"The audit chain verifies", "rollout.start"},
	} {
		resp, page := b.get(path)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %s\n%s", path, resp.Status, page)
			continue
		}
		for _, w := range wants {
			if !strings.Contains(page, w) {
				t.Errorf("%s lacks %q", path, w)
			}
		}
	}
	if _, page := b.get("/console/devices?status=failed"); strings.Contains(page, ">d-ok<") {
		t.Error("the failed filter shows d-ok")
	}
}

// TestPinWarnings: the pin form warns before pinning an unknown device,
// an empty group, a version the channel never published or a channel the
// device does not follow, pins nothing until confirmed, and then pins
// through the API (audited as the signed-in token).
func TestPinWarnings(t *testing.T) {
	f := newFleet(t)
	b := f.browser(t)
	page := b.signIn(f.Tokens[auth.RoleAdmin])
	tok := csrf(t, page)
	for _, tc := range []struct {
		form url.Values
		want string
	}{
		{url.Values{"scope": {"device"}, "target": {"ghost"}, "version": {"10.0.1"}}, "No device ghost has checked in yet."},
		{url.Values{"scope": {"group"}, "target": {"lab-9"}, "channel": {"testing"}}, "No device is in group lab-9."},
		{url.Values{"scope": {"device"}, "target": {"d-ok"}, "version": {"10.0.7"}}, "Version 10.0.7 is not published on testing."},
		{url.Values{"scope": {"device"}, "target": {"d-ok"}, "channel": {"stable"}}, "Device d-ok follows testing: it moves to stable only if its allowed_channels lists it"},
	} {
		tc.form.Set("csrf", tok)
		resp, body := b.do(http.MethodPost, "/console/pins", tc.form)
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, tc.want) || !strings.Contains(body, "Pin anyway") {
			t.Errorf("%v: %s, want a warning %q\n%s", tc.form, resp.Status, tc.want, body)
		}
	}
	adm := f.Client(t, auth.RoleAdmin)
	if pins, err := adm.Pins(context.Background()); err != nil || len(pins) != 0 {
		t.Fatalf("pins before any confirmation: %v, %v", pins, err)
	}
	form := url.Values{"csrf": {tok}, "scope": {"group"}, "target": {"lab-1"}, "version": {"10.0.1"}}
	if resp, body := b.do(http.MethodPost, "/console/pins", form); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a pin with nothing to warn about: %s\n%s", resp.Status, body)
	}
	form = url.Values{"csrf": {tok}, "scope": {"device"}, "target": {"d-ok"}, "channel": {"stable"}, "confirm": {"1"}}
	if resp, body := b.do(http.MethodPost, "/console/pins", form); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("a confirmed pin: %s\n%s", resp.Status, body)
	}
	pins, err := adm.Pins(context.Background())
	if err != nil || len(pins) != 2 {
		t.Fatalf("pins: %+v, %v", pins, err)
	}
	for _, p := range pins {
		if p.CreatedBy != "token:t-admin" {
			t.Errorf("pin %+v not made by token:t-admin", p)
		}
	}
	_, page = b.get("/console/pins")
	if !strings.Contains(page, "lab-1") || !strings.Contains(page, "d-ok") {
		t.Error("the pins page does not list the new pins")
	}
}

// TestSpanish: with Accept-Language es-MX the console and the API errors
// it shows are in Spanish; the switch's cookie overrides the header.
func TestSpanish(t *testing.T) {
	f := newFleet(t)
	b := f.browser(t)
	b.lang = "es-MX,es;q=0.9"
	page := b.signIn(f.Tokens[auth.RoleAdmin])
	for _, w := range []string{`lang="es-MX"`, "Canales", "1 sanos, 1 con falla"} {
		if !strings.Contains(page, w) {
			t.Errorf("channels page in Spanish lacks %q", w)
		}
	}
	_, page = b.get("/console/tokens")
	resp, body := b.do(http.MethodPost, "/console/tokens", url.Values{"csrf": {csrf(t, page)}, "name": {"x"}, "role": {"admin"}, "expires": {"forever"}})
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(body, "vencimiento:") {
		t.Errorf("token with a bad expiry: %s, want the API's Spanish error\n%s", resp.Status, body)
	}
	resp, _ = b.do(http.MethodPost, "/console/lang", url.Values{"csrf": {csrf(t, page)}, "lang": {"en"}, "next": {"/console/channels"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("language switch: %s", resp.Status)
	}
	if _, page = b.get("/console/channels"); !strings.Contains(page, ">Channels<") || strings.Contains(page, "Canales") {
		t.Error("after switching to English the channels page is not in English")
	}
}
