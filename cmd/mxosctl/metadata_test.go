package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/testserver"
)

func TestMetadataInit(t *testing.T) {
	dir := t.TempDir()
	keys, online, out := filepath.Join(dir, "keys"), filepath.Join(dir, "online"), filepath.Join(dir, "metadata")
	for _, d := range []string{keys, online} {
		if _, err := run(t, "keys", "generate", "--dir", d); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := run(t, "metadata", "init", "--keys", keys, "--out", out); err == nil {
		t.Fatal("init without --online-pub succeeded")
	}
	msg, err := run(t, "metadata", "init", "--keys", keys, "--online-pub", online, "--out", out)
	if err != nil || !strings.Contains(msg, "DATA/metadata") {
		t.Fatalf("metadata init: %v\n%s", err, msg)
	}
	// The server can open it with the online key and sign the rest.
	signers, err := publish.LoadEd25519Signers(online)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := publish.Open(out, signers, publish.Options{})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if rels, err := repo.Releases(); err != nil || len(rels) != 0 {
		t.Fatalf("releases: %v %v", rels, err)
	}
	if _, err := run(t, "metadata", "init", "--keys", keys, "--online-pub", online, "--out", out); err == nil {
		t.Fatal("init overwrote an existing repository")
	}
}

// The metadata lifecycle against a real server with signed channel
// metadata, as the release team runs it: status, the 30-day warning,
// renew (and /metrics), sign-existing for a release the targets lost,
// and rotate-keys followed by a device, after which the old key is
// refused.
func TestMetadataLifecycle(t *testing.T) {
	ts := testserver.Start(t, testserver.Options{Metadata: true, Serve: true, Roles: []auth.Role{auth.RoleRelease}})
	t.Setenv("MXOS_TOKEN", ts.Tokens[auth.RoleRelease])
	srv := []string{"--server", ts.URL}
	mx := func(args ...string) string {
		t.Helper()
		out, err := run(t, append(args, srv...)...)
		if err != nil {
			t.Fatalf("mxosctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	keys := ts.Release.Dir
	tree := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc/os-release"), []byte("NAME=MxOS\n"), 0o644)
	work := filepath.Join(t.TempDir(), "work")
	mx("publish", "-q", "--keys", keys, "--channel", "testing", "--arch", "x86_64", "--version", "10.0.1", "--work", work, tree)

	// status: every role, no warning while fresh.
	out := mx("metadata", "status")
	for _, want := range []string{"ROLE", "root", "targets", "rollouts", "snapshot", "timestamp"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status does not list %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Warning") {
		t.Fatalf("fresh metadata warned:\n%s", out)
	}
	// 70 days on, targets (90 days) are within 30 days of expiry: status
	// and channels warn; root (1 year) does not.
	metaNow = func() time.Time { return time.Now().Add(70 * 24 * time.Hour) }
	t.Cleanup(func() { metaNow = time.Now })
	for _, cmd := range [][]string{{"metadata", "status"}, {"channels"}} {
		out = mx(cmd...)
		if !strings.Contains(out, "Warning: signed targets") || !strings.Contains(out, "mxosctl metadata renew --targets") || strings.Contains(out, "signed root") {
			t.Fatalf("%v 70 days on:\n%s", cmd, out)
		}
	}
	metaNow = time.Now

	// renew targets: a new version, a new expiry, served and exported.
	before := roleStatus(t, ts.MetaDir, "targets")
	out = mx("metadata", "renew", "--targets", "--keys", keys)
	after := roleStatus(t, ts.MetaDir, "targets")
	if after.Version != before.Version+1 || !strings.Contains(out, "Renewed") {
		t.Fatalf("renew: targets v%d -> v%d\n%s", before.Version, after.Version, out)
	}
	rootBefore := roleStatus(t, ts.MetaDir, "root")
	mx("metadata", "renew", "--keys", keys)
	if r := roleStatus(t, ts.MetaDir, "root"); r.Version != rootBefore.Version+1 {
		t.Fatalf("renew of root: v%d -> v%d", rootBefore.Version, r.Version)
	}
	after = roleStatus(t, ts.MetaDir, "targets")
	metrics := httpGet(t, ts.URL+"/metrics")
	want := fmt.Sprintf(`mxos_metadata_expiry_timestamp_seconds{role="targets"} %s`, strconv.FormatFloat(float64(after.Expires.Unix()), 'g', -1, 64))
	if !strings.Contains(metrics, want) {
		t.Fatalf("/metrics lacks %q", want)
	}

	// sign-existing: targets that lost 10.0.1 (as if published before
	// metadata was on) get it back, checked against its commit.
	signers, err := publish.LoadEd25519Signers(keys)
	if err != nil {
		t.Fatal(err)
	}
	root, targets := readMeta(t, ts.MetaDir, "root.json"), readMeta(t, ts.MetaDir, "targets.json")
	empty, err := publish.BuildTargets(root, targets, nil, signers, publish.Options{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := ts.Client(t, auth.RoleRelease)
	if _, err := c.PutMetadata(context.Background(), api.MetadataUpdate{Targets: empty}); err != nil {
		t.Fatal(err)
	}
	out = mx("metadata", "sign-existing", "--keys", keys)
	if !strings.Contains(out, "Signing 10.0.1 x86_64 on testing") {
		t.Fatalf("sign-existing:\n%s", out)
	}
	if rels, _ := publish.ListedReleases(readMeta(t, ts.MetaDir, "targets.json")); len(rels) != 1 || rels[0].Version != "10.0.1" {
		t.Fatalf("targets after sign-existing: %+v", rels)
	}
	if out = mx("metadata", "sign-existing", "--keys", keys); !strings.Contains(out, "already") {
		t.Fatalf("second sign-existing:\n%s", out)
	}
	// Another key cannot sign existing releases (its root check fails).
	other := filepath.Join(t.TempDir(), "other")
	mx("keys", "generate", "--dir", other)
	if out, err := run(t, append([]string{"metadata", "sign-existing", "--keys", other}, srv...)...); err == nil || !strings.Contains(out+err.Error(), "not signed by the given key") {
		t.Fatalf("sign-existing with a foreign key: %v\n%s", err, out)
	}

	// rotate-keys: a device shipping root 1 follows to the new release
	// key; afterwards targets signed by the old key are refused.
	shipped := readMeta(t, ts.MetaDir, "1.root.json")
	newKeys := filepath.Join(t.TempDir(), "new")
	mx("keys", "generate", "--dir", newKeys)
	oldRoot := readMeta(t, ts.MetaDir, "root.json")
	out = mx("metadata", "rotate-keys", "--keys", keys, "--new-keys", newKeys)
	if !strings.Contains(out, "Rotated") {
		t.Fatalf("rotate-keys:\n%s", out)
	}
	dev, err := channelmeta.NewClient(channelmeta.ClientConfig{TrustedRoot: shipped, CacheDir: t.TempDir(), URL: ts.URL + "/metadata/"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := dev.Load(context.Background())
	if err != nil {
		t.Fatalf("device after rotation: %v", err)
	}
	if st.RootVersion != roleStatus(t, ts.MetaDir, "root").Version || len(st.Releases) != 1 {
		t.Fatalf("device: root v%d, releases %+v", st.RootVersion, st.Releases)
	}
	// The old key signs a higher targets version against the old root:
	// the server refuses it, and the device keeps the new state.
	stale, err := publish.BuildTargets(oldRoot, readMeta(t, ts.MetaDir, "targets.json"), nil, signers, publish.Options{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutMetadata(context.Background(), api.MetadataUpdate{Targets: stale}); err == nil || !strings.Contains(err.Error(), "not signed by the required keys") {
		t.Fatalf("targets signed by the retired key: %v", err)
	}
	if out, err := run(t, append([]string{"metadata", "renew", "--targets", "--keys", keys}, srv...)...); err == nil {
		t.Fatalf("renew with the retired key succeeded:\n%s", out)
	}
	mx("metadata", "renew", "--targets", "--keys", newKeys)
	if st, err := dev.Load(context.Background()); err != nil || len(st.Releases) != 1 {
		t.Fatalf("device after renewal with the new key: %v", err)
	}
}

func roleStatus(t *testing.T, dir, role string) publish.RoleStatus {
	t.Helper()
	rs, err := publish.RoleInfo(role, readMeta(t, dir, role+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func readMeta(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
