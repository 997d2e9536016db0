package sign

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzParseEd25519PublicKeys(f *testing.F) {
	k := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32))
	for _, seed := range []string{"", "\n", k, k + "\n", k + "\n" + k + "\n", k + "\r\n", "AAAA", "====", "\x00\xff", k + "\n\n"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseEd25519PublicKeys(data)
		if err != nil {
			if keys != nil {
				t.Fatal("keys returned together with an error")
			}
			return
		}
		if len(keys) == 0 {
			t.Fatal("no error but no keys")
		}
		for _, key := range keys {
			if len(key) != ed25519.PublicKeySize {
				t.Fatalf("accepted a %d-byte key", len(key))
			}
		}
		// Whatever is accepted must round-trip exactly (modulo the optional
		// final newline): the parser accepts only canonical files.
		if got := FormatEd25519PublicKeys(keys); !bytes.Equal(bytes.TrimSuffix(got, []byte("\n")), bytes.TrimSuffix(data, []byte("\n"))) {
			t.Fatalf("accepted non-canonical input %q", data)
		}
		// A verifier built from them must not panic on anything.
		_ = NewEd25519Verifier(keys).Verify(data, [][]byte{data})
	})
}

func FuzzParseEd25519SecretKeys(f *testing.F) {
	k := base64.StdEncoding.EncodeToString(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32)))
	for _, seed := range []string{"", k, k + "\n", k[:40], strings.Repeat("A", 88)} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseEd25519SecretKeys(data)
		if err != nil {
			return
		}
		for _, key := range keys {
			if len(key) != ed25519.PrivateKeySize || !bytes.Equal(ed25519.NewKeyFromSeed(key.Seed()), key) {
				t.Fatal("accepted an inconsistent secret key")
			}
		}
	})
}

// FuzzEd25519Verify feeds arbitrary signatures (any length) to the Ed25519
// verifier: it must never panic and never accept.
func FuzzEd25519Verify(f *testing.F) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, 32))
	data := []byte("signed data")
	f.Add(data, ed25519.Sign(priv, data))
	f.Add(data, []byte{})
	f.Add(data, make([]byte, 10))
	f.Add([]byte{}, make([]byte, 64))
	v := NewEd25519Verifier([]ed25519.PublicKey{priv.Public().(ed25519.PublicKey)})
	f.Fuzz(func(t *testing.T, msg, sig []byte) {
		err := v.Verify(msg, [][]byte{sig})
		if err == nil {
			if !ed25519.Verify(priv.Public().(ed25519.PublicKey), msg, sig) {
				t.Fatal("accepted a signature ed25519.Verify rejects")
			}
			return
		}
		if !errors.Is(err, ErrBadSignature) {
			t.Fatalf("error %v does not wrap ErrBadSignature", err)
		}
	})
}

// FuzzOpenPGPVerify feeds garbage and mutated signatures, and mutated data,
// to the OpenPGP verifier: no panic (not even one recovered inside Verify),
// and nothing but the original data may ever verify.
func FuzzOpenPGPVerify(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "keys")
	if err := GenerateKeys(dir, GenerateOptions{}); err != nil {
		f.Fatal(err)
	}
	signers, err := LoadSigners(dir)
	if err != nil {
		f.Fatal(err)
	}
	verifiers, err := LoadVerifiers(dir)
	if err != nil {
		f.Fatal(err)
	}
	var pgp Signer
	var v Verifier
	for _, s := range signers {
		if s.MetaKey() == GPGMetaKey {
			pgp = s
		}
	}
	for _, x := range verifiers {
		if x.MetaKey() == GPGMetaKey {
			v = x
		}
	}
	orig := []byte("the exact commit bytes")
	sig, err := pgp.Sign(orig)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(orig, sig)
	f.Add(orig, sig[:len(sig)/2])
	f.Add(orig, []byte{})
	f.Add(orig, []byte{0xc2, 0xff, 0xff, 0xff, 0xff})
	f.Add(orig, []byte{0x88, 0x00})
	f.Add(orig, bytes.Repeat([]byte{0xa3, 0x01}, 50)) // old-style compressed packets
	f.Add([]byte("other"), sig)
	f.Fuzz(func(t *testing.T, data, s []byte) {
		err := v.Verify(data, [][]byte{s})
		if err == nil {
			if !bytes.Equal(data, orig) {
				t.Fatalf("accepted a signature over different data %q", data)
			}
			return
		}
		if !errors.Is(err, ErrBadSignature) {
			t.Fatalf("error %v does not wrap ErrBadSignature", err)
		}
		if strings.Contains(err.Error(), "parser panic") {
			t.Fatalf("OpenPGP parser panicked on this input: %v", err)
		}
	})
}

// FuzzNewOpenPGPVerifier: arbitrary keyrings must be rejected or accepted
// without panicking.
func FuzzNewOpenPGPVerifier(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "keys")
	if err := GenerateKeys(dir, GenerateOptions{}); err != nil {
		f.Fatal(err)
	}
	pub := readFile(f, filepath.Join(dir, OpenPGPPublicFile))
	f.Add(pub)
	f.Add(pub[:len(pub)/2])
	f.Add([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n"))
	f.Add([]byte{0x99, 0x00, 0x01})
	f.Fuzz(func(t *testing.T, keyring []byte) {
		v, err := NewOpenPGPVerifier(keyring)
		if err != nil {
			return
		}
		_ = v.Verify([]byte("x"), [][]byte{keyring})
	})
}
