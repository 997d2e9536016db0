package e2e

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/storage/object"
	"github.com/mxos-linux/mxos-update/internal/storage/s3store"
	"github.com/mxos-linux/mxos-update/internal/storage/storagetest"
	"github.com/mxos-linux/mxos-update/internal/testserver"
)

// The release team's side (release.Remote over internal/client) against a
// real mxos-server: publish to testing, promote to stable, and stock ostree
// pulls the promoted ref with commit and summary signatures verified.
func TestRemotePublishPromoteStockPull(t *testing.T) {
	testRemotePublishPromoteStockPull(t, testserver.Options{})
}

// TestRemotePublishPromoteStockPullS3 is the same with /repo/ served from
// a bucket of a real S3 server (versitygw): streamed through the server,
// and with presigned redirects that stock ostree follows. The server
// never mirrors at start here, so the pull succeeding shows that the
// publish and the promotion each mirrored before answering.
func TestRemotePublishPromoteStockPullS3(t *testing.T) {
	requireOstreeGPG(t)
	srv := storagetest.StartS3(t)
	for _, redirect := range []bool{false, true} {
		t.Run(map[bool]string{false: "stream", true: "redirect"}[redirect], func(t *testing.T) {
			st, err := s3store.New(context.Background(), srv.Bucket(t))
			if err != nil {
				t.Fatal(err)
			}
			url := testRemotePublishPromoteStockPull(t, testserver.Options{RepoStore: st, RepoRedirect: redirect})
			// The summary came from the bucket: its ETag is the bucket's.
			info, err := st.Stat(context.Background(), "repo/summary")
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.Get(url + "/repo/summary")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("ETag") != info.ETag {
				t.Fatalf("GET /repo/summary: %d, ETag %q, bucket has %q", resp.StatusCode, resp.Header.Get("ETag"), info.ETag)
			}
			// Content-addressed files: a redirect to the bucket, or a stream.
			var obj string
			err = st.List(context.Background(), "repo/objects/", func(i object.Info) error {
				if strings.HasSuffix(i.Key, ".filez") {
					obj = strings.TrimPrefix(i.Key, "repo/")
				}
				return nil
			})
			if err != nil || obj == "" {
				t.Fatalf("no file object in the bucket: %v", err)
			}
			noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err = noFollow.Get(url + "/repo/" + obj)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := map[bool]int{false: 200, true: http.StatusTemporaryRedirect}[redirect]
			if resp.StatusCode != want {
				t.Fatalf("GET /repo/%s: %d, want %d", obj, resp.StatusCode, want)
			}
		})
	}
}

// testRemotePublishPromoteStockPull returns the server's URL.
func testRemotePublishPromoteStockPull(t *testing.T, opts testserver.Options) string {
	requireOstreeGPG(t)
	ctx := context.Background()
	opts.OnlineSummaryKey, opts.Roles = true, []auth.Role{auth.RoleRelease}
	ts := testserver.Start(t, opts)
	releaseKeys, onlineKeys, data := keySetOf(ts.Release), keySetOf(ts.Online), ts.Data
	c := ts.Client(t, auth.RoleRelease)
	work, err := ostree.Create(filepath.Join(t.TempDir(), "work"))
	if err != nil {
		t.Fatal(err)
	}
	rem := &release.Remote{Server: c, Work: work, Signers: releaseKeys.signers}
	src := filepath.Join(t.TempDir(), "src")
	makeRichTree(t, src, treeSpec{seed: 9})

	_, pub, err := rem.Publish(ctx, release.RemoteRequest{Channel: "testing", Arch: "x86_64", Ref: "mxos/10/x86_64/testing",
		Version: "10.0.1", Source: src})
	if err != nil {
		t.Fatal(err)
	}
	_, prom, err := rem.Promote(ctx, "testing", "stable", "x86_64", "mxos/10/x86_64/stable", "10.0.1", "")
	if err != nil {
		t.Fatal(err)
	}
	serverRepo, _ := ostree.Open(filepath.Join(data, "repo"))
	pc, _ := serverRepo.ReadCommit(pub)
	sc, err := serverRepo.ReadCommit(prom)
	if err != nil {
		t.Fatal(err)
	}
	if sc.RootTree != pc.RootTree || sc.RefBindings()[0] != "mxos/10/x86_64/stable" {
		t.Fatalf("promoted commit: root %s (want %s), binding %v", sc.RootTree, pc.RootTree, sc.RefBindings())
	}
	// Skipping the promotion order is refused and changes nothing.
	if _, _, err := rem.Promote(ctx, "testing", "edu", "x86_64", "mxos/10/x86_64/edu", "10.0.1", ""); !errors.Is(err, &api.Error{Code: api.CodePromotion}) {
		t.Fatalf("testing → edu: %v", err)
	}
	if _, err := serverRepo.ResolveRef("mxos/10/x86_64/edu"); !errors.Is(err, ostree.ErrNotFound) {
		t.Fatalf("edu ref exists after a refused promotion: %v", err)
	}

	// Stock ostree trusts both public keys: the release key signs commits,
	// the online key the summary.
	env := toolEnv(t)
	cl := newClient(t, env, ts.URL+"/repo", "--set=gpg-verify=true", "--set=gpg-verify-summary=true",
		"--gpg-import="+releaseKeys.pgpPub)
	cl.mustRun("remote", "gpg-import", "--keyring="+onlineKeys.pgpPub, "origin")
	cl.mustRun("pull", "origin", "mxos/10/x86_64/stable")
	if got := cl.revParse("origin:mxos/10/x86_64/stable"); got != prom.String() {
		t.Fatalf("pulled %s, want %s", got, prom)
	}
	cl.mustRun("fsck")
	co := filepath.Join(t.TempDir(), "co")
	cl.mustRun("checkout", "-U", "origin:mxos/10/x86_64/stable", co)
	if _, err := os.Stat(co); err != nil {
		t.Fatal(err)
	}
	return ts.URL
}
