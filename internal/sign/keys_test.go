package sign

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var allKeyFiles = []string{Ed25519SecretFile, Ed25519PublicFile, OpenPGPSecretFile, OpenPGPPublicFile}

func TestGenerateKeysFilesAndModes(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "a", "keys") // intermediate dirs are created too
	if err := GenerateKeys(dir, GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		t.Fatalf("key directory mode %04o, want no group/other access", st.Mode().Perm())
	}

	wantModes := map[string]fs.FileMode{
		Ed25519SecretFile: 0o600,
		Ed25519PublicFile: 0o644,
		OpenPGPSecretFile: 0o600,
		OpenPGPPublicFile: 0o644,
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	want := append([]string(nil), allKeyFiles...)
	sort.Strings(want)
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("directory holds %v, want exactly %v (no temp files left behind)", names, want)
	}
	for name, mode := range wantModes {
		st, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !st.Mode().IsRegular() || st.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want regular file %04o", name, st.Mode(), mode)
		}
	}

	// The two halves of each pair belong together.
	secrets, err := ParseEd25519SecretKeys(readFile(t, filepath.Join(dir, Ed25519SecretFile)))
	if err != nil || len(secrets) != 1 {
		t.Fatalf("ed25519.secret: %d keys, %v", len(secrets), err)
	}
	pubs, err := ParseEd25519PublicKeys(readFile(t, filepath.Join(dir, Ed25519PublicFile)))
	if err != nil || len(pubs) != 1 {
		t.Fatalf("ed25519.pub: %d keys, %v", len(pubs), err)
	}
	if !bytes.Equal(secrets[0].Public().(ed25519.PublicKey), pubs[0]) {
		t.Fatal("ed25519.pub does not match ed25519.secret")
	}

	signers, err := LoadSigners(dir)
	if err != nil {
		t.Fatal(err)
	}
	verifiers, err := LoadVerifiers(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(verifiers) != 2 {
		t.Fatalf("LoadVerifiers returned %d verifiers, want 2", len(verifiers))
	}
	data := []byte("round trip through the key directory")
	meta := map[string][][]byte{}
	for _, s := range signers {
		sig, err := s.Sign(data)
		if err != nil {
			t.Fatal(err)
		}
		meta[s.MetaKey()] = append(meta[s.MetaKey()], sig)
	}
	if len(meta) != 2 {
		t.Fatalf("signatures under %d metadata keys, want 2", len(meta))
	}
	if err := VerifyAll(verifiers, data, meta); err != nil {
		t.Fatal(err)
	}
}

func TestGenerateKeysTwiceProducesDifferentKeys(t *testing.T) {
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	for _, d := range []string{a, b} {
		if err := GenerateKeys(d, GenerateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range allKeyFiles {
		if bytes.Equal(readFile(t, filepath.Join(a, name)), readFile(t, filepath.Join(b, name))) {
			t.Fatalf("%s identical in two generations", name)
		}
	}
}

// snapshot records names, modes and contents of every entry in dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = info.Mode().String() + ":" + string(readFile(t, filepath.Join(dir, e.Name())))
	}
	return out
}

func TestGenerateKeysRefusesToOverwrite(t *testing.T) {
	for _, existing := range allKeyFiles {
		t.Run(existing, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, existing), []byte("precious\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, dir)
			err := GenerateKeys(dir, GenerateOptions{})
			if !errors.Is(err, ErrKeysExist) {
				t.Fatalf("GenerateKeys = %v, want ErrKeysExist", err)
			}
			if !strings.Contains(err.Error(), existing) {
				t.Fatalf("error %q does not name %s", err, existing)
			}
			after := snapshot(t, dir)
			if len(after) != len(before) || after[existing] != before[existing] {
				t.Fatalf("directory changed: before %d entries, after %d", len(before), len(after))
			}
		})
	}
	t.Run("complete key directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := GenerateKeys(dir, GenerateOptions{}); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, dir)
		if err := GenerateKeys(dir, GenerateOptions{}); !errors.Is(err, ErrKeysExist) {
			t.Fatalf("second GenerateKeys = %v, want ErrKeysExist", err)
		}
		after := snapshot(t, dir)
		for name, v := range before {
			if after[name] != v {
				t.Fatalf("%s changed", name)
			}
		}
		if len(after) != len(before) {
			t.Fatalf("entries: before %d, after %d", len(before), len(after))
		}
	})
	t.Run("dangling symlink counts as existing", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Symlink("/nonexistent/target", filepath.Join(dir, Ed25519SecretFile)); err != nil {
			t.Fatal(err)
		}
		if err := GenerateKeys(dir, GenerateOptions{}); !errors.Is(err, ErrKeysExist) {
			t.Fatalf("GenerateKeys = %v, want ErrKeysExist", err)
		}
	})
}

func TestWriteFileNoClobber(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := writeFileNoClobber(p, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeFileNoClobber(p, []byte("two"), 0o644); !errors.Is(err, ErrKeysExist) {
		t.Fatalf("second write = %v, want ErrKeysExist", err)
	}
	if got := string(readFile(t, p)); got != "one" {
		t.Fatalf("content %q, want %q", got, "one")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("%d entries left, want 1 (temp files must be removed)", len(entries))
	}
}

func TestLoadSignersPermissions(t *testing.T) {
	src := filepath.Join(t.TempDir(), "keys")
	if err := GenerateKeys(src, GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		file    string
		mode    fs.FileMode
		wantErr bool
	}{
		{"ed25519 0600", Ed25519SecretFile, 0o600, false},
		{"ed25519 0400", Ed25519SecretFile, 0o400, false},
		{"ed25519 0644", Ed25519SecretFile, 0o644, true},
		{"ed25519 0640", Ed25519SecretFile, 0o640, true},
		{"ed25519 0604", Ed25519SecretFile, 0o604, true},
		{"ed25519 0620 (group-writable)", Ed25519SecretFile, 0o620, true},
		{"openpgp 0600", OpenPGPSecretFile, 0o600, false},
		{"openpgp 0644", OpenPGPSecretFile, 0o644, true},
		{"openpgp 0660", OpenPGPSecretFile, 0o660, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, tc.file)
			if err := os.WriteFile(p, readFile(t, filepath.Join(src, tc.file)), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			signers, err := LoadSigners(dir)
			if !tc.wantErr {
				if err != nil || len(signers) != 1 {
					t.Fatalf("LoadSigners = %d signers, %v; want 1", len(signers), err)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadSigners accepted a %04o secret file", tc.mode)
			}
			if !strings.Contains(err.Error(), "too open") {
				t.Fatalf("error %q does not explain the permission problem", err)
			}
		})
	}
}

func TestLoadSignersAndVerifiersErrors(t *testing.T) {
	src := filepath.Join(t.TempDir(), "keys")
	if err := GenerateKeys(src, GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	type file struct {
		name string
		data []byte
		mode fs.FileMode
	}
	copyOf := func(name string) file {
		mode := fs.FileMode(0o644)
		if strings.Contains(name, "secret") {
			mode = 0o600
		}
		return file{name, readFile(t, filepath.Join(src, name)), mode}
	}
	tests := []struct {
		name          string
		files         []file
		signers       int    // expected count when no error
		signersErr    string // substring
		signersNoKeys bool
		verifiers     int
		verifiersErr  string
		verifNoKeys   bool
	}{
		{
			name:       "empty directory",
			signersErr: "neither", signersNoKeys: true,
			verifiersErr: "neither", verifNoKeys: true,
		},
		{
			name:         "ed25519 only",
			files:        []file{copyOf(Ed25519SecretFile), copyOf(Ed25519PublicFile)},
			signers:      1,
			verifiers:    1,
			verifiersErr: "",
		},
		{
			name:      "openpgp only",
			files:     []file{copyOf(OpenPGPSecretFile), copyOf(OpenPGPPublicFile)},
			signers:   1,
			verifiers: 1,
		},
		{
			name:         "malformed ed25519 secret",
			files:        []file{{Ed25519SecretFile, []byte("bm90IGEga2V5\n"), 0o600}, copyOf(OpenPGPSecretFile)},
			signersErr:   "ed25519.secret: ed25519 secret keys: line 1",
			verifiersErr: "neither", verifNoKeys: true,
		},
		{
			name:       "malformed ed25519 public",
			files:      []file{{Ed25519PublicFile, []byte("AAAA\n"), 0o644}, copyOf(OpenPGPPublicFile)},
			signersErr: "neither", signersNoKeys: true,
			verifiersErr: "ed25519.pub: ed25519 public keys: line 1: decodes to 3 bytes",
		},
		{
			name:         "malformed openpgp files",
			files:        []file{{OpenPGPSecretFile, []byte("junk"), 0o600}, {OpenPGPPublicFile, []byte("junk"), 0o644}},
			signersErr:   "openpgp.secret.asc",
			verifiersErr: "openpgp.pub.asc",
		},
		{
			name:       "empty key files",
			files:      []file{{Ed25519SecretFile, nil, 0o600}, {Ed25519PublicFile, nil, 0o644}},
			signersErr: "empty key file", signersNoKeys: true,
			verifiersErr: "empty key file", verifNoKeys: true,
		},
		{
			name:       "secret keyring as public trust root",
			files:      []file{{OpenPGPPublicFile, readFile(t, filepath.Join(src, OpenPGPSecretFile)), 0o644}},
			signersErr: "neither", signersNoKeys: true,
			verifiersErr: "secret key material",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
					t.Fatal(err)
				}
			}
			signers, err := LoadSigners(dir)
			checkLoad(t, "LoadSigners", len(signers), err, tc.signers, tc.signersErr, tc.signersNoKeys)
			verifiers, err := LoadVerifiers(dir)
			checkLoad(t, "LoadVerifiers", len(verifiers), err, tc.verifiers, tc.verifiersErr, tc.verifNoKeys)
		})
	}
}

func checkLoad(t *testing.T, what string, n int, err error, want int, wantErr string, noKeys bool) {
	t.Helper()
	if wantErr == "" {
		if err != nil || n != want {
			t.Fatalf("%s = %d, %v; want %d, nil", what, n, err, want)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), wantErr) {
		t.Fatalf("%s error = %v, want one containing %q", what, err, wantErr)
	}
	if noKeys != errors.Is(err, ErrNoKeys) {
		t.Fatalf("%s: errors.Is(err, ErrNoKeys) = %v, want %v (%v)", what, !noKeys, noKeys, err)
	}
}

func TestLoadSignersRefusesNonRegularFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, Ed25519SecretFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigners(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("LoadSigners = %v, want a not-a-regular-file error", err)
	}
}

func TestSecretsNotInErrors(t *testing.T) {
	// A secret key file that is broken on its second line: the error must
	// name the line but carry none of the first line's key material.
	src := filepath.Join(t.TempDir(), "keys")
	if err := GenerateKeys(src, GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	good := bytes.TrimSpace(readFile(t, filepath.Join(src, Ed25519SecretFile)))
	dir := t.TempDir()
	bad := append(append(bytes.Clone(good), '\n'), good[:40]...)
	if err := os.WriteFile(filepath.Join(dir, Ed25519SecretFile), bad, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadSigners(dir)
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("LoadSigners = %v, want a line 2 error", err)
	}
	for i := 0; i+12 <= len(good); i += 4 {
		if strings.Contains(err.Error(), string(good[i:i+12])) {
			t.Fatalf("error leaks secret key material: %v", err)
		}
	}
}
