package console_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/auth"
)

// rolloutState is the rollout's state as the API sees it.
func (f *fleet) rolloutState(t *testing.T) string {
	t.Helper()
	ros, err := f.Client(t, auth.RoleRelease).Rollouts(context.Background(), "testing")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ros {
		if r.ID == f.rollout {
			return r.State
		}
	}
	t.Fatalf("rollout %s is gone", f.rollout)
	return ""
}

// TestFormsRefuseCrossSite: a pause with a missing, wrong or other
// session's CSRF token, or from another site's page (Origin,
// Sec-Fetch-Site), is refused with 403 and changes nothing; the same form
// with its token from this console works.
func TestFormsRefuseCrossSite(t *testing.T) {
	f := newFleet(t)
	b := f.browser(t)
	page := b.signIn(f.Tokens[auth.RoleRelease])
	good := csrf(t, page)
	other := f.browser(t)
	otherToken := csrf(t, other.signIn(f.Tokens[auth.RoleRelease]))
	path := "/console/rollouts/" + f.rollout + "/pause"
	for _, tc := range []struct {
		name   string
		form   url.Values
		header []string
	}{
		{"no token", url.Values{}, nil},
		{"empty token", url.Values{"csrf": {""}}, nil},
		{"wrong token", url.Values{"csrf": {strings.Repeat("A", len(good))}}, nil},
		{"another session's token", url.Values{"csrf": {otherToken}}, nil},
		{"foreign Origin", url.Values{"csrf": {good}}, []string{"Origin", "https://evil.example"}},
		{"cross-site fetch", url.Values{"csrf": {good}}, []string{"Sec-Fetch-Site", "cross-site"}},
	} {
		resp, body := b.do(http.MethodPost, path, tc.form, tc.header...)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %s, want 403\n%s", tc.name, resp.Status, body)
		}
		if st := f.rolloutState(t); st != "active" {
			t.Fatalf("%s: the rollout is %s after a refused request", tc.name, st)
		}
	}
	// A signed-out browser's form (a token from the sign-in page) cannot
	// act either.
	anon := f.browser(t)
	_, login := anon.get("/console/login")
	if resp, _ := anon.do(http.MethodPost, path, url.Values{"csrf": {csrf(t, login)}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("signed out: %s, want 403", resp.Status)
	}
	// Each refusal is audited, with the signed-in token where known.
	entries, err := f.Store.ListAudit(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	denied := 0
	for _, e := range entries {
		if e.Action == "auth.denied" && e.Subject == "POST "+path {
			denied++
			if e.Actor != "token:t-release" && e.Actor != "anonymous" {
				t.Errorf("denied entry %+v: actor", e)
			}
		}
	}
	if denied != 7 { // the six above and the signed-out one
		t.Errorf("%d auth.denied entries for the refused pauses, want 7", denied)
	}
	resp, body := b.do(http.MethodPost, path, url.Values{"csrf": {good}}, "Origin", f.URL, "Sec-Fetch-Site", "same-origin")
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("same-site pause: %s\n%s", resp.Status, body)
	}
	if st := f.rolloutState(t); st != "paused" {
		t.Fatalf("after the console's pause the rollout is %s", st)
	}
	// Sign-in and language forms are protected too.
	if resp, _ := anon.do(http.MethodPost, "/console/login", url.Values{"token": {f.Tokens[auth.RoleAdmin]}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign in without a CSRF token: %s, want 403", resp.Status)
	}
	if resp, _ := anon.do(http.MethodPost, "/console/lang", url.Values{"lang": {"es"}, "csrf": {csrf(t, login)}}, "Origin", "https://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("language switch from another site: %s, want 403", resp.Status)
	}
}

// TestRolesSeeOnlyWhatTheyMay: an admin sees no rollout buttons and is
// refused a rollout action; the release role sees no devices, pins or
// tokens and is refused them; device tokens cannot sign in.
func TestRolesSeeOnlyWhatTheyMay(t *testing.T) {
	f := newFleet(t)
	adm := f.browser(t)
	page := adm.signIn(f.Tokens[auth.RoleAdmin])
	if strings.Contains(page, "/pause\"") || strings.Contains(page, ">Pause<") {
		t.Error("the admin's channels page shows a pause button")
	}
	if resp, _ := adm.do(http.MethodPost, "/console/rollouts/"+f.rollout+"/halt", url.Values{"csrf": {csrf(t, page)}, "reason": {"x"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("admin halting a rollout: %s, want 403", resp.Status)
	}
	if st := f.rolloutState(t); st != "active" {
		t.Fatalf("the admin's refused halt left the rollout %s", st)
	}

	rel := f.browser(t)
	page = rel.signIn(f.Tokens[auth.RoleRelease])
	if !strings.Contains(page, ">Pause<") {
		t.Error("the release role's channels page has no pause button")
	}
	for _, nav := range []string{`href="/console/devices"`, `href="/console/pins"`, `href="/console/tokens"`, `href="/console/locks"`} {
		if strings.Contains(page, nav) {
			t.Errorf("the release role's navigation shows %s", nav)
		}
	}
	for _, p := range []string{"/console/devices", "/console/devices/d-bad", "/console/pins", "/console/tokens", "/console/locks"} {
		if resp, _ := rel.get(p); resp.StatusCode != http.StatusForbidden {
			t.Errorf("release role GET %s: %s, want 403", p, resp.Status)
		}
	}
	form := url.Values{"csrf": {csrf(t, page)}, "scope": {"device"}, "target": {"d-ok"}, "channel": {"stable"}, "confirm": {"1"}}
	if resp, _ := rel.do(http.MethodPost, "/console/pins", form); resp.StatusCode != http.StatusForbidden {
		t.Errorf("release role setting a pin: %s, want 403", resp.Status)
	}
	if pins, err := f.Client(t, auth.RoleAdmin).Pins(context.Background()); err != nil || len(pins) != 0 {
		t.Errorf("pins after the refused pin: %v, %v", pins, err)
	}

	dev := f.browser(t)
	_, login := dev.get("/console/login")
	resp, body := dev.do(http.MethodPost, "/console/login", url.Values{"csrf": {csrf(t, login)}, "token": {f.DeviceToken(t, "d-x")}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "Only release and admin tokens") {
		t.Errorf("device token sign-in: %s\n%s", resp.Status, body)
	}
	if resp, _ := dev.get("/console/channels"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after a refused sign-in: %s, want a redirect to sign in", resp.Status)
	}
}

// TestSessionCookie: HttpOnly, SameSite=Strict, scoped to /console/;
// revoking the token ends the session.
func TestSessionCookie(t *testing.T) {
	f := newFleet(t)
	b := f.browser(t)
	_, page := b.get("/console/login")
	resp, _ := b.do(http.MethodPost, "/console/login", url.Values{"csrf": {csrf(t, page)}, "token": {f.Tokens[auth.RoleAdmin]}})
	var found bool
	for _, c := range resp.Cookies() {
		if c.Name != "mxos_session" {
			continue
		}
		found = true
		if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/console/" {
			t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/console/", c)
		}
	}
	if !found {
		t.Fatal("no session cookie after sign-in")
	}
	if _, err := f.Store.RevokeToken(context.Background(), "t-admin", f.now()); err != nil {
		t.Fatal(err)
	}
	waitTokenCache()
	if resp, _ := b.get("/console/channels"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after revoking the token: %s, want a redirect to sign in", resp.Status)
	}
}
