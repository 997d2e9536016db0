package console_test

import (
	"net/http"
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
		"/console/locks":                 {"No machine holds"},
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
