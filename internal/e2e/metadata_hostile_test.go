package e2e

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/channelmeta/metatest"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
)

// Issue 9, failure 2: signed channel metadata naming an ed25519 public key
// of the wrong length made mxos-updater panic inside go-tuf (a Go stack
// trace, exit 2). A hostile server on 127.0.0.1 serves such metadata,
// signed by keys the device trusts, while offering a genuine update: the
// real mxos-updater binary must refuse it with a clear message, exit
// neither 0 nor 2, print no panic, and install nothing.
func TestUpdaterRefusesMetadataWithBadKeys(t *testing.T) {
	s := newUpdaterSite(t)
	installed := s.checkDevice()
	s.publish() // an update is on offer, so the device loads the metadata
	realURL := regexp.MustCompile(`(?m)^server: (.*)$`).FindStringSubmatch(readString(t, s.config))[1]
	onlineSigners, err := publish.LoadEd25519Signers(s.online)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		forge func(dir string) error
		want  string
	}{
		{"online key: delegated role pinned in the snapshot", func(dir string) error {
			return metatest.ForgeBadRolloutsDelegation(dir, time.Now(), onlineSigners[0], true)
		}, `meta lists "evil.json"`},
		{"online key: rollouts delegates to a 31-byte key", func(dir string) error {
			return metatest.ForgeBadRolloutsDelegation(dir, time.Now(), onlineSigners[0], false)
		}, "rollouts role may not delegate"},
		{"root key: root names a 31-byte timestamp key", func(dir string) error {
			return metatest.ForgeBadKeyRoot(dir, time.Now(), s.rem.MetaSigners...)
		}, "ed25519 public key must be 32 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Each case starts from the shipped root: a case may leave a
			// genuine (online-signed) timestamp in the device's cache.
			if err := os.RemoveAll(filepath.Join(s.root, "channel-metadata")); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			copyDir(t, s.metaDir, dir)
			if err := tc.forge(dir); err != nil {
				t.Fatal(err)
			}
			up, _ := url.Parse(realURL)
			rp := httputil.NewSingleHostReverseProxy(up)
			hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if name, ok := strings.CutPrefix(r.URL.Path, "/metadata/"); ok {
					http.ServeFile(w, r, filepath.Join(dir, filepath.Base(name)))
					return
				}
				rp.ServeHTTP(w, r)
			}))
			defer hostile.Close()
			cfg := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(cfg, []byte(strings.Replace(readString(t, s.config), "server: "+realURL, "server: "+hostile.URL, 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"upgrade"}, {"check"}} {
				cmd := exec.Command(mxosUpdater(t), append([]string{"--config", cfg}, args...)...)
				out, err := cmd.CombinedOutput()
				code := 0
				if ee, ok := err.(*exec.ExitError); ok {
					code = ee.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				text := string(out)
				t.Logf("mxos-updater %s: exit %d\n%s", args[0], code, text)
				if strings.Contains(text, "panic") || strings.Contains(text, "goroutine") || code == 2 {
					t.Fatalf("mxos-updater %s crashed (exit %d):\n%s", args[0], code, text)
				}
				if args[0] == "upgrade" {
					if code == 0 {
						t.Fatalf("upgrade through the hostile server succeeded:\n%s", text)
					}
					if !strings.Contains(text, "malformed channel metadata") || !strings.Contains(text, tc.want) {
						t.Fatalf("upgrade refusal does not say %q:\n%s", tc.want, text)
					}
				}
			}
			if v := s.checkDevice(); v != installed {
				t.Fatalf("device moved from %s to %s", installed, v)
			}
		})
	}
}

func readString(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
