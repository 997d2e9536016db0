package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// run executes mxosctl in process and returns its output and error.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestKeysPublishFsck(t *testing.T) {
	dir := t.TempDir()
	keys, other, data := filepath.Join(dir, "keys"), filepath.Join(dir, "other"), filepath.Join(dir, "data")
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc/os-release"), []byte("NAME=MxOS\n"), 0o644)

	if _, err := run(t, "keys", "generate", "--dir", keys); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "keys", "generate", "--dir", keys); err == nil {
		t.Fatal("keys generate overwrote existing keys")
	}
	run(t, "keys", "generate", "--dir", other)
	out, err := run(t, "publish", "-q", "--data", data, "--keys", keys, "--ref", "mxos/10/x86_64/testing", "--version", "10.0.1", tree)
	if err != nil || !strings.Contains(out, "Published mxos/10/x86_64/testing 10.0.1") {
		t.Fatalf("publish: %v\n%s", err, out)
	}
	if out, err := run(t, "fsck", "-q", "--data", data, "--keys", keys); err != nil || !strings.Contains(out, "0 problems") {
		t.Fatalf("fsck: %v\n%s", err, out)
	}
	// Signatures by another key are a problem fsck reports.
	if out, err := run(t, "fsck", "-q", "--data", data, "--keys", other); err == nil || !strings.Contains(out, "1 problems") {
		t.Fatalf("fsck with the wrong keys: %v\n%s", err, out)
	}
	cases := [][]string{
		{"publish", "--data", data, "--keys", keys, "--ref", "mxos/10/x86_64/testing", "--version", "10.0.1", tree}, // same version
		{"publish", "--data", data, "--keys", keys, "--version", "10.0.2", tree},                                    // no ref
		{"publish", "--data", data, "--ref", "r", "--version", "1", tree},                                           // no keys
		{"publish", "--data", data, "--keys", keys, "--ref", "../x", "--version", "2", tree},                        // bad ref
		{"keys", "generate"}, // no dir
		{"fsck", "--data", filepath.Join(dir, "nothing")},
	}
	for _, args := range cases {
		if _, err := run(t, args...); err == nil {
			t.Errorf("mxosctl %s succeeded", strings.Join(args, " "))
		}
	}
}

// A tree with a device node or FIFO is refused with the way out: the
// error names the file and suggests --skip-special, which then works.
func TestPublishSuggestsSkipSpecial(t *testing.T) {
	dir := t.TempDir()
	keys, data, tree := filepath.Join(dir, "keys"), filepath.Join(dir, "data"), filepath.Join(dir, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(tree, "dev", "initctl"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "keys", "generate", "--dir", keys); err != nil {
		t.Fatal(err)
	}
	args := []string{"publish", "-q", "--data", data, "--keys", keys, "--ref", "mxos/10/x86_64/testing", "--version", "10.0.1", tree}
	_, err := run(t, args...)
	if err == nil || !strings.Contains(err.Error(), "dev/initctl is a FIFO") || !strings.Contains(err.Error(), "--skip-special") {
		t.Fatalf("publish of a tree with a FIFO: %v", err)
	}
	if out, err := run(t, append(args, "--skip-special")...); err != nil || !strings.Contains(out, "Published") {
		t.Fatalf("publish --skip-special: %v\n%s", err, out)
	}
}
