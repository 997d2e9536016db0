package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// The quick start generates keys inside the checkout (--dir keys, and
// online-keys): git must ignore every secret file they hold, and no
// public key file.
func TestQuickStartKeysIgnored(t *testing.T) {
	git := testtool.Require(t, "git")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := run(t, "keys", "generate", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) < 4 {
		t.Fatalf("keys generate wrote %d files: %v", len(ents), err)
	}
	for _, sub := range []string{"keys", "online-keys"} {
		for _, e := range ents {
			rel := sub + "/" + e.Name()
			err := exec.Command(git, "-C", root, "check-ignore", "-q", "--no-index", rel).Run()
			ignored := err == nil
			if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != 1) {
				t.Fatalf("git check-ignore %s: %v", rel, err)
			}
			secret := strings.Contains(e.Name(), "secret")
			if secret && !ignored {
				t.Errorf("%s is a secret key git would commit (.gitignore)", rel)
			}
			if !secret && sub == "keys" && ignored {
				t.Errorf("%s is a public key git ignores", rel)
			}
		}
	}
}
