package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

var devTokens sync.Map // [store, device id] → token

// deviceToken returns a device token bound to id (made once per store).
func deviceToken(t testing.TB, store *db.Store, id string) string {
	t.Helper()
	key := [2]any{store, id}
	if tok, ok := devTokens.Load(key); ok {
		return tok.(string)
	}
	tc, err := CreateTokenWith(context.Background(), store, TokenOptions{Name: "dev-" + id, Role: auth.RoleDevice, By: "test", Now: time.Now(), DeviceID: id})
	if err != nil {
		t.Fatal(err)
	}
	devTokens.Store(key, tc.Token)
	return tc.Token
}

// changesAudited counts the audit entries that record changes, leaving
// out denied requests (auth.denied*), which are audited too.
func changesAudited(t testing.TB, store *db.Store) int {
	t.Helper()
	n := 0
	for after := int64(0); ; {
		es, err := store.ListAudit(context.Background(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			return n
		}
		for _, e := range es {
			if !strings.HasPrefix(e.Action, "auth.denied") {
				n++
			}
		}
		after = es[len(es)-1].Seq
	}
}

// enroll trades the fixture's enroll token for id's credential.
func (f *apiFixture) enroll(t testing.TB, id string) string {
	t.Helper()
	code, body := f.doTB(t, f.tokens["enroll"], "POST", "/api/v1/enroll", api.EnrollRequest{DeviceID: id})
	var c api.Credential
	if code != 201 || json.Unmarshal(body, &c) != nil || c.DeviceID != id || c.Token == "" {
		t.Fatalf("enroll %s: %d %s", id, code, body)
	}
	if d := time.Until(c.ExpiresAt); d < auth.DeviceCredentialTTL-time.Hour || d > auth.DeviceCredentialTTL {
		t.Fatalf("credential of %s expires in %s", id, d)
	}
	return c.Token
}

func (f *apiFixture) doTB(t testing.TB, token, method, path string, body any) (int, []byte) {
	tt, ok := t.(*testing.T)
	if !ok {
		t.Fatal("doTB needs a *testing.T")
	}
	return f.do(tt, token, method, path, body)
}

func (f *apiFixture) startRollout(t *testing.T, channel, version string) string {
	t.Helper()
	code, body := f.do(t, f.tokens["release"], "POST", "/api/v1/rollouts", api.RolloutStartRequest{Channel: channel, Arch: "x86_64", Version: version, Ramp: "100%"})
	var started []api.RolloutStatus
	if code != 201 || json.Unmarshal(body, &started) != nil || len(started) != 1 {
		t.Fatalf("start: %d %s", code, body)
	}
	return started[0].ID
}

func (f *apiFixture) auditActions(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	for after := int64(0); ; {
		es, err := f.store.ListAudit(context.Background(), after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			return out
		}
		for _, e := range es {
			out[e.Action]++
		}
		after = es[len(es)-1].Seq
	}
}

// Issue 9, failure 3: one token checked and reported under any device id,
// a report was accepted again and again, and ten failures from invented
// ids halted a rollout. Now 1,000 forged reports with the enroll token,
// and with one enrolled device's credential, change nothing; a replay is
// refused; another device's credential gets 403; the denials are audited
// within the rate limit.
func TestForgedReportsChangeNothing(t *testing.T) {
	f := newAPIFixture(t)
	ctx := context.Background()
	id := f.startRollout(t, "testing", "10.0.2")
	// One real device, enrolled and healthy.
	real := f.enroll(t, "real-1")
	if code, body := f.do(t, real, "POST", "/api/v1/check", api.CheckRequest{DeviceID: "real-1", Arch: "x86_64", Channel: "testing", Version: "10.0.1"}); code != 200 {
		t.Fatalf("check: %d %s", code, body)
	}
	ok := api.ReportRequest{DeviceID: "real-1", Seq: 10, RolloutID: id, Version: "10.0.2", Event: api.EventHealthOK}
	if code, body := f.do(t, real, "POST", "/api/v1/report", ok); code != 204 {
		t.Fatalf("report: %d %s", code, body)
	}
	before, err := f.store.RolloutStats(ctx, id, time.Now().Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	devicesBefore, _ := f.store.CountDevices(ctx, db.DeviceFilter{})
	for i := range 1000 {
		forged := api.ReportRequest{DeviceID: fmt.Sprintf("forged-%04d", i), Seq: int64(i + 1), RolloutID: id, Version: "10.0.2",
			Event: api.ReleaseFailures[i%len(api.ReleaseFailures)], Error: "health check failed"}
		tok := f.tokens["enroll"]
		if i%2 == 1 {
			tok = real // a real device's credential, reporting for others
		}
		if code, body := f.do(t, tok, "POST", "/api/v1/report", forged); code != 403 || errCode(body) != api.CodeForbidden {
			t.Fatalf("forged report %d: %d %s", i, code, body)
		}
		if i%100 == 0 {
			if code, _ := f.do(t, tok, "POST", "/api/v1/check", api.CheckRequest{DeviceID: forged.DeviceID, Arch: "x86_64", Channel: "testing"}); code != 403 {
				t.Fatalf("forged check %d: %d", i, code)
			}
		}
	}
	// Replays of the real device's report, as sent and older.
	for _, seq := range []int64{10, 9, 1} {
		r := ok
		r.Seq, r.Event = seq, api.EventHealthFailed
		if code, body := f.do(t, real, "POST", "/api/v1/report", r); code != 409 || errCode(body) != api.CodeReplay {
			t.Fatalf("replay seq %d: %d %s", seq, code, body)
		}
	}
	after, err := f.store.RolloutStats(ctx, id, time.Now().Add(-24*time.Hour))
	if err != nil || after != before || after != (rollout.Stats{Successes: 1}) {
		t.Fatalf("stats %+v (%v), before %+v", after, err, before)
	}
	if ro, _ := f.store.GetRollout(ctx, id); ro.State != rollout.StateActive {
		t.Fatalf("rollout %s", ro.State)
	}
	if n, _ := f.store.CountDevices(ctx, db.DeviceFilter{}); n != devicesBefore {
		t.Fatalf("forged requests registered %d devices", n-devicesBefore)
	}
	// Refusals and download errors are stored and shown, never counted.
	for i, ev := range []api.Event{api.EventRefused, api.EventDownloadFailed, api.EventConfigError} {
		r := ok
		r.Seq, r.Event, r.Error = int64(20+i), ev, "no route to host"
		if code, body := f.do(t, real, "POST", "/api/v1/report", r); code != 204 {
			t.Fatalf("report %s: %d %s", ev, code, body)
		}
	}
	code, body := f.do(t, f.tokens["admin"], "GET", "/api/v1/devices/real-1/reports", nil)
	var reps []api.DeviceReport
	if code != 200 || json.Unmarshal(body, &reps) != nil || len(reps) != 4 || reps[0].Event != api.EventConfigError || reps[0].Counted || reps[3].Event != api.EventHealthOK {
		t.Fatalf("device reports: %d %s", code, body)
	}
	if s, _ := f.store.RolloutStats(ctx, id, time.Now().Add(-24*time.Hour)); s != (rollout.Stats{Successes: 1}) {
		t.Fatalf("stats after refusals %+v", s)
	}
	// Every denial is counted; the audit log got at most the rate limit.
	acts := f.auditActions(t)
	if acts["auth.denied"] == 0 || acts["auth.denied"] > deniedPerWindow || acts["auth.denied.suppressed"] > 1 {
		t.Fatalf("audit: %d auth.denied entries, %d summaries (limit %d)", acts["auth.denied"], acts["auth.denied.suppressed"], deniedPerWindow)
	}
	_, body = f.do(t, "", "GET", "/metrics", nil)
	if !strings.Contains(string(body), `mxos_api_denied_total{status="403"} 1010`) {
		t.Fatalf("metrics lack the denials:\n%s", grepLines(string(body), "denied"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// The rate limit's summary: once a window is over, the next denial first
// writes how many were not audited one by one.
func TestDeniedAuditSummary(t *testing.T) {
	f := newAPIFixture(t)
	srvNow := time.Now()
	var mu sync.Mutex
	f.setNow(t, func() time.Time { mu.Lock(); defer mu.Unlock(); return srvNow })
	for range deniedPerWindow + 7 {
		f.do(t, f.tokens["device"], "GET", "/api/v1/pins", nil)
	}
	mu.Lock()
	srvNow = srvNow.Add(deniedWindow)
	mu.Unlock()
	f.do(t, "", "GET", "/api/v1/pins", nil)
	es, err := f.store.ListAudit(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var denied, summaries []db.Entry
	for _, e := range es {
		switch e.Action {
		case "auth.denied":
			denied = append(denied, e)
		case "auth.denied.suppressed":
			summaries = append(summaries, e)
		}
	}
	if len(denied) != deniedPerWindow+1 || len(summaries) != 1 || summaries[0].Detail != `{"suppressed":7}` {
		t.Fatalf("%d denials, summaries %+v", len(denied), summaries)
	}
	first := denied[0]
	if first.Actor != "token:t-device" || first.Subject != "GET /api/v1/pins" || !strings.Contains(first.Detail, `"status":403`) {
		t.Fatalf("denial entry %+v", first)
	}
	if last := denied[len(denied)-1]; last.Actor != "anonymous" || !strings.Contains(last.Detail, `"status":401`) {
		t.Fatalf("anonymous denial entry %+v", last)
	}
	if strings.Contains(fmt.Sprint(es), f.tokens["device"]) {
		t.Fatal("the audit log holds a token")
	}
}

// Enrollment happens once per id; admins authorize ids to enroll again
// and revoke them; a device token binds to the first id that uses it.
func TestEnrollmentAndIdentities(t *testing.T) {
	f := newAPIFixture(t)
	adm, enr := f.tokens["admin"], f.tokens["enroll"]
	cred := f.enroll(t, "pc1")
	// Register once: a stolen enroll token cannot take pc1 over.
	if code, body := f.do(t, enr, "POST", "/api/v1/enroll", api.EnrollRequest{DeviceID: "pc1"}); code != 409 || errCode(body) != api.CodeEnrolled {
		t.Fatalf("second enrollment: %d %s", code, body)
	}
	// Nor a machine that checks in with a device token.
	shared := f.tokens["device"]
	if code, body := f.do(t, shared, "POST", "/api/v1/check", api.CheckRequest{DeviceID: "kiosk", Arch: "x86_64", Channel: "stable"}); code != 200 {
		t.Fatalf("kiosk check: %d %s", code, body)
	}
	if code, _ := f.do(t, enr, "POST", "/api/v1/enroll", api.EnrollRequest{DeviceID: "kiosk"}); code != 409 {
		t.Fatalf("enrolled a known device: %d", code)
	}
	// The device token is now kiosk's: the first id that used it.
	if code, _ := f.do(t, shared, "POST", "/api/v1/check", api.CheckRequest{DeviceID: "kiosk-2", Arch: "x86_64", Channel: "stable"}); code != 403 {
		t.Fatalf("bound token used for another id: %d", code)
	}
	// Rotation: a new credential; the old one works for the grace period.
	code, body := f.do(t, cred, "POST", "/api/v1/credential/rotate", nil)
	var next api.Credential
	if code != 201 || json.Unmarshal(body, &next) != nil || next.DeviceID != "pc1" || next.Token == cred {
		t.Fatalf("rotate: %d %s", code, body)
	}
	for _, tok := range []string{cred, next.Token} {
		if code, body := f.do(t, tok, "POST", "/api/v1/check", api.CheckRequest{DeviceID: "pc1", Arch: "x86_64", Channel: "stable"}); code != 200 {
			t.Fatalf("check after rotation: %d %s", code, body)
		}
	}
	old, err := f.store.TokenByHash(context.Background(), auth.Hash(cred))
	if err != nil || time.Until(old.ExpiresAt) > auth.RotationGrace {
		t.Fatalf("old credential %+v, %v", old, err)
	}
	// Revoke: every credential of pc1 stops at once, and it cannot enroll.
	if code, body := f.do(t, adm, "DELETE", "/api/v1/identities/pc1", nil); code != 200 || !strings.Contains(string(body), `"revoked":2`) {
		t.Fatalf("revoke: %d %s", code, body)
	}
	for _, tok := range []string{cred, next.Token} {
		if code, _ := f.do(t, tok, "POST", "/api/v1/check", api.CheckRequest{DeviceID: "pc1", Arch: "x86_64", Channel: "stable"}); code != 401 {
			t.Fatalf("revoked credential: %d", code)
		}
	}
	if code, _ := f.do(t, enr, "POST", "/api/v1/enroll", api.EnrollRequest{DeviceID: "pc1"}); code != 409 {
		t.Fatalf("revoked id enrolled: %d", code)
	}
	// An admin authorizes it again (a re-imaged machine): it enrolls once.
	if code, body := f.do(t, adm, "PUT", "/api/v1/identities/pc1", nil); code != 200 {
		t.Fatalf("authorize: %d %s", code, body)
	}
	f.enroll(t, "pc1")
	// Pre-authorizing a known machine lets it move to enrollment.
	if code, _ := f.do(t, adm, "PUT", "/api/v1/identities/kiosk", nil); code != 200 {
		t.Fatal("authorize kiosk")
	}
	if code, _ := f.do(t, shared, "GET", "/api/v1/channels", nil); code != 401 {
		t.Fatalf("authorizing kiosk left its old token working: %d", code)
	}
	f.enroll(t, "kiosk")
	_, body = f.do(t, adm, "GET", "/api/v1/identities", nil)
	var ids []api.DeviceIdentity
	if err := json.Unmarshal(body, &ids); err != nil || len(ids) != 2 || ids[0].DeviceID != "kiosk" || ids[0].State != "enrolled" || ids[1].State != "enrolled" || ids[1].Credentials != 1 {
		t.Fatalf("identities: %s", body)
	}
	acts := f.auditActions(t)
	for _, a := range []string{"device.enroll", "device.rotate", "device.revoke", "device.authorize"} {
		if acts[a] == 0 {
			t.Errorf("audit lacks %s", a)
		}
	}
	// Credentials stay out of the token list unless asked for.
	_, body = f.do(t, adm, "GET", "/api/v1/tokens", nil)
	if strings.Contains(string(body), db.DeviceCredentialPrefix) {
		t.Fatalf("token list shows credentials: %s", body)
	}
	_, body = f.do(t, adm, "GET", "/api/v1/tokens?credentials=1", nil)
	if !strings.Contains(string(body), db.DeviceCredentialPrefix+"pc1/") {
		t.Fatalf("token list with credentials: %s", body)
	}
}

// Issue 9, failure 6: token powers.
func TestTokenPowers(t *testing.T) {
	f := newAPIFixture(t)
	adm, rel := f.tokens["admin"], f.tokens["release"]
	// An admin cannot make a release token; the release role can.
	if code, body := f.do(t, adm, "POST", "/api/v1/tokens", api.TokenCreateRequest{Name: "ci", Role: "release"}); code != 403 {
		t.Fatalf("admin made a release token: %d %s", code, body)
	}
	code, body := f.do(t, rel, "POST", "/api/v1/tokens", api.TokenCreateRequest{Name: "ci", Role: "release", Expires: "30d"})
	var ci api.TokenCreated
	if code != 201 || json.Unmarshal(body, &ci) != nil {
		t.Fatalf("release made a release token: %d %s", code, body)
	}
	if d := time.Until(ci.ExpiresAt); d < 30*24*time.Hour-time.Hour || d > 30*24*time.Hour {
		t.Fatalf("--expires 30d gave %s", d)
	}
	// Tokens expire: 90 days unless told.
	code, body = f.do(t, adm, "POST", "/api/v1/tokens", api.TokenCreateRequest{Name: "ana", Role: "admin"})
	var ana api.TokenCreated
	if code != 201 || json.Unmarshal(body, &ana) != nil {
		t.Fatalf("admin token: %d %s", code, body)
	}
	if d := time.Until(ana.ExpiresAt); d < auth.PeopleTTL-time.Hour || d > auth.PeopleTTL {
		t.Fatalf("default lifetime %s", d)
	}
	// The last admin token cannot be revoked over the API.
	if code, _ := f.do(t, adm, "DELETE", "/api/v1/tokens/ana", nil); code != 204 {
		t.Fatalf("revoke ana: %d", code)
	}
	code, body = f.do(t, adm, "DELETE", "/api/v1/tokens/t-admin", nil)
	if code != 409 || errCode(body) != api.CodeConflict || !strings.Contains(string(body), "last admin token") {
		t.Fatalf("revoking the last admin token: %d %s", code, body)
	}
	if code, _ := f.do(t, adm, "GET", "/api/v1/tokens", nil); code != 200 {
		t.Fatalf("last admin token stopped working: %d", code)
	}
	// Denied requests are audited.
	if f.auditActions(t)["auth.denied"] == 0 {
		t.Fatal("the admin's refused release token left no audit trace")
	}
}

// auditedDenials returns the auth.denied entries whose subject starts
// with prefix.
func auditedDenials(es []db.Entry, prefix string) []db.Entry {
	var out []db.Entry
	for _, e := range es {
		if e.Action == "auth.denied" && strings.HasPrefix(e.Subject, prefix) {
			out = append(out, e)
		}
	}
	return out
}
