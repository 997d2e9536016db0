package sign

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mxos-linux/mxos-update/internal/storage"
)

// maxKeyFileSize bounds how much of a key file is read; real ones are a few KiB.
const maxKeyFileSize = 1 << 20

// GenerateOptions set the identity of a generated OpenPGP key.
type GenerateOptions struct {
	Name  string // default DefaultKeyName
	Email string // default DefaultKeyEmail
}

// GenerateKeys writes both key pairs into dir (created 0700 if missing).
// Secret files are mode 0600, public files 0644. It refuses (error wrapping
// ErrKeysExist) to overwrite any existing key file, in which case nothing is
// written. Each file is written atomically (temp file + fsync + link/rename),
// and on failure the files created so far are removed again.
func GenerateKeys(dir string, opts GenerateOptions) (err error) {
	if opts.Name == "" {
		opts.Name = DefaultKeyName
	}
	if opts.Email == "" {
		opts.Email = DefaultKeyEmail
	}
	if err := storage.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("generate keys: %w", err)
	}
	var existing []string
	for _, name := range []string{Ed25519SecretFile, Ed25519PublicFile, OpenPGPSecretFile, OpenPGPPublicFile} {
		_, err := os.Lstat(filepath.Join(dir, name))
		switch {
		case err == nil:
			existing = append(existing, name)
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("generate keys: %w", err)
		}
	}
	if len(existing) > 0 {
		return fmt.Errorf("generate keys in %s: %w: %s", dir, ErrKeysExist, strings.Join(existing, ", "))
	}

	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate ed25519 key: %w", err)
	}
	defer clear(priv)
	edSecret := formatEd25519SecretKey(priv)
	defer clear(edSecret)

	pgpSecret, pgpPublic, err := GenerateOpenPGPKey(opts.Name, opts.Email)
	if err != nil {
		return err
	}
	defer clear(pgpSecret)

	files := []struct {
		name string
		data []byte
		mode fs.FileMode
	}{
		{Ed25519SecretFile, edSecret, 0o600},
		{Ed25519PublicFile, FormatEd25519PublicKeys([]ed25519.PublicKey{pub}), 0o644},
		{OpenPGPSecretFile, pgpSecret, 0o600},
		{OpenPGPPublicFile, pgpPublic, 0o644},
	}
	var created []string
	defer func() {
		if err != nil {
			for _, p := range created {
				_ = os.Remove(p)
			}
		}
	}()
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := writeFileNoClobber(p, f.data, f.mode); err != nil {
			return fmt.Errorf("generate keys: %w", err)
		}
		created = append(created, p)
	}
	if err := storage.SyncDir(dir); err != nil {
		return fmt.Errorf("generate keys: %w", err)
	}
	return nil
}

// writeFileNoClobber durably creates path with data and mode, refusing
// (ErrKeysExist) to replace a file that is there: storage.WriteFile with
// NoClobber, which links a synced temporary file into place, so a crash
// never leaves a truncated key behind.
func writeFileNoClobber(path string, data []byte, mode fs.FileMode) error {
	err := storage.WriteFile(path, data, mode, storage.NoClobber())
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %s", ErrKeysExist, path)
	}
	return err
}

// LoadSigners loads every secret key present in dir (ed25519.secret, one
// Signer per line, and/or openpgp.secret.asc, one Signer per key). It fails
// if neither file is present, if a file is malformed, or if a secret file is
// accessible by group or others (refused like ssh does, because a key that
// others could have read must be assumed compromised).
func LoadSigners(dir string) ([]Signer, error) {
	var out []Signer
	found := false

	data, err := readKeyFile(filepath.Join(dir, Ed25519SecretFile), true)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("load signers: %w", err)
	default:
		found = true
		keys, err := ParseEd25519SecretKeys(data)
		clear(data)
		if err != nil {
			return nil, fmt.Errorf("load signers: %s: %w", Ed25519SecretFile, err)
		}
		for _, k := range keys {
			out = append(out, &ed25519Signer{key: k})
		}
	}

	data, err = readKeyFile(filepath.Join(dir, OpenPGPSecretFile), true)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("load signers: %w", err)
	default:
		found = true
		signers, err := NewOpenPGPSigners(data)
		clear(data)
		if err != nil {
			return nil, fmt.Errorf("load signers: %s: %w", OpenPGPSecretFile, err)
		}
		out = append(out, signers...)
	}

	if !found {
		return nil, fmt.Errorf("load signers from %s: %w: neither %s nor %s present", dir, ErrNoKeys, Ed25519SecretFile, OpenPGPSecretFile)
	}
	return out, nil
}

// LoadVerifiers loads every public key present in dir: ed25519.pub (one
// Verifier for all its keys) and openpgp.pub.asc (one Verifier for the
// keyring). It fails if neither is present or one is malformed.
func LoadVerifiers(dir string) ([]Verifier, error) {
	var out []Verifier

	data, err := readKeyFile(filepath.Join(dir, Ed25519PublicFile), false)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("load verifiers: %w", err)
	default:
		keys, err := ParseEd25519PublicKeys(data)
		if err != nil {
			return nil, fmt.Errorf("load verifiers: %s: %w", Ed25519PublicFile, err)
		}
		out = append(out, NewEd25519Verifier(keys))
	}

	data, err = readKeyFile(filepath.Join(dir, OpenPGPPublicFile), false)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("load verifiers: %w", err)
	default:
		v, err := NewOpenPGPVerifier(data)
		if err != nil {
			return nil, fmt.Errorf("load verifiers: %s: %w", OpenPGPPublicFile, err)
		}
		out = append(out, v)
	}

	if len(out) == 0 {
		return nil, fmt.Errorf("load verifiers from %s: %w: neither %s nor %s present", dir, ErrNoKeys, Ed25519PublicFile, OpenPGPPublicFile)
	}
	return out, nil
}

// readKeyFile reads a key file of bounded size. For secret files the mode is
// checked on the opened descriptor (no check-then-open race): it must be a
// regular file without any group or other permission bits.
func readKeyFile(path string, secret bool) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if secret && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: permissions %04o are too open: a secret key file must not be accessible by group or others (chmod 600)", path, st.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		clear(data)
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		clear(data)
		return nil, fmt.Errorf("%s: larger than %d bytes, not a key file", path, maxKeyFileSize)
	}
	return data, nil
}
