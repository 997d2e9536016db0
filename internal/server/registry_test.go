package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mxos-linux/mxos-update/internal/auth"
)

// TestRegistryThroughMiddleware drives the registry through the server's
// full handler with debug request logging on: registry paths reach the
// registry (even unclean ones, answered with the spec's JSON errors, not
// the middleware's plain 400), the token check works as basic password,
// GC can be triggered through the API, and no token is ever logged.
func TestRegistryThroughMiddleware(t *testing.T) {
	ctx := context.Background()
	data := newDataDir(t)
	store, set := openAPI(t, data)
	core, logs := observer.New(zapcore.DebugLevel)
	srv, err := New(Config{DataDir: data, Store: store, Channels: set, Registry: true, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { ts.Close(); srv.Close() })
	if _, err := os.Stat(filepath.Join(data, "oci", "blobs")); err != nil {
		t.Fatalf("registry directory: %v", err)
	}
	tokens := map[auth.Role]string{}
	for _, role := range []auth.Role{auth.RoleRelease, auth.RoleDevice, auth.RoleAdmin} {
		tc, err := CreateToken(ctx, store, "r-"+string(role), role, "test", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		tokens[role] = tc.Token
	}
	send := func(method, path, tok string, body []byte) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, ts.URL+path, bytes.NewReader(body))
		if tok != "" {
			req.SetBasicAuth("anyone", tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		return resp, buf.Bytes()
	}
	blob := []byte("through the middleware")
	d := digest.FromBytes(blob)
	push := "/v2/mxos/os/blobs/uploads/?digest=" + d.String()
	for role, want := range map[auth.Role]int{auth.RoleDevice: 403, auth.RoleAdmin: 403, auth.RoleRelease: 201} {
		if resp, body := send("POST", push, tokens[role], blob); resp.StatusCode != want {
			t.Fatalf("push with %s token: %d %s", role, resp.StatusCode, body)
		}
	}
	expired, err := CreateTokenWith(ctx, store, TokenOptions{Name: "r-old", Role: auth.RoleRelease, By: "test", Now: time.Now().Add(-2 * time.Hour), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := send("POST", push, expired.Token, blob); resp.StatusCode != 401 {
		t.Fatalf("push with an expired token: %d %s", resp.StatusCode, body)
	}
	// The refused pushes are in the audit log (issue 9, failure 6).
	if es, _ := store.ListAudit(ctx, 0, 100); len(auditedDenials(es, "POST /v2/")) != 3 {
		t.Fatalf("refused pushes audited: %+v", es)
	}
	if resp, body := send("GET", "/v2/mxos/os/blobs/"+d.String(), "", nil); resp.StatusCode != 200 || !bytes.Equal(body, blob) {
		t.Fatalf("pull: %d %q", resp.StatusCode, body)
	}
	for _, target := range []string{"/v2/mxos/os/blobs/sha256:../../x", "/v2/mxos/../os/tags/list", "/v2//x/tags/list"} {
		resp, body := rawGet(t, ts.URL, target)
		if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), `"errors"`) {
			t.Fatalf("GET %s: %d %s %s", target, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	// Other paths keep the middleware's behaviour.
	if resp, _ := rawGet(t, ts.URL, "/repo/../v2/"); resp.StatusCode != 400 {
		t.Fatalf("unclean non-registry path: %d", resp.StatusCode)
	}

	req, _ := http.NewRequest("POST", ts.URL+"/api/v1/registry/gc", nil)
	req.Header.Set("Authorization", "Bearer "+tokens[auth.RoleDevice])
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 403 {
		t.Fatalf("GC with a device token: %v %v", resp, err)
	}
	req.Header.Set("Authorization", "Bearer "+tokens[auth.RoleRelease])
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GC: %v %v", resp, err)
	}
	var st map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st["repositories"] != float64(1) {
		t.Fatalf("GC answer %v %v", st, err)
	}
	resp.Body.Close()

	sawRegistry := false
	for _, e := range logs.All() {
		line := e.Message + " " + fieldsString(e.ContextMap())
		for _, tok := range tokens {
			if strings.Contains(line, tok) || strings.Contains(line, tok[len(tok)-20:]) {
				t.Fatalf("a token was logged: %s", e.Message)
			}
		}
		if strings.Contains(line, "/v2/mxos/os/blobs/") {
			sawRegistry = true
		}
	}
	if !sawRegistry {
		t.Fatal("registry requests were not logged")
	}
}

func fieldsString(m map[string]any) string {
	b, _ := json.Marshal(m)
	return string(b)
}
