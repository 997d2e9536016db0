package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
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
	signers, err := channelmeta.LoadEd25519Signers(online)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := channelmeta.Open(out, signers, channelmeta.Options{})
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
