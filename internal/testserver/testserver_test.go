package testserver

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
)

func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Each option turns on what it says, and only that.
func TestOptions(t *testing.T) {
	cases := []struct {
		name string
		opts Options
		// what answers: the API (with the release token), the
		// registry, the channel metadata
		api, registry, metadata bool
	}{
		{"default", Options{Roles: []auth.Role{auth.RoleRelease}}, true, false, false},
		{"repo only", Options{RepoOnly: true}, false, false, false},
		{"registry served", Options{Registry: true, Serve: true, Roles: []auth.Role{auth.RoleRelease}}, true, true, false},
		{"metadata", Options{Metadata: true, Serve: true, Roles: []auth.Role{auth.RoleRelease}}, true, false, true},
		{"online summary key", Options{OnlineSummaryKey: true, Roles: []auth.Role{auth.RoleRelease}}, true, false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := Start(t, c.opts)
			if (s.Store != nil) != !c.opts.RepoOnly {
				t.Errorf("store %v with RepoOnly %v", s.Store, c.opts.RepoOnly)
			}
			if len(s.Tokens) != len(c.opts.Roles) {
				t.Errorf("tokens %v for roles %v", s.Tokens, c.opts.Roles)
			}
			if c.api {
				if _, err := s.Client(t, auth.RoleRelease).Channels(context.Background()); err != nil {
					t.Errorf("API with the release token: %v", err)
				}
			} else if got := status(t, s.URL+"/api/v1/channels"); got == http.StatusOK {
				t.Errorf("API answered %d", got)
			}
			// /v2/ challenges a client without credentials (401).
			if got := status(t, s.URL+"/v2/"); (got != http.StatusNotFound) != c.registry {
				t.Errorf("registry answered %d", got)
			}
			if got := status(t, s.URL+"/metadata/timestamp.json"); (got == http.StatusOK) != c.metadata {
				t.Errorf("metadata answered %d", got)
			}
			if (s.Meta != nil) != c.metadata || (s.Online.Dir != "") != (c.metadata || c.opts.OnlineSummaryKey) {
				t.Errorf("metadata repository %v, online key %q", s.Meta, s.Online.Dir)
			}
			// The publisher signs into the served repository with the
			// release key.
			src := t.TempDir()
			if err := os.MkdirAll(filepath.Join(src, "usr/etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(src, "usr/etc/os-release"), []byte("VERSION=10.0.1\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if _, err := s.Publisher.Publish(ctx, release.Request{Ref: "mxos/10/x86_64/testing", Version: "10.0.1", Source: src}); err != nil {
				t.Fatal(err)
			}
			if got := status(t, s.URL+"/repo/refs/heads/mxos/10/x86_64/testing"); got != http.StatusOK {
				t.Errorf("published ref answered %d", got)
			}
			rep, err := s.Repo.Fsck(ctx, ostree.FsckOptions{VerifyCommit: release.CommitVerifier(s.Release.Verifiers)})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Errors) > 0 {
				t.Errorf("fsck with the release key: %v", errors.Join(rep.Errors...))
			}
		})
	}
}
