package main

import (
	"bytes"
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
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
)

const (
	flagToken = "mxos_FLAGFLAGFLAGFLAGFLAGFLAGFLAGFLAGFLAGFLAGFLA"
	envToken  = "mxos_ENVENVENVENVENVENVENVENVENVENVENVENVENVEN"
)

// seen is one request the fake server received.
type seen struct {
	method, path, query, auth, body string
}

type answer struct {
	status int
	ctype  string
	body   string
}

// fakeServer answers "METHOD /path" with canned responses and records
// every request. Unknown routes get the API's not_found error.
type fakeServer struct {
	*httptest.Server
	mu      sync.Mutex
	answers map[string]answer
	reqs    []seen
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	// Start from a clean environment whatever the developer's shell has.
	t.Setenv("MXOS_TOKEN", "")
	t.Setenv("MXOS_SERVER", "")
	f := &fakeServer{answers: map[string]answer{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		key := r.Method + " " + r.URL.Path
		f.mu.Lock()
		f.reqs = append(f.reqs, seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), string(b)})
		a, ok := f.answers[key]
		f.mu.Unlock()
		if !ok {
			a = answer{404, "", `{"error":{"code":"not_found","message":"no route ` + key + `"}}`}
		}
		if a.ctype == "" {
			a.ctype = "application/json"
		}
		w.Header().Set("Content-Type", a.ctype)
		w.WriteHeader(a.status)
		io.WriteString(w, a.body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeServer) on(key string, status int, body string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[key] = answer{status: status, body: body}
}

func (f *fakeServer) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.reqs...)
}

func (f *fakeServer) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = nil
}

// run runs mxosctl against the fake with --server and --token.
func (f *fakeServer) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return run(t, append([]string{"--server", f.URL, "--token", flagToken}, args...)...)
}

func sameJSON(a, b string) bool {
	if a == "" || b == "" {
		return a == b
	}
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

const (
	channelsJSON = `[
	 {"name":"stable","default_ramp":"1%,100%@24h","arches":[
	   {"arch":"x86_64","ref":"mxos/10/x86_64/stable","latest":{"version":"10.0.2"},
	    "rollout":{"id":"r7","channel":"stable","arch":"x86_64","version":"10.0.3","state":"active","fraction":0.1}},
	   {"arch":"aarch64","ref":"mxos/10/aarch64/stable","latest":{"version":"10.0.1"}}]},
	 {"name":"edu","default_ramp":"100%","arches":[]}]`
	rolloutJSON  = `{"id":"r7","channel":"stable","arch":"x86_64","version":"10.0.3","ramp":"1%,10%@24h,100%@72h","state":"halted","fraction":0.1,"halt_reason":"boot loop","successes":40,"failures":9}`
	rolloutsJSON = `[` + rolloutJSON + `,
	 {"id":"r6","channel":"stable","arch":"x86_64","version":"10.0.2","ramp":"100%","state":"complete","fraction":1},
	 {"id":"r5","channel":"stable","arch":"aarch64","version":"10.0.1","ramp":"100%","state":"complete","fraction":1}]`
	devicesJSON = `{"devices":[
	 {"id":"lab-01","arch":"x86_64","channel":"edu","group":"lab","version":"10.0.2","first_seen":"2026-03-01T12:00:00Z","last_seen":"2026-03-02T08:30:00Z"},
	 {"id":"evil\u001b[2J","arch":"x86_64","channel":"edu","first_seen":"2026-03-01T12:00:00Z","last_seen":"2026-03-01T12:00:00Z"}],
	 "total":9,"next":"lab-02"}`
	deviceStatusJSON = `[
	 {"device_id":"lab-01","last":{"version":"10.0.2","event":"health-ok","at":"2026-03-02T08:30:00Z"},
	  "last_failure":{"version":"10.0.3","event":"health-failed","counted":true,"error":"required check sshd failed","at":"2026-03-02T08:00:00Z"}},
	 {"device_id":"evil\u001b[2J","last":{"version":"10.0.3","event":"download-failed","error":"x","at":"2026-03-02T08:30:00Z"},
	  "last_failure":{"version":"10.0.3","event":"download-failed","error":"dial tcp: connection refused by the school's proxy at 10.0.0.1:3128","at":"2026-03-02T08:30:00Z"}}]`
	deviceDetailJSON = `{"id":"lab-01","arch":"x86_64","channel":"edu","group":"lab","version":"10.0.2","first_seen":"2026-03-01T12:00:00Z","last_seen":"2026-03-02T08:30:00Z",
	 "last":{"version":"10.0.2","event":"health-ok","at":"2026-03-02T08:30:00Z"},
	 "last_failure":{"rollout_id":"r7","version":"10.0.3","event":"health-failed","counted":true,"error":"required check sshd failed","at":"2026-03-02T08:00:00Z"},
	 "reports":[{"version":"10.0.2","event":"health-ok","at":"2026-03-02T08:30:00Z"},
	  {"rollout_id":"r7","version":"10.0.3","event":"health-failed","counted":true,"error":"required check sshd failed","at":"2026-03-02T08:00:00Z"}]}`
	statusQuery = "GET /api/v1/device-status?id=lab-01&id=evil%1B%5B2J"
	auditJSON   = `{"entries":[
	 {"seq":4,"actor":"token:ana","action":"pin","subject":"group lab","detail":"{\"channel\":\"edu\"}","at":"2026-03-01T12:00:00Z","prev_hash":"h3","hash":"h4"},
	 {"seq":5,"actor":"token:ci","action":"rollout.halt","subject":"r7","at":"2026-03-01T13:00:00Z","prev_hash":"h4","hash":"h5"}],
	 "verified":true,"head_seq":5,"head_hash":"h5"}`
)

func TestRemoteCommands(t *testing.T) {
	f := newFakeServer(t)
	f.on("GET /api/v1/channels", 200, channelsJSON)
	f.on("GET /api/v1/rollouts", 200, rolloutsJSON)
	f.on("POST /api/v1/rollouts", 201, `[{"id":"r8","channel":"stable","arch":"x86_64","version":"10.0.4","ramp":"1%,10%@24h,50%@48h,100%@72h","state":"active","fraction":0.01},
	  {"id":"r9","channel":"stable","arch":"aarch64","version":"10.0.4","ramp":"1%,10%@24h,50%@48h,100%@72h","state":"active","fraction":0.01}]`)
	f.on("POST /api/v1/rollouts/r7/halt", 200, rolloutJSON)
	f.on("POST /api/v1/rollouts/r7/pause", 200, strings.Replace(rolloutJSON, "halted", "paused", 1))
	f.on("POST /api/v1/rollouts/r7/resume", 200, strings.Replace(rolloutJSON, "halted", "active", 1))
	f.on("POST /api/v1/rollouts/r7/complete", 200, strings.Replace(strings.Replace(rolloutJSON, "halted", "complete", 1), "0.1", "1", 1))
	f.on("PUT /api/v1/pins", 200, `{"scope":"group","target":"lab","channel":"edu","version":"10.0.1"}`)
	f.on("DELETE /api/v1/pins/device/lab-01", 204, "")
	f.on("GET /api/v1/pins", 200, `[{"scope":"group","target":"lab","channel":"edu","created_by":"token:ana","created_at":"2026-03-01T12:00:00Z"},{"scope":"device","target":"lab-01","version":"10.0.1"}]`)
	f.on("GET /api/v1/devices", 200, devicesJSON)
	f.on("GET /api/v1/device-status", 200, deviceStatusJSON)
	f.on("GET /api/v1/devices/lab-01", 200, deviceDetailJSON)
	f.on("PUT /api/v1/devices/lab-01/group", 204, "")
	f.on("GET /api/v1/audit", 200, auditJSON)
	f.on("POST /api/v1/tokens", 201, `{"id":"t3","name":"ci","role":"release","created_at":"2026-03-01T12:00:00Z","expires_at":"2026-05-30T12:00:00Z","token":"mxos_NEWNEWNEW"}`)
	f.on("GET /api/v1/tokens", 200, `[{"id":"t1","name":"ana","role":"admin","created_at":"2026-03-01T12:00:00Z","expires_at":"2026-05-30T12:00:00Z"},{"id":"t2","name":"old","role":"device","device_id":"pc1","created_at":"2026-03-01T12:00:00Z","revoked_at":"2026-03-02T12:00:00Z"}]`)
	f.on("GET /api/v1/identities", 200, `[{"device_id":"kiosk","credentials":1},{"device_id":"pc1","state":"enrolled","credentials":1,"credential_expires":"2026-08-28T12:00:00Z","updated_at":"2026-03-01T12:00:00Z","updated_by":"token:escuela"}]`)
	f.on("PUT /api/v1/identities/pc2", 200, `{"device_id":"pc2","state":"authorized","credentials":0,"revoked":1}`)
	f.on("DELETE /api/v1/identities/pc1", 200, `{"device_id":"pc1","state":"revoked","credentials":0,"revoked":2}`)
	f.on("DELETE /api/v1/tokens/ci", 204, "")

	cases := []struct {
		args []string
		// the requests, as "METHOD path?query body"
		want []string
		out  []string // substrings of the output
	}{
		// channels also reads the signed root to warn before it expires
		// (this server has none).
		{[]string{"channels"}, []string{"GET /api/v1/channels", "GET /metadata/root.json"}, []string{
			"CHANNEL  ARCH     LATEST  ROLLOUT  STATE   SHARE",
			"stable   x86_64   10.0.2  10.0.3   active  10%",
			"stable   aarch64  10.0.1  -        -       -",
			"edu      -        -       -        -       -",
		}},
		{[]string{"rollout", "start", "--channel", "stable", "--version", "10.0.4", "--ramp", "1%,10%@24h,50%@48h,100%@72h"},
			[]string{`POST /api/v1/rollouts {"channel":"stable","version":"10.0.4","ramp":"1%,10%@24h,50%@48h,100%@72h"}`},
			[]string{"Started rollout r8: 10.0.4 on stable/x86_64, ramp 1%,10%@24h,50%@48h,100%@72h, now active at 1%.", "Started rollout r9: 10.0.4 on stable/aarch64"}},
		{[]string{"rollout", "start", "--channel", "stable", "--version", "10.0.4", "--arch", "x86_64"},
			[]string{`POST /api/v1/rollouts {"channel":"stable","arch":"x86_64","version":"10.0.4"}`}, nil},
		{[]string{"rollout", "status", "--channel", "stable"}, []string{"GET /api/v1/rollouts?channel=stable"}, []string{
			"ID  CHANNEL  ARCH     VERSION  STATE     SHARE  OK  FAILED  RAMP                 NEXT STEP  UPDATED  REASON",
			"r7  stable   x86_64   10.0.3   halted    10%    40  9       1%,10%@24h,100%@72h  -          -        boot loop",
			"r5  stable   aarch64  10.0.1   complete  100%",
		}},
		{[]string{"rollout", "status"}, []string{"GET /api/v1/rollouts"}, nil},
		{[]string{"rollout", "halt", "r7", "--reason", "boot loop"},
			[]string{`POST /api/v1/rollouts/r7/halt {"reason":"boot loop"}`},
			[]string{"Rollout r7 (10.0.3 on stable/x86_64) halted: now halted at 10%."}},
		{[]string{"rollout", "pause", "r7"}, []string{`POST /api/v1/rollouts/r7/pause {}`}, []string{"paused: now paused at 10%"}},
		{[]string{"rollout", "resume", "r7"}, []string{`POST /api/v1/rollouts/r7/resume {}`}, []string{"resumed: now active"}},
		{[]string{"rollout", "complete", "r7"}, []string{`POST /api/v1/rollouts/r7/complete {}`}, []string{"completed: now complete at 100%"}},
		// By channel: the newest rollout on the architecture.
		{[]string{"rollout", "halt", "--channel", "stable", "--arch", "x86_64", "--reason", "r"},
			[]string{"GET /api/v1/rollouts?channel=stable", `POST /api/v1/rollouts/r7/halt {"reason":"r"}`}, []string{"Rollout r7"}},
		{[]string{"pin", "--group", "lab", "--channel", "edu", "--version", "10.0.1"},
			[]string{`PUT /api/v1/pins {"scope":"group","target":"lab","channel":"edu","version":"10.0.1"}`},
			[]string{"Pinned group lab: channel edu, held on 10.0.1."}},
		{[]string{"unpin", "--device", "lab-01"}, []string{"DELETE /api/v1/pins/device/lab-01"}, []string{"Removed the pin of device lab-01."}},
		{[]string{"pins"}, []string{"GET /api/v1/pins"}, []string{
			"SCOPE   TARGET  CHANNEL  VERSION  BY         SINCE",
			"group   lab     edu      -        token:ana  2026-03-01 12:00Z",
			"device  lab-01  -        10.0.1   -          -",
		}},
		{[]string{"devices", "--channel", "edu", "--group", "lab", "--limit", "2"},
			[]string{"GET /api/v1/devices?channel=edu&group=lab&limit=2", statusQuery}, []string{
				"DEVICE   ARCH    CHANNEL  GROUP  VERSION  LAST SEEN          STATUS                  LAST FAILURE",
				"lab-01   x86_64  edu      lab    10.0.2   2026-03-02 08:30Z  health-ok 10.0.2        health-failed 10.0.3: required check sshd failed",
				"evil[2J  x86_64  edu      -      -        2026-03-01 12:00Z  download-failed 10.0.3  download-failed 10.0.3: dial tcp: connection refused by the…",
				"evil[2J",
				"Showing 2 of 9 devices.",
				"More: mxosctl devices --after lab-02",
			}},
		{[]string{"devices", "--after", "lab-02"}, []string{"GET /api/v1/devices?after=lab-02", statusQuery}, nil},
		{[]string{"devices", "show", "lab-01"}, []string{"GET /api/v1/devices/lab-01"}, []string{
			"Device:         lab-01",
			"Group:          lab",
			"Last report:    health-ok 10.0.2, 2026-03-02 08:30Z",
			"Last failure:   health-failed 10.0.3, 2026-03-02 08:00Z (rollout r7): required check sshd failed",
			"AT                 EVENT          COUNTED  VERSION  ROLLOUT  ERROR",
			"2026-03-02 08:00Z  health-failed  yes      10.0.3   r7       required check sshd failed",
		}},
		{[]string{"devices", "show", "lab-01", "--limit", "5"}, []string{"GET /api/v1/devices/lab-01?limit=5"}, nil},
		{[]string{"group", "--device", "lab-01", "--group", "lab"},
			[]string{`PUT /api/v1/devices/lab-01/group {"group":"lab"}`}, []string{"Device lab-01 is now in group lab."}},
		{[]string{"group", "--device", "lab-01", "--group", ""},
			[]string{`PUT /api/v1/devices/lab-01/group {"group":""}`}, []string{"Device lab-01 is in no group now."}},
		{[]string{"audit", "--after", "3", "--limit", "2"}, []string{"GET /api/v1/audit?after=3&limit=2"}, []string{
			"SEQ  TIME               ACTOR      ACTION        SUBJECT    DETAIL",
			`4    2026-03-01 12:00Z  token:ana  pin           group lab  {"channel":"edu"}`,
			"5    2026-03-01 13:00Z  token:ci   rollout.halt  r7         -",
			"The audit chain verified: 5 entries, head hash h5.",
		}},
		{[]string{"token", "create", "--name", "ci", "--role", "release"},
			[]string{`POST /api/v1/tokens {"name":"ci","role":"release"}`},
			[]string{"mxos_NEWNEWNEW\n", "Created release token ci (id t3), valid until 2026-05-30 12:00Z."}},
		{[]string{"token", "create", "--name", "kiosk", "--role", "device", "--device", "pc1", "--expires", "30d"},
			[]string{`POST /api/v1/tokens {"name":"kiosk","role":"device","expires":"30d","device_id":"pc1"}`}, nil},
		{[]string{"token", "create", "--name", "aula-3", "--role", "enroll", "--max-devices", "30"},
			[]string{`POST /api/v1/tokens {"name":"aula-3","role":"enroll","max_devices":30}`}, nil},
		{[]string{"token", "list"}, []string{"GET /api/v1/tokens"}, []string{
			"NAME  ROLE    DEVICE  ID  CREATED            BY  EXPIRES            REVOKED",
			"ana   admin   -       t1  2026-03-01 12:00Z  -   2026-05-30 12:00Z  -",
			"old   device  pc1     t2  2026-03-01 12:00Z  -   -                  2026-03-02 12:00Z",
		}},
		{[]string{"token", "list", "--all"}, []string{"GET /api/v1/tokens?credentials=1"}, nil},
		{[]string{"devices", "list", "--group", "lab"}, []string{"GET /api/v1/devices?group=lab", statusQuery}, nil},
		{[]string{"devices", "identities"}, []string{"GET /api/v1/identities"}, []string{
			"DEVICE  STATE        CREDENTIALS  EXPIRES            CHANGED            BY",
			"kiosk   bound-token  1            -                  -                  -",
			"pc1     enrolled     1            2026-08-28 12:00Z  2026-03-01 12:00Z  token:escuela",
		}},
		{[]string{"devices", "authorize", "pc2"}, []string{"PUT /api/v1/identities/pc2"}, []string{"Device pc2 may enroll once now (1 credential revoked)."}},
		{[]string{"devices", "revoke", "pc1"}, []string{"DELETE /api/v1/identities/pc1"}, []string{"Device pc1 revoked (2 credentials)."}},
		{[]string{"token", "revoke", "ci"}, []string{"DELETE /api/v1/tokens/ci"}, []string{"Revoked token ci."}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			f.reset()
			out, err := f.run(t, c.args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			reqs := f.requests()
			if len(reqs) != len(c.want) {
				t.Fatalf("%d requests %+v, want %q", len(reqs), reqs, c.want)
			}
			for i, r := range reqs {
				line, body, _ := strings.Cut(c.want[i], " {")
				if body != "" {
					body = "{" + body
				}
				got := r.method + " " + r.path
				if r.query != "" {
					got += "?" + r.query
				}
				if got != line || !sameJSON(r.body, body) {
					t.Errorf("request %d = %s %s, want %s", i, got, r.body, c.want[i])
				}
				// Static files (/metadata/) are public: no token is sent.
				if r.auth != "Bearer "+flagToken && !strings.HasPrefix(r.path, "/metadata/") {
					t.Errorf("Authorization = %q", r.auth)
				}
			}
			for _, s := range c.out {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			if strings.ContainsRune(out, '\x1b') {
				t.Errorf("output has an escape character:\n%q", out)
			}
		})
	}
}

func TestJSONOutput(t *testing.T) {
	f := newFakeServer(t)
	f.on("GET /api/v1/devices", 200, devicesJSON)
	f.on("GET /api/v1/rollouts", 200, rolloutsJSON)
	f.on("GET /api/v1/audit", 200, auditJSON)
	f.on("GET /api/v1/pins", 200, `null`)

	out, err := f.run(t, "devices", "--json")
	var dl api.DeviceList
	if err != nil || json.Unmarshal([]byte(out), &dl) != nil || len(dl.Devices) != 2 || dl.Total != 9 || dl.Next != "lab-02" {
		t.Fatalf("devices --json: %v\n%s", err, out)
	}
	out, err = f.run(t, "rollout", "status", "--json")
	var rs []api.RolloutStatus
	if err != nil || json.Unmarshal([]byte(out), &rs) != nil || len(rs) != 3 || rs[0].HaltReason != "boot loop" {
		t.Fatalf("rollout status --json: %v\n%s", err, out)
	}
	out, err = f.run(t, "audit", "--json")
	var al api.AuditList
	if err != nil || json.Unmarshal([]byte(out), &al) != nil || !al.Verified || len(al.Entries) != 2 {
		t.Fatalf("audit --json: %v\n%s", err, out)
	}
	if out, err = f.run(t, "pins", "--json"); err != nil || strings.TrimSpace(out) != "[]" {
		t.Fatalf("pins --json with none: %v\n%s", err, out)
	}
}

func TestEmptyLists(t *testing.T) {
	f := newFakeServer(t)
	f.on("GET /api/v1/channels", 200, `[]`)
	f.on("GET /api/v1/rollouts", 200, `[]`)
	f.on("GET /api/v1/pins", 200, `[]`)
	f.on("GET /api/v1/tokens", 200, `[]`)
	f.on("GET /api/v1/devices", 200, `{"devices":[],"total":0}`)
	for args, want := range map[string]string{
		"channels":                        "No channels.",
		"rollout status --channel stable": "No rollouts on stable.",
		"pins":                            "No pins.",
		"token list":                      "No tokens.",
		"devices":                         "No devices (0 devices in all).",
	} {
		if out, err := f.run(t, strings.Fields(args)...); err != nil || strings.TrimSpace(out) != want {
			t.Errorf("%s: %v\n%s", args, err, out)
		}
	}
}

func TestTokenSources(t *testing.T) {
	f := newFakeServer(t)
	f.on("GET /api/v1/pins", 200, `[]`)

	// From MXOS_TOKEN.
	t.Setenv("MXOS_TOKEN", envToken)
	if _, err := run(t, "--server", f.URL, "pins"); err != nil {
		t.Fatal(err)
	}
	if got := f.requests()[0].auth; got != "Bearer "+envToken {
		t.Fatalf("Authorization from MXOS_TOKEN = %q", got)
	}
	// --token wins over the environment, after the command name too.
	f.reset()
	if _, err := run(t, "pins", "--server", f.URL, "--token", flagToken); err != nil {
		t.Fatal(err)
	}
	if got := f.requests()[0].auth; got != "Bearer "+flagToken {
		t.Fatalf("Authorization from --token = %q", got)
	}
	// The token is never the default shown in help.
	out, _ := run(t, "pins", "--help")
	if strings.Contains(out, envToken) {
		t.Fatalf("help shows the token:\n%s", out)
	}
	// MXOS_SERVER names the server.
	f.reset()
	t.Setenv("MXOS_SERVER", f.URL)
	if _, err := run(t, "pins"); err != nil || len(f.requests()) != 1 {
		t.Fatalf("MXOS_SERVER: %v", err)
	}
	// No token at all: no header, and the 401 comes with a hint.
	t.Setenv("MXOS_TOKEN", "")
	f.reset()
	f.on("GET /api/v1/pins", 401, `{"error":{"code":"unauthorized","message":"a valid token is required"}}`)
	_, err := run(t, "pins")
	if err == nil || err.Error() != "a valid token is required (unauthorized); set MXOS_TOKEN or use --token" {
		t.Fatalf("no token: %v", err)
	}
	if got := f.requests()[0].auth; got != "" {
		t.Fatalf("Authorization without a token = %q", got)
	}
}

func TestServerErrors(t *testing.T) {
	f := newFakeServer(t)
	f.on("PUT /api/v1/pins", 403, `{"error":{"code":"forbidden","message":"the release role cannot do this"}}`)
	f.on("POST /api/v1/rollouts/r7/resume", 409, `{"error":{"code":"rollout_state","message":"rollout r7 is complete"}}`)
	f.on("GET /api/v1/channels", 502, `<html><body>Bad Gateway</body></html>`)
	f.answers["GET /api/v1/channels"] = answer{502, "text/html", `<html><body>Bad Gateway</body></html>`}
	f.on("GET /api/v1/tokens", 401, `{"error":{"code":"unauthorized","message":"unknown token `+flagToken+`"}}`)

	_, err := f.run(t, "pin", "--device", "d1", "--channel", "edu")
	if err == nil || err.Error() != "the release role cannot do this (forbidden)" {
		t.Fatalf("403: %v", err)
	}
	if !errors.Is(err, &api.Error{Code: api.CodeForbidden}) {
		t.Fatalf("403 is not an api.Error: %v", err)
	}
	if _, err := f.run(t, "rollout", "resume", "r7"); err == nil || err.Error() != "rollout r7 is complete (rollout_state)" {
		t.Fatalf("409: %v", err)
	}
	if _, err := f.run(t, "channels"); err == nil || !strings.Contains(err.Error(), "502 Bad Gateway") || strings.Contains(err.Error(), "<html>") {
		t.Fatalf("502: %v", err)
	}
	if _, err := f.run(t, "token", "list"); err == nil || strings.Contains(err.Error(), flagToken) {
		t.Fatalf("token echoed in error: %v", err)
	}
	if _, err := f.run(t, "devices"); err == nil || !strings.Contains(err.Error(), "(not_found)") {
		t.Fatalf("404: %v", err)
	}

	// Nobody listening: say where we looked.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := "http://" + l.Addr().String()
	l.Close()
	_, err = run(t, "--server", addr, "--token", flagToken, "pins")
	if err == nil || !strings.Contains(err.Error(), "is mxos-server running at "+addr) || strings.Contains(err.Error(), flagToken) {
		t.Fatalf("connection refused: %v", err)
	}
}

func TestRolloutByChannel(t *testing.T) {
	f := newFakeServer(t)
	f.on("GET /api/v1/rollouts", 200, rolloutsJSON)
	f.on("POST /api/v1/rollouts/r5/pause", 200, `{"id":"r5","channel":"stable","arch":"aarch64","version":"10.0.1","state":"paused","fraction":1}`)

	// stable has current rollouts on two architectures: ask which.
	_, err := f.run(t, "rollout", "halt", "--channel", "stable")
	if err == nil || !strings.Contains(err.Error(), "several architectures (r7 on x86_64, r5 on aarch64)") {
		t.Fatalf("ambiguous: %v", err)
	}
	if n := len(f.requests()); n != 1 {
		t.Fatalf("%d requests; an ambiguous name must not act", n)
	}
	f.reset()
	if out, err := f.run(t, "rollout", "pause", "--channel", "stable", "--arch", "aarch64"); err != nil || !strings.Contains(out, "Rollout r5") {
		t.Fatalf("by arch: %v\n%s", err, out)
	}
	if _, err := f.run(t, "rollout", "halt", "--channel", "stable", "--arch", "riscv64"); err == nil || err.Error() != "no rollout on stable/riscv64" {
		t.Fatalf("no rollout: %v", err)
	}
	f.on("GET /api/v1/rollouts", 200, `[]`)
	if _, err := f.run(t, "rollout", "halt", "--channel", "edu"); err == nil || err.Error() != "no rollout on edu" {
		t.Fatalf("no rollout: %v", err)
	}
}

func TestAuditNotVerified(t *testing.T) {
	f := newFakeServer(t)
	f.on("GET /api/v1/audit", 200, `{"entries":[],"verified":false,"verify_error":"entry 3: hash mismatch","head_seq":5}`)
	out, err := f.run(t, "audit")
	if err == nil || !strings.Contains(err.Error(), "entry 3: hash mismatch") || !strings.Contains(out, "did NOT verify: entry 3: hash mismatch") {
		t.Fatalf("unverified: %v\n%s", err, out)
	}
	if _, err := f.run(t, "audit", "--json"); err == nil {
		t.Fatal("audit --json exits 0 on an unverified chain")
	}
	// The server says verified, but the page does not link up.
	f.on("GET /api/v1/audit", 200, strings.Replace(auditJSON, `"prev_hash":"h4"`, `"prev_hash":"hX"`, 1))
	out, err = f.run(t, "audit")
	if err == nil || !strings.Contains(err.Error(), "entry 5 does not name the hash of entry 4") || !strings.Contains(out, "do NOT link up") {
		t.Fatalf("broken links: %v\n%s", err, out)
	}
	f.on("GET /api/v1/audit", 200, strings.Replace(auditJSON, `"seq":5`, `"seq":7`, 1))
	if _, err := f.run(t, "audit"); err == nil || !strings.Contains(err.Error(), "entry 7 follows entry 4") {
		t.Fatalf("gap: %v", err)
	}
}

func TestBadFlags(t *testing.T) {
	f := newFakeServer(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"rollout", "start", "--channel", "stable"}, "--channel and --version are required"},
		{[]string{"rollout", "start", "--channel", "stable", "--version", "1", "--ramp", "50%,10%@1h"}, "--ramp: invalid rollout ramp"},
		{[]string{"rollout", "halt"}, "give a rollout ID, or --channel"},
		{[]string{"rollout", "halt", "r1", "--channel", "stable"}, "give a rollout ID or --channel, not both"},
		{[]string{"rollout", "halt", "r1", "--arch", "x86_64"}, "--arch goes with --channel"},
		{[]string{"rollout", "halt", ""}, "the rollout ID is empty"},
		{[]string{"rollout", "halt", "r1", "r2"}, "accepts at most 1 arg"},
		{[]string{"pin", "--device", "d", "--group", "g", "--channel", "edu"}, "use --device or --group, not both"},
		{[]string{"pin", "--channel", "edu"}, "use --device ID or --group G"},
		{[]string{"pin", "--device", "d"}, "use --channel, --version or both"},
		{[]string{"unpin", "--device", "d", "--group", "g"}, "use --device or --group, not both"},
		{[]string{"unpin"}, "use --device ID or --group G"},
		{[]string{"devices", "--limit", "-1"}, "--limit must be"},
		{[]string{"devices", "--limit", "x"}, "invalid argument"},
		{[]string{"group", "--device", "d"}, "--group is required"},
		{[]string{"group", "--group", "g"}, "--device is required"},
		{[]string{"audit", "--after", "-2"}, "--after and --limit must be 0 or more"},
		{[]string{"token", "create", "--name", "ci"}, "--name and --role are required"},
		{[]string{"token", "create", "--name", "ci", "--role", "root"}, "--role: unknown role"},
		{[]string{"token", "create", "--name", "ci", "--role", "admin", "--expires", "forever"}, "--expires: invalid token lifetime"},
		{[]string{"token", "create", "--name", "ci", "--role", "admin", "--max-devices", "3"}, "--max-devices: only an enroll token"},
		{[]string{"token", "create", "--name", "ci", "--role", "enroll", "--max-devices", "-1"}, "--max-devices: only an enroll token"},
		{[]string{"devices", "revoke"}, "accepts 1 arg"},
		{[]string{"token", "revoke"}, "accepts 1 arg"},
		{[]string{"channels", "extra"}, "unknown command"},
		{[]string{"--server", "127.0.0.1:8080", "pins"}, "must start with http:// or https://"},
		{[]string{"--token", "has space", "pins"}, "token contains spaces"},
	}
	for _, c := range cases {
		args := append([]string{"--server", f.URL, "--token", flagToken}, c.args...)
		if c.args[0] == "--server" || c.args[0] == "--token" {
			args = c.args
		}
		_, err := run(t, args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("mxosctl %s: %v, want %q", strings.Join(c.args, " "), err, c.want)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Fatalf("%d requests reached the server with bad flags: %+v", n, f.requests())
	}
}

func TestPercent(t *testing.T) {
	for f, want := range map[float64]string{0: "0%", 0.01: "1%", 0.1: "10%", 0.005: "0.5%", 0.12345: "12.35%", 1: "100%"} {
		if got := percent(f); got != want {
			t.Errorf("percent(%v) = %s, want %s", f, got, want)
		}
	}
}

// Issue 9, failure 6: token create prints the secret alone on stdout, so
// TOKEN=$(mxosctl token create ...) holds the token and nothing else.
func TestTokenCreateStdoutIsTheSecret(t *testing.T) {
	f := newFakeServer(t)
	f.on("POST /api/v1/tokens", 201, `{"id":"t3","name":"ci","role":"release","created_at":"2026-03-01T12:00:00Z","token":"mxos_NEWNEWNEW"}`)
	cmd := newRootCmd()
	var stdout, stderr bytes.Buffer
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SetArgs([]string{"--server", f.URL, "--token", flagToken, "token", "create", "--name", "ci", "--role", "release"})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if stdout.String() != "mxos_NEWNEWNEW\n" {
		t.Fatalf("stdout = %q, want the token alone", stdout.String())
	}
	if !strings.Contains(stderr.String(), "Created release token ci") || strings.Contains(stderr.String(), "mxos_NEW") {
		t.Fatalf("stderr = %q", stderr.String())
	}
}

// rollout status's NEXT STEP: when an active rollout's share next rises,
// as the server computes it; nothing for other states or the last step.
func TestNextStep(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ramp := "1%,10%@24h,100%@72h"
	for _, tc := range []struct {
		state, ramp string
		start       time.Time
		now         time.Time
		want        string
	}{
		{"active", ramp, start, start.Add(time.Hour), "10% at 2026-03-02 12:00Z (in 23h0m)"},
		{"active", ramp, start, start.Add(30 * time.Hour), "100% at 2026-03-04 12:00Z (in 42h0m)"},
		{"active", ramp, start, start.Add(72*time.Hour - 30*time.Second), "100% at 2026-03-04 12:00Z (in under a minute)"},
		{"active", ramp, start, start.Add(-time.Minute), "1% at 2026-03-01 12:00Z (in 1m)"},
		{"active", ramp, start, start.Add(80 * time.Hour), "-"},
		{"paused", ramp, start, start.Add(time.Hour), "-"},
		{"halted", ramp, start, start.Add(time.Hour), "-"},
		{"active", "nonsense", start, start.Add(time.Hour), "-"},
		{"active", ramp, time.Time{}, start, "-"},
	} {
		got := nextStep(api.RolloutStatus{State: tc.state, Ramp: tc.ramp, StartedAt: tc.start}, tc.now)
		if got != tc.want {
			t.Errorf("%s %s at +%s: %q, want %q", tc.state, tc.ramp, tc.now.Sub(start), got, tc.want)
		}
	}
}
