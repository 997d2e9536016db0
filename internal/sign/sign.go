package sign

import (
	"errors"
	"fmt"
)

// Metadata keys under which ostree stores signatures, both in detached commit
// metadata (.commitmeta) and in summary.sig. Each maps to an "aay": a list of
// signatures.
const (
	Ed25519MetaKey = "ostree.sign.ed25519"
	GPGMetaKey     = "ostree.gpgsigs"
)

// File names inside a key directory.
const (
	Ed25519SecretFile = "ed25519.secret"
	Ed25519PublicFile = "ed25519.pub"
	OpenPGPSecretFile = "openpgp.secret.asc"
	OpenPGPPublicFile = "openpgp.pub.asc"
)

// Sentinel errors; returned errors wrap them with detail.
var (
	// ErrNoSignatures: there was nothing to verify.
	ErrNoSignatures = errors.New("no signatures")
	// ErrBadSignature: signatures were present but none verified with a trusted key.
	ErrBadSignature = errors.New("bad signature")
	// ErrKeysExist: GenerateKeys would have overwritten a key file.
	ErrKeysExist = errors.New("key file already exists")
	// ErrNoKeys: a key directory or key file held no usable key.
	ErrNoKeys = errors.New("no keys")
)

// A Signer produces one signature over data for one metadata key.
type Signer interface {
	MetaKey() string // Ed25519MetaKey or GPGMetaKey
	Sign(data []byte) ([]byte, error)
}

// A Verifier checks the signatures stored under one metadata key.
type Verifier interface {
	MetaKey() string
	// Verify returns nil when at least one of sigs is a valid signature of data by a trusted key.
	// Errors: ErrNoSignatures (sigs empty), ErrBadSignature (none verifies); wrapped with detail.
	Verify(data []byte, sigs [][]byte) error
}

// KeyIdentifier is implemented by the Signers and Verifiers of this package so
// that callers can log which key signed or verified something. The value is
// public: an Ed25519 public key in base64, or OpenPGP fingerprints in hex.
type KeyIdentifier interface {
	KeyID() string
}

// VerifyAll applies every verifier whose MetaKey is present in meta and
// requires each of them to pass, and at least one to be present: meta maps
// metadata key -> list of signatures.
//
// Requiring every configured engine that has signatures to pass (rather than
// any one, as ostree does) means a broken signature can never hide behind a
// good one of another kind.
func VerifyAll(verifiers []Verifier, data []byte, meta map[string][][]byte) error {
	if len(verifiers) == 0 {
		return fmt.Errorf("verify: %w: no verifiers configured", ErrNoKeys)
	}
	checked := 0
	for _, v := range verifiers {
		if v == nil {
			continue
		}
		sigs, ok := meta[v.MetaKey()]
		if !ok {
			continue
		}
		checked++
		// Verifier errors already name their metadata key.
		if err := v.Verify(data, sigs); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
	}
	if checked == 0 {
		return fmt.Errorf("verify: %w under any trusted metadata key (%s)", ErrNoSignatures, metaKeysOf(verifiers))
	}
	return nil
}

func metaKeysOf(verifiers []Verifier) string {
	seen := map[string]bool{}
	out := ""
	for _, v := range verifiers {
		if v == nil || seen[v.MetaKey()] {
			continue
		}
		seen[v.MetaKey()] = true
		if out != "" {
			out += ", "
		}
		out += v.MetaKey()
	}
	return out
}

// badSignatures builds the ErrBadSignature error for n rejected signatures,
// keeping the first few reasons so the message stays bounded.
func badSignatures(engine string, n int, reasons []string) error {
	const keep = 3
	detail := ""
	for i, r := range reasons {
		if i == keep {
			detail += fmt.Sprintf("; and %d more", len(reasons)-keep)
			break
		}
		if i > 0 {
			detail += "; "
		}
		detail += r
	}
	return fmt.Errorf("%s: %w: none of %d signature(s) verifies with a trusted key: %s", engine, ErrBadSignature, n, detail)
}
