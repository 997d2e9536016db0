package sign

import (
	"bytes"
	"crypto"
	"fmt"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Default identity of generated OpenPGP keys.
const (
	DefaultKeyName  = "MxOS Update release key"
	DefaultKeyEmail = "release@mxos.invalid"
)

// openpgpSigningHash is used for every signature we make: gpgme/GnuPG 2.2 and
// ostree accept it, and it is what gpg itself uses for EdDSA keys.
const openpgpSigningHash = crypto.SHA512

// openpgpAcceptedHashes are the message digests Verify accepts. SHA-1, MD5 and
// RIPEMD-160 are refused: a collision would let one signature cover two
// different commits.
var openpgpAcceptedHashes = []crypto.Hash{
	crypto.SHA256, crypto.SHA384, crypto.SHA512, crypto.SHA3_256, crypto.SHA3_512,
}

// GenerateOpenPGPKey creates a signing-only OpenPGP key and returns it as
// ASCII-armored secret and public key blocks.
//
// The key is a v4 EdDSA key on Ed25519 (the "legacy" EdDSA encoding from
// RFC 4880bis): GnuPG ≥ 2.1 and gpgme, hence every ostree build, verify it,
// whereas the RFC 9580 Ed25519 algorithm (27) and v6 keys need GnuPG 2.5.
// It has no expiry and no encryption subkey: it only ever signs. The secret
// key is not passphrase-protected; protect the file (0600, offline storage).
// Callers should clear the returned secret buffer when done.
func GenerateOpenPGPKey(name, email string) (secretArmored, publicArmored []byte, err error) {
	cfg := &packet.Config{
		Algorithm:       packet.PubKeyAlgoEdDSA,
		Curve:           packet.Curve25519,
		DefaultHash:     openpgpSigningHash,
		KeyLifetimeSecs: 0,
	}
	e, err := openpgp.NewEntity(name, "", email, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("generate openpgp key: %w", err)
	}
	// NewEntity always adds an ECDH encryption subkey; a release key never
	// decrypts anything, so drop it and keep the certificate minimal.
	e.Subkeys = nil

	var pub bytes.Buffer
	w, err := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("armor openpgp public key: %w", err)
	}
	if err := e.Serialize(w); err != nil {
		return nil, nil, fmt.Errorf("serialize openpgp public key: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, nil, fmt.Errorf("armor openpgp public key: %w", err)
	}
	pub.WriteByte('\n')

	var sec bytes.Buffer
	w, err = armor.Encode(&sec, openpgp.PrivateKeyType, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("armor openpgp secret key: %w", err)
	}
	// Without re-signing: the self-signatures made by NewEntity are final.
	if err := e.SerializePrivateWithoutSigning(w, nil); err != nil {
		clear(sec.Bytes())
		return nil, nil, fmt.Errorf("serialize openpgp secret key: %w", err)
	}
	if err := w.Close(); err != nil {
		clear(sec.Bytes())
		return nil, nil, fmt.Errorf("armor openpgp secret key: %w", err)
	}
	sec.WriteByte('\n')
	return sec.Bytes(), pub.Bytes(), nil
}

// readOpenPGPKeyring reads binary packets or one or more concatenated
// ASCII-armored key blocks (as produced by appending exported keys to one
// file during a key rotation).
func readOpenPGPKeyring(data []byte) (openpgp.EntityList, error) {
	const begin = "-----BEGIN PGP "
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%w: empty keyring", ErrNoKeys)
	}
	if !bytes.HasPrefix(trimmed, []byte(begin)) {
		el, err := openpgp.ReadKeyRing(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("read binary keyring: %w", err)
		}
		return el, nil
	}
	var el openpgp.EntityList
	rest := trimmed
	for n := 1; len(rest) > 0; n++ {
		next := bytes.Index(rest[len(begin):], []byte(begin))
		block := rest
		if next >= 0 {
			block, rest = rest[:next+len(begin)], rest[next+len(begin):]
		} else {
			rest = nil
		}
		// Decode each block on its own: armor.Decode reads through a
		// buffered reader, so it cannot be called twice on one stream.
		part, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(block))
		if err != nil {
			return nil, fmt.Errorf("armored block %d: %w", n, err)
		}
		el = append(el, part...)
	}
	return el, nil
}

type openpgpSigner struct {
	entity *openpgp.Entity
	keyID  uint64
	fpr    string
}

// NewOpenPGPSigners returns one Signer per secret key in an armored or binary
// OpenPGP secret keyring (e.g. openpgp.secret.asc or `gpg --export-secret-keys`).
// Passphrase-protected and stub (gnu-dummy) keys are refused.
func NewOpenPGPSigners(secretKeyring []byte) ([]Signer, error) {
	el, err := readOpenPGPKeyring(secretKeyring)
	if err != nil {
		return nil, fmt.Errorf("openpgp secret key: %w", err)
	}
	now := time.Now()
	var out []Signer
	for _, e := range el {
		if e.PrivateKey == nil {
			continue // a public certificate mixed in; it cannot sign
		}
		k, ok := e.SigningKey(now)
		if !ok {
			return nil, fmt.Errorf("openpgp secret key %X: no valid signing key (expired, revoked or not signing-capable)", e.PrimaryKey.Fingerprint)
		}
		switch {
		case k.PrivateKey == nil || k.PrivateKey.Dummy():
			return nil, fmt.Errorf("openpgp secret key %X: the signing key's secret part is missing", k.PublicKey.Fingerprint)
		case k.PrivateKey.Encrypted:
			return nil, fmt.Errorf("openpgp secret key %X: passphrase-protected keys are not supported", k.PublicKey.Fingerprint)
		}
		out = append(out, &openpgpSigner{entity: e, keyID: k.PublicKey.KeyId, fpr: fmt.Sprintf("%X", k.PublicKey.Fingerprint)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("openpgp secret key: %w: keyring holds no secret key", ErrNoKeys)
	}
	return out, nil
}

func (s *openpgpSigner) MetaKey() string { return GPGMetaKey }

// KeyID is the fingerprint of the signing key, in upper-case hex as gpg prints it.
func (s *openpgpSigner) KeyID() string { return s.fpr }

// Sign returns a binary detached signature (signature type 0x00, "binary
// document") over exactly data, which is what ostree stores in ostree.gpgsigs.
func (s *openpgpSigner) Sign(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	cfg := &packet.Config{DefaultHash: openpgpSigningHash, SigningKeyId: s.keyID}
	if err := openpgp.DetachSign(&buf, s.entity, bytes.NewReader(data), cfg); err != nil {
		return nil, fmt.Errorf("openpgp sign with %s: %w", s.fpr, err)
	}
	return buf.Bytes(), nil
}

type openpgpVerifier struct {
	keyring openpgp.EntityList
}

// NewOpenPGPVerifier returns a Verifier trusting the keys of an armored or
// binary OpenPGP public keyring (openpgp.pub.asc, `gpg --export`). A keyring
// carrying secret key material is refused: trust roots must be public keys
// only, and refusing here keeps secrets from being shipped as one.
func NewOpenPGPVerifier(armoredOrBinaryKeyring []byte) (Verifier, error) {
	el, err := readOpenPGPKeyring(armoredOrBinaryKeyring)
	if err != nil {
		return nil, fmt.Errorf("openpgp public keys: %w", err)
	}
	now := time.Now()
	usable := 0
	for _, e := range el {
		if e.PrivateKey != nil {
			return nil, fmt.Errorf("openpgp public keys: key %X includes secret key material; export the public key only", e.PrimaryKey.Fingerprint)
		}
		for _, sk := range e.Subkeys {
			if sk.PrivateKey != nil {
				return nil, fmt.Errorf("openpgp public keys: key %X includes secret key material; export the public key only", e.PrimaryKey.Fingerprint)
			}
		}
		if _, ok := e.SigningKey(now); ok {
			usable++
		}
	}
	if usable == 0 {
		return nil, fmt.Errorf("openpgp public keys: %w: no valid signing-capable key among %d", ErrNoKeys, len(el))
	}
	return &openpgpVerifier{keyring: el}, nil
}

func (v *openpgpVerifier) MetaKey() string { return GPGMetaKey }

// KeyID lists the primary key fingerprints of the keyring.
func (v *openpgpVerifier) KeyID() string {
	fprs := make([]string, 0, len(v.keyring))
	for _, e := range v.keyring {
		fprs = append(fprs, fmt.Sprintf("%X", e.PrimaryKey.Fingerprint))
	}
	return strings.Join(fprs, ",")
}

func (v *openpgpVerifier) Verify(data []byte, sigs [][]byte) error {
	if len(sigs) == 0 {
		return fmt.Errorf("%s: %w", GPGMetaKey, ErrNoSignatures)
	}
	var reasons []string
	for i, sig := range sigs {
		err := v.verifyOne(data, sig)
		if err == nil {
			return nil
		}
		reasons = append(reasons, fmt.Sprintf("signature %d: %v", i, err))
	}
	return badSignatures(GPGMetaKey, len(sigs), reasons)
}

// verifyOne checks one binary detached signature. The signature bytes come
// from the network, so a panic in the OpenPGP parser is turned into a
// rejection rather than taking the process down.
func (v *openpgpVerifier) verifyOne(data, sig []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed signature (parser panic)")
		}
	}()
	if len(sig) == 0 {
		return fmt.Errorf("empty signature")
	}
	// Only binary packets are parsed: ostree.gpgsigs never holds armored
	// signatures, so ASCII armor fails here as malformed.
	p, _, err := openpgp.VerifyDetachedSignatureAndHash(v.keyring, bytes.NewReader(data), bytes.NewReader(sig), openpgpAcceptedHashes, nil)
	if err != nil {
		return err
	}
	// A text-mode (0x01) signature covers line-ending-normalised data, not the
	// exact bytes; other types are not document signatures at all.
	if p.SigType != packet.SigTypeBinary {
		return fmt.Errorf("signature type 0x%02x, want binary document (0x00)", uint8(p.SigType))
	}
	return nil
}
