package sign

import (
	"bytes"
	"crypto/ed25519"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
)

// ParseEd25519PublicKeys parses an ostree ed25519 public key file: one
// standard, padded base64 encoding of a 32-byte key per line. A final newline
// is accepted; empty lines, whitespace and anything that does not decode to
// exactly 32 bytes are rejected with the line number, because ostree (HEAD)
// rejects such files too and a key file we accept must also work for stock
// ostree clients.
func ParseEd25519PublicKeys(data []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	err := forEachKeyLine(data, func(line int, raw []byte) error {
		if len(raw) != ed25519.PublicKeySize {
			return fmt.Errorf("line %d: decodes to %d bytes, want %d", line, len(raw), ed25519.PublicKeySize)
		}
		keys = append(keys, ed25519.PublicKey(raw))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ed25519 public keys: %w", err)
	}
	return keys, nil
}

// ParseEd25519SecretKeys parses an ostree ed25519 secret key file: one base64
// encoding of 64 bytes (seed ‖ public key, libsodium's and Go's layout) per
// line. It checks that the public half matches the seed, so a corrupted or
// hand-assembled key cannot produce signatures that verify under a different
// public key than the one written next to it. Errors never include key bytes.
func ParseEd25519SecretKeys(data []byte) ([]ed25519.PrivateKey, error) {
	var keys []ed25519.PrivateKey
	err := forEachKeyLine(data, func(line int, raw []byte) error {
		if len(raw) != ed25519.PrivateKeySize {
			clear(raw)
			return fmt.Errorf("line %d: decodes to %d bytes, want %d", line, len(raw), ed25519.PrivateKeySize)
		}
		derived := ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
		defer clear(derived)
		if subtle.ConstantTimeCompare(derived[ed25519.SeedSize:], raw[ed25519.SeedSize:]) != 1 {
			clear(raw)
			return fmt.Errorf("line %d: public half does not match the seed", line)
		}
		keys = append(keys, ed25519.PrivateKey(raw))
		return nil
	})
	if err != nil {
		for _, k := range keys {
			clear(k)
		}
		return nil, fmt.Errorf("ed25519 secret keys: %w", err)
	}
	return keys, nil
}

// forEachKeyLine splits data into lines, decodes each as canonical standard
// base64 and hands the bytes to fn. It returns an error wrapping ErrNoKeys for
// an empty file. Messages carry line numbers only, never line contents, since
// the same parser reads secret keys.
func forEachKeyLine(data []byte, fn func(line int, raw []byte) error) error {
	data = bytes.TrimSuffix(data, []byte("\n"))
	if len(data) == 0 {
		return fmt.Errorf("%w: empty key file", ErrNoKeys)
	}
	for i, line := range bytes.Split(data, []byte("\n")) {
		n := i + 1
		if len(line) == 0 {
			return fmt.Errorf("line %d: empty line", n)
		}
		raw := make([]byte, base64.StdEncoding.DecodedLen(len(line)))
		m, err := base64.StdEncoding.Strict().Decode(raw, line)
		if err != nil {
			clear(raw)
			return fmt.Errorf("line %d: not valid base64", n)
		}
		raw = raw[:m]
		// Go's decoder silently skips '\r' and '\n'; insist on the canonical
		// form so that what we accept is exactly what ostree's reader sees.
		if base64.StdEncoding.EncodedLen(m) != len(line) {
			clear(raw)
			return fmt.Errorf("line %d: not canonical base64 (stray characters such as CR or spaces?)", n)
		}
		if err := fn(n, raw); err != nil {
			return err
		}
	}
	return nil
}

// FormatEd25519PublicKeys renders keys in ostree's key file format.
func FormatEd25519PublicKeys(keys []ed25519.PublicKey) []byte {
	var b bytes.Buffer
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// formatEd25519SecretKey renders one secret key line. The caller owns (and
// should clear) the returned buffer.
func formatEd25519SecretKey(key ed25519.PrivateKey) []byte {
	out := make([]byte, base64.StdEncoding.EncodedLen(len(key))+1)
	base64.StdEncoding.Encode(out, key)
	out[len(out)-1] = '\n'
	return out
}

type ed25519Signer struct {
	key ed25519.PrivateKey
}

// NewEd25519Signer returns a Signer producing raw 64-byte RFC 8032 signatures
// for Ed25519MetaKey.
func NewEd25519Signer(key ed25519.PrivateKey) (Signer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("ed25519 signer: key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	return &ed25519Signer{key: key}, nil
}

func (s *ed25519Signer) MetaKey() string { return Ed25519MetaKey }

func (s *ed25519Signer) Sign(data []byte) ([]byte, error) {
	return ed25519.Sign(s.key, data), nil
}

// KeyID is the base64 public key, as it appears in ed25519.pub.
func (s *ed25519Signer) KeyID() string {
	return base64.StdEncoding.EncodeToString(s.key[ed25519.SeedSize:])
}

type ed25519Verifier struct {
	keys []ed25519.PublicKey
}

// NewEd25519Verifier returns a Verifier trusting pubs. Keys of the wrong
// length are dropped (ed25519.Verify would panic on them); with no usable key
// every verification fails with ErrBadSignature.
func NewEd25519Verifier(pubs []ed25519.PublicKey) Verifier {
	v := &ed25519Verifier{}
	for _, p := range pubs {
		if len(p) == ed25519.PublicKeySize {
			v.keys = append(v.keys, bytes.Clone(p))
		}
	}
	return v
}

func (v *ed25519Verifier) MetaKey() string { return Ed25519MetaKey }

// KeyID lists the trusted public keys in base64, comma-separated.
func (v *ed25519Verifier) KeyID() string {
	return strings.ReplaceAll(strings.TrimSuffix(string(FormatEd25519PublicKeys(v.keys)), "\n"), "\n", ",")
}

func (v *ed25519Verifier) Verify(data []byte, sigs [][]byte) error {
	if len(sigs) == 0 {
		return fmt.Errorf("%s: %w", Ed25519MetaKey, ErrNoSignatures)
	}
	if len(v.keys) == 0 {
		return badSignatures(Ed25519MetaKey, len(sigs), []string{"no trusted ed25519 keys configured"})
	}
	var reasons []string
	for i, sig := range sigs {
		if len(sig) != ed25519.SignatureSize {
			reasons = append(reasons, fmt.Sprintf("signature %d is %d bytes, want %d", i, len(sig), ed25519.SignatureSize))
			continue
		}
		for _, k := range v.keys {
			if ed25519.Verify(k, data, sig) {
				return nil
			}
		}
		reasons = append(reasons, fmt.Sprintf("signature %d matches none of %d trusted key(s)", i, len(v.keys)))
	}
	return badSignatures(Ed25519MetaKey, len(sigs), reasons)
}
