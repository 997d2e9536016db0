package updater

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/oci/bootimage"
	"github.com/mxos-linux/mxos-update/internal/oci/imagename"
	"github.com/mxos-linux/mxos-update/internal/oci/ocisig"
	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// TestAgentOCITransport: a device with `transport: oci` upgrades from the
// release's signed bootable image and ends up on the very commit the
// server offered; an image without a valid signature is refused and
// nothing is deployed.
func TestAgentOCITransport(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	env := startAgentEnv(t, true)
	store := env.srv.Registry()
	host := strings.TrimPrefix(env.url, "http://")
	pubKey, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := ocisig.PublicKeyPEM(pubKey)
	if err != nil {
		t.Fatal(err)
	}
	image := func(version string, signed bool) {
		t.Helper()
		env.f.publish(t, version)
		commit, err := ostree.ParseChecksum(env.f.commits[version])
		if err != nil {
			t.Fatal(err)
		}
		im, err := bootimage.Build(ctx, env.f.pub.Repo, store, bootimage.BuildRequest{Repository: "mxos/10/x86_64", Arch: "x86_64",
			Version: version, Commit: commit, TempDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		tags := imagename.Tags("stable", version)
		if err := bootimage.Tag(ctx, store, im, tags...); err != nil {
			t.Fatal(err)
		}
		if signed {
			if err := ocisig.SignImage(ctx, store, "mxos/10/x86_64", im.Digest, host+"/mxos/10/x86_64:"+tags[1], key); err != nil {
				t.Fatal(err)
			}
		}
	}

	a, out := newTestAgent(t, env.url, env.tokens[auth.RoleDevice], env.keys, env.root, env.verifiers, "kiosk-07", "transport: oci\n")
	a.ImageKeys = [][]byte{pem}
	sys := a.Sys
	t.Cleanup(func() { t.Log(out.String()) })

	// A fresh machine takes 10.0.1 from its image.
	image("10.0.1", true)
	if changed, err := a.Upgrade(ctx); err != nil || !changed {
		t.Fatalf("upgrade from the image: changed=%v err=%v", changed, err)
	}
	cur, err := sys.Current()
	if err != nil || cur.Commit.String() != env.f.commits["10.0.1"] {
		t.Fatalf("current after the OCI upgrade: %+v %v (want commit %s)", cur, err, env.f.commits["10.0.1"])
	}
	if b, err := os.ReadFile(filepath.Join(cur.Path, "usr/bin/hello")); err != nil || !strings.Contains(string(b), "10.0.1") {
		t.Fatalf("deployed tree: %q %v", b, err)
	}
	if err := a.Boot(ctx); err != nil {
		t.Fatal(err)
	}

	// 10.0.2's image is not signed: refused, 10.0.1 stays.
	image("10.0.2", false)
	changed, err := a.Upgrade(ctx)
	if err == nil || changed {
		t.Fatalf("unsigned image: changed=%v err=%v", changed, err)
	}
	if !strings.Contains(err.Error(), "10.0.2") {
		t.Errorf("the error does not name the version: %v", err)
	}
	after, err := sys.Current()
	if err != nil || after.Name != cur.Name {
		t.Fatalf("current changed after a refused image: %+v %v", after, err)
	}
	if list, _ := sys.List(); len(list) != 1 {
		t.Fatalf("deployments after a refused image: %v", list)
	}
}
