package main

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

func TestImageKeyPrintsTheReleaseKey(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys")
	if _, err := run(t, "keys", "generate", "--dir", keys); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "image-key", "--keys", keys)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(out))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	data, _ := os.ReadFile(filepath.Join(keys, sign.Ed25519PublicFile))
	want, err := sign.ParseEd25519PublicKeys(data)
	if err != nil || !want[0].Equal(pub.(ed25519.PublicKey)) {
		t.Errorf("printed key is not ed25519.pub's first key (%v)", err)
	}
	if _, err := run(t, "image-key"); err == nil {
		t.Error("no --keys accepted")
	}
	if _, err := run(t, "image-key", "--keys", t.TempDir()); err == nil {
		t.Error("a directory without keys accepted")
	}
}

func TestPublishImageRefusesBeforePublishing(t *testing.T) {
	dir := t.TempDir()
	keys, data, tree := filepath.Join(dir, "keys"), filepath.Join(dir, "data"), filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc/os-release"), []byte("NAME=MxOS\n"), 0o644)
	if _, err := run(t, "keys", "generate", "--dir", keys); err != nil {
		t.Fatal(err)
	}
	// A ref that names no image repository.
	_, err := run(t, "publish", "-q", "--data", data, "--keys", keys, "--ref", "os/x86_64/stable", "--version", "1", "--image", tree)
	if err == nil || !strings.Contains(err.Error(), "mxos/<major>/<arch>/<channel>") {
		t.Fatalf("error %v", err)
	}
	// Keys without the ed25519 release key.
	pgpOnly := filepath.Join(dir, "pgp")
	os.MkdirAll(pgpOnly, 0o700)
	for _, f := range []string{sign.OpenPGPSecretFile, sign.OpenPGPPublicFile} {
		b, _ := os.ReadFile(filepath.Join(keys, f))
		os.WriteFile(filepath.Join(pgpOnly, f), b, 0o600)
	}
	if _, err := run(t, "publish", "-q", "--data", data, "--keys", pgpOnly, "--ref", "mxos/10/x86_64/testing", "--version", "1", "--image", tree); err == nil {
		t.Fatal("publish --image without the ed25519 key succeeded")
	}
	if repo, err := ostree.Open(filepath.Join(data, "repo")); err == nil {
		if refs, _ := repo.ListRefs(); len(refs) != 0 {
			t.Errorf("refs %v after refusals", refs)
		}
	}
}
