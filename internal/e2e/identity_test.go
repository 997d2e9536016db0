package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/rollout"
	"github.com/mxos-linux/mxos-update/internal/testserver"
)

// hostToken runs `mxos-server token create` on the host and returns its
// stdout, which must be the token alone.
func hostToken(t *testing.T, data string, args ...string) string {
	t.Helper()
	cmd := exec.Command(mxosServer(), append([]string{"token", "create", "--data", data}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("mxos-server token create %v: %v\n%s", args, err, stderr.String())
	}
	tok := strings.TrimSuffix(stdout.String(), "\n")
	if !strings.HasPrefix(tok, "mxos_") || strings.ContainsAny(tok, " \n") || !strings.Contains(stderr.String(), "shown only once") {
		t.Fatalf("token create printed stdout %q, stderr %q; want the token alone on stdout", stdout.String(), stderr.String())
	}
	return tok
}

// call sends one JSON API request with a bearer token.
func call(t *testing.T, base, tok, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, base+path, rd)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// Issue 9, failures 3 and 6, against the real mxos-server binary: 1,000
// forged reports from invented ids with the school's enroll token (and
// with an enrolled machine's credential) change no rollout statistics;
// a replayed report is refused; another device's credential gets 403; an
// admin token cannot mint a release token nor revoke the last admin
// token; token create prints only the secret.
func TestIdentityAgainstServerBinary(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	// A release on testing with an active rollout, as a publish leaves it.
	store, err := db.Open(ctx, "", data)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := store.AddRelease(ctx, db.Release{Channel: "testing", Arch: "x86_64", Version: "10.0.1", Ref: "mxos/10/x86_64/testing",
		Commit: strings.Repeat("ab", 32), PublishedAt: now, PublishedBy: "test"}); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateRollout(ctx, db.Rollout{ID: "r1", Channel: "testing", Arch: "x86_64", Version: "10.0.1", Ramp: "100%",
		State: rollout.StateActive, CreatedAt: now, CreatedBy: "test"}); err != nil {
		t.Fatal(err)
	}
	store.Close()
	admin := hostToken(t, data, "--role", "admin", "--name", "soporte")
	enroll := hostToken(t, data, "--role", "enroll", "--name", "escuela-2026", "--expires", "365d")
	base := strings.TrimSuffix(startServerBinary(t, data, "--channels", testserver.ChannelsDir()), "/repo") + api.Prefix

	enrollAs := func(id string) string {
		code, body := call(t, base, enroll, "POST", "/enroll", api.EnrollRequest{DeviceID: id})
		var c api.Credential
		if code != 201 || json.Unmarshal(body, &c) != nil {
			t.Fatalf("enroll %s: %d %s", id, code, body)
		}
		return c.Token
	}
	real, other := enrollAs("aula-01"), enrollAs("aula-02")
	for id, tok := range map[string]string{"aula-01": real, "aula-02": other} {
		if code, body := call(t, base, tok, "POST", "/check", api.CheckRequest{DeviceID: id, Arch: "x86_64", Channel: "testing", Version: "10.0.0"}); code != 200 {
			t.Fatalf("check %s: %d %s", id, code, body)
		}
	}
	ok := api.ReportRequest{DeviceID: "aula-01", Seq: 5, RolloutID: "r1", Version: "10.0.1", Event: api.EventHealthOK}
	if code, body := call(t, base, real, "POST", "/report", ok); code != 204 {
		t.Fatalf("report: %d %s", code, body)
	}
	stats := func() (int, int, string) {
		t.Helper()
		code, body := call(t, base, admin, "GET", "/rollouts?channel=testing", nil)
		var ros []api.RolloutStatus
		if code != 200 || json.Unmarshal(body, &ros) != nil || len(ros) != 1 {
			t.Fatalf("rollouts: %d %s", code, body)
		}
		return ros[0].Successes, ros[0].Failures, ros[0].State
	}
	okBefore, badBefore, _ := stats()
	for i := range 1000 {
		forged := api.ReportRequest{DeviceID: fmt.Sprintf("inventado-%04d", i), Seq: int64(i + 1), RolloutID: "r1", Version: "10.0.1",
			Event: api.EventBootFailed, Error: "kernel panic"}
		tok := enroll
		if i%2 == 1 {
			tok = real
		}
		if code, body := call(t, base, tok, "POST", "/report", forged); code != 403 {
			t.Fatalf("forged report %d: %d %s", i, code, body)
		}
	}
	// A replay, and another device's credential.
	replay := ok
	replay.Event = api.EventHealthFailed
	if code, body := call(t, base, real, "POST", "/report", replay); code != 409 || !strings.Contains(string(body), string(api.CodeReplay)) {
		t.Fatalf("replay: %d %s", code, body)
	}
	stolen := ok
	stolen.Seq, stolen.Event = 99, api.EventHealthFailed
	if code, body := call(t, base, other, "POST", "/report", stolen); code != 403 {
		t.Fatalf("another device's credential: %d %s", code, body)
	}
	if okAfter, badAfter, state := stats(); okAfter != okBefore || badAfter != badBefore || badAfter != 0 || state != "active" {
		t.Fatalf("rollout after forgeries: %d ok, %d failed, %s (before %d, %d)", okAfter, badAfter, state, okBefore, badBefore)
	}
	// Token powers.
	if code, body := call(t, base, admin, "POST", "/tokens", api.TokenCreateRequest{Name: "ci", Role: "release"}); code != 403 {
		t.Fatalf("admin made a release token: %d %s", code, body)
	}
	if code, body := call(t, base, admin, "DELETE", "/tokens/soporte", nil); code != 409 {
		t.Fatalf("revoked the last admin token: %d %s", code, body)
	}
	out, err := exec.Command(mxosctl(), "--server", strings.TrimSuffix(base, api.Prefix), "--token", admin,
		"token", "create", "--name", "kiosko", "--role", "device", "--device", "kiosko-1").Output()
	if err != nil || !strings.HasPrefix(string(out), "mxos_") || strings.Count(string(out), "\n") != 1 {
		t.Fatalf("mxosctl token create stdout %q: %v", out, err)
	}
	// The denials are in the audit log, within its rate limit.
	code, body := call(t, base, admin, "GET", "/audit?limit=1000", nil)
	var audit api.AuditList
	if code != 200 || json.Unmarshal(body, &audit) != nil || !audit.Verified {
		t.Fatalf("audit: %d %s", code, body)
	}
	denied := 0
	for _, e := range audit.Entries {
		if e.Action == "auth.denied" {
			denied++
		}
	}
	if denied == 0 || denied > 100 {
		t.Fatalf("%d denials audited for 1,003 denied requests", denied)
	}
}
