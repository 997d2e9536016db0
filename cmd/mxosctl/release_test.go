package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/testserver"
)

// k-of-n release signatures, as a release team runs them: stable with
// "threshold: 2" refuses a promotion signed by one member; promote
// --sign-only and release cosign by a second member get it published,
// and a device sees it.
func TestReleaseCosign(t *testing.T) {
	chans := t.TempDir()
	for _, n := range []string{"stable.yaml", "testing.yaml", "edu.yaml"} {
		b, err := os.ReadFile(filepath.Join(testserver.ChannelsDir(), n))
		if err != nil {
			t.Fatal(err)
		}
		if n == "stable.yaml" {
			b = append(b, "\nthreshold: 2\n"...)
		}
		if err := os.WriteFile(filepath.Join(chans, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ts := testserver.Start(t, testserver.Options{Metadata: true, Serve: true, Roles: []auth.Role{auth.RoleRelease}, ChannelsDir: chans})
	t.Setenv("MXOS_TOKEN", ts.Tokens[auth.RoleRelease])
	srv := []string{"--server", ts.URL}
	mx := func(args ...string) (string, error) {
		t.Helper()
		return run(t, append(args, srv...)...)
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := mx(args...)
		if err != nil {
			t.Fatalf("mxosctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	ana, beto := ts.Release.Dir, filepath.Join(t.TempDir(), "beto")
	must("keys", "generate", "--dir", beto)
	must("metadata", "rotate-keys", "--keys", ana, "--add-release-pub", beto)

	tree := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc/os-release"), []byte("NAME=MxOS\n"), 0o644)
	work := filepath.Join(t.TempDir(), "work")
	must("publish", "-q", "--keys", ana, "--channel", "testing", "--arch", "x86_64", "--version", "10.0.1", "--work", work, tree)

	promote := []string{"promote", "--from", "testing", "--to", "stable", "--arch", "x86_64", "--version", "10.0.1", "--work", work}
	if out, err := mx(append(promote, "--keys", ana)...); err == nil || !strings.Contains(out+err.Error(), "needs 2 release signatures") {
		t.Fatalf("promotion with one signature: %v\n%s", err, out)
	}
	file := filepath.Join(t.TempDir(), "promotion.json")
	out := must(append(promote, "--keys", ana, "--sign-only", file)...)
	if !strings.Contains(out, "1 of 2 release signatures") {
		t.Fatalf("sign-only:\n%s", out)
	}
	if out, err := mx("release", "cosign", file, "--keys", ana); err == nil || !strings.Contains(out+err.Error(), "already signed") {
		t.Fatalf("cosign by the same member: %v\n%s", err, out)
	}
	stranger := filepath.Join(t.TempDir(), "stranger")
	must("keys", "generate", "--dir", stranger)
	if out, err := mx("release", "cosign", file, "--keys", stranger); err == nil || !strings.Contains(out+err.Error(), "not a release key") {
		t.Fatalf("cosign by a key root does not name: %v\n%s", err, out)
	}
	out = must("release", "cosign", file, "--keys", beto)
	if !strings.Contains(out, "Promoted 10.0.1 to stable on x86_64 with 2 release signatures") {
		t.Fatalf("cosign:\n%s", out)
	}
	root, err := os.ReadFile(filepath.Join(ts.MetaDir, "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	dev, err := channelmeta.NewClient(channelmeta.ClientConfig{TrustedRoot: root, CacheDir: t.TempDir(), URL: ts.URL + "/metadata/"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := dev.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rel, ok := st.Lookup("stable", "x86_64", "10.0.1"); !ok || rel.Threshold != 2 {
		t.Fatalf("device: stable 10.0.1 %+v %v (ignored %v)", rel, ok, st.Ignored)
	}
}
