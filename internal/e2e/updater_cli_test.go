package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/updater"
)

// runLocale runs the real mxos-updater binary of s with LANG=lang (none
// when empty; LC_ALL and LC_MESSAGES removed) and returns its combined
// output and exit status.
func (s *updaterSite) runLocale(lang string, args ...string) (string, int) {
	s.t.Helper()
	c := s.cmd(nil, args...)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "LANG" && k != "LC_ALL" && k != "LC_MESSAGES" {
			c.Env = append(c.Env, kv)
		}
	}
	if lang != "" {
		c.Env = append(c.Env, "LANG="+lang)
	}
	out, err := c.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatal(err)
	}
	return string(out), code
}

// The agent's command line as a technician and a script use it, with the
// real binary and server: check's exit codes (77: no update, 0: one is
// offered), Spanish under LANG=es_MX.UTF-8, status marks and --json, a
// rollback by hand that unmark undoes, and --version.
func TestUpdaterCLIContract(t *testing.T) {
	s := newUpdaterSite(t)
	expect := func(lang string, wantCode int, want string, args ...string) string {
		t.Helper()
		out, code := s.runLocale(lang, args...)
		if code != wantCode || !strings.Contains(out, want) {
			t.Fatalf("LANG=%s mxos-updater %s: exit %d (want %d), output lacks %q:\n%s", lang, strings.Join(args, " "), code, wantCode, want, out)
		}
		return out
	}
	expect("", 77, "No update", "check")
	expect("es_MX.UTF-8", 77, "No hay actualización", "check")
	v1 := s.publish()
	expect("es_MX.UTF-8", 0, "Hay una actualización: versión "+v1, "check")
	expect("C", 0, "Update available: version "+v1, "check")

	expect("es_MX.UTF-8", 0, "Reinicie el equipo para usar", "upgrade")
	status := func() updater.Status {
		t.Helper()
		out := expect("", 0, "{", "status", "--json")
		var st updater.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		return st
	}
	mark := func(st updater.Status, version string) updater.DeploymentInfo {
		t.Helper()
		for _, d := range st.Deployments {
			if d.Version == version {
				return d
			}
		}
		t.Fatalf("no deployment of %s in %+v", version, st.Deployments)
		return updater.DeploymentInfo{}
	}
	st := status()
	if d := mark(st, v1); !d.Default || !d.Pending || d.Bad {
		t.Errorf("after upgrade, %s: %+v", v1, d)
	}
	if d := mark(st, "10.0.0"); !d.Previous || d.Default {
		t.Errorf("after upgrade, 10.0.0: %+v", d)
	}
	expect("es_MX.UTF-8", 0, "pendiente: reinicie para usarla", "status")
	expect("en_US.UTF-8", 0, "pending: restart to use it", "status")

	// A rollback by hand marks the version; unmark lets it back in.
	commit := s.commits[v1].String()
	expect("", 0, "mxos-updater unmark "+commit, "rollback")
	if d := mark(status(), v1); !d.Bad || d.Default {
		t.Errorf("after rollback, %s: %+v", v1, d)
	}
	expect("", 0, "rolled back on this machine before", "upgrade")
	expect("es_MX.UTF-8", 1, "no es una versión ni un commit marcado", "unmark", "10.9.9")
	expect("", 0, "may be installed again", "unmark", commit)
	expect("", 0, "Restart the machine to use it", "upgrade")
	if d := mark(status(), v1); d.Bad || !d.Default || !d.Pending {
		t.Errorf("after unmark and upgrade, %s: %+v", v1, d)
	}

	expect("", 0, "mxos-updater version ", "--version")
	expect("es_MX.UTF-8", 0, "Mantiene actualizado este equipo MxOS", "--help")
	expect("es_MX.UTF-8", 0, "Opciones globales:", "status", "--help")
	// LC_ALL outranks LANG (POSIX).
	c := s.cmd(nil, "check")
	c.Env = append(os.Environ(), "LANG=es_MX.UTF-8", "LC_MESSAGES=es_MX.UTF-8", "LC_ALL=C")
	b, _ := c.CombinedOutput()
	if !strings.Contains(string(b), "No update") {
		t.Errorf("LC_ALL=C did not win over LANG:\n%s", b)
	}

	// A server that offers this machine a release for another arch: the
	// machine refuses it, and check exits 3.
	v2 := s.publish()
	realURL := regexp.MustCompile(`(?m)^server: (.*)$`).FindStringSubmatch(readString(t, s.config))[1]
	up, err := url.Parse(realURL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(up)
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.URL.Path != "/api/v1/check" {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		body = []byte(strings.Replace(string(body), `"arch":"x86_64"`, `"arch":"aarch64"`, 1))
		resp.Body, resp.ContentLength = io.NopCloser(strings.NewReader(string(body))), int64(len(body))
		resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	hostile := httptest.NewServer(rp)
	defer hostile.Close()
	orig := readString(t, s.config)
	if err := os.WriteFile(s.config, []byte(strings.Replace(orig, "server: "+realURL, "server: "+hostile.URL, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	expect("es_MX.UTF-8", 3, "actualización rechazada: el servidor ofreció la versión "+v2+` para "aarch64"`, "check")
	if err := os.WriteFile(s.config, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	expect("", 0, "Update available: version "+v2, "check")
}
