package sign

import (
	"bytes"
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// testKeyDir generates a fresh key directory and returns it with its loaded
// signers (ed25519 first, then OpenPGP, as LoadSigners orders them).
func testKeyDir(t testing.TB, opts GenerateOptions) (dir string, ed, pgp Signer) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "keys")
	if err := GenerateKeys(dir, opts); err != nil {
		t.Fatalf("GenerateKeys: %v", err)
	}
	signers, err := LoadSigners(dir)
	if err != nil {
		t.Fatalf("LoadSigners: %v", err)
	}
	if len(signers) != 2 || signers[0].MetaKey() != Ed25519MetaKey || signers[1].MetaKey() != GPGMetaKey {
		t.Fatalf("LoadSigners returned %d signers in unexpected order", len(signers))
	}
	return dir, signers[0], signers[1]
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustOpenPGPVerifier(t testing.TB, dir string) Verifier {
	t.Helper()
	v, err := NewOpenPGPVerifier(readFile(t, filepath.Join(dir, OpenPGPPublicFile)))
	if err != nil {
		t.Fatalf("NewOpenPGPVerifier: %v", err)
	}
	return v
}

func parseSignaturePacket(t testing.TB, sig []byte) *packet.Signature {
	t.Helper()
	p, err := packet.Read(bytes.NewReader(sig))
	if err != nil {
		t.Fatalf("signature does not parse: %v", err)
	}
	s, ok := p.(*packet.Signature)
	if !ok {
		t.Fatalf("first packet is %T, want *packet.Signature", p)
	}
	return s
}

func TestGeneratedOpenPGPKeyShape(t *testing.T) {
	tests := []struct {
		name     string
		opts     GenerateOptions
		wantUID  string
		wantName string
	}{
		{"defaults", GenerateOptions{}, "MxOS Update release key <release@mxos.invalid>", "MxOS Update release key"},
		{"custom", GenerateOptions{Name: "Edu channel key", Email: "edu@example.org"}, "Edu channel key <edu@example.org>", "Edu channel key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, _, pgp := testKeyDir(t, tc.opts)
			pub := readFile(t, filepath.Join(dir, OpenPGPPublicFile))
			if !bytes.HasPrefix(pub, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")) {
				t.Fatalf("%s is not an armored public key block", OpenPGPPublicFile)
			}
			el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(pub))
			if err != nil || len(el) != 1 {
				t.Fatalf("ReadArmoredKeyRing: %d entities, %v", len(el), err)
			}
			e := el[0]
			if e.PrivateKey != nil {
				t.Fatal("public key file contains secret key material")
			}
			if e.PrimaryKey.Version != 4 || e.PrimaryKey.PubKeyAlgo != packet.PubKeyAlgoEdDSA {
				t.Fatalf("key is v%d algo %d, want v4 EdDSA (22) for GnuPG 2.2", e.PrimaryKey.Version, e.PrimaryKey.PubKeyAlgo)
			}
			if len(e.Subkeys) != 0 {
				t.Fatalf("key has %d subkeys, want a signing-only primary key", len(e.Subkeys))
			}
			id, ok := e.Identities[tc.wantUID]
			if !ok || id.UserId.Name != tc.wantName {
				t.Fatalf("identities %v, want %q", keysOf(e.Identities), tc.wantUID)
			}
			if ss := id.SelfSignature; ss == nil || (ss.KeyLifetimeSecs != nil && *ss.KeyLifetimeSecs != 0) || !ss.FlagSign {
				t.Fatal("self-signature missing, not signing-capable, or key expires")
			}
			if got, want := pgp.(KeyIdentifier).KeyID(), strings.ToUpper(bytesHex(e.PrimaryKey.Fingerprint)); got != want {
				t.Fatalf("signer KeyID %s, want fingerprint %s", got, want)
			}

			sig, err := pgp.Sign([]byte("data"))
			if err != nil {
				t.Fatal(err)
			}
			s := parseSignaturePacket(t, sig)
			if s.SigType != packet.SigTypeBinary || s.Hash != crypto.SHA512 || s.PubKeyAlgo != packet.PubKeyAlgoEdDSA {
				t.Fatalf("signature type 0x%02x hash %v algo %d, want binary / SHA-512 / EdDSA", s.SigType, s.Hash, s.PubKeyAlgo)
			}
			if bytes.HasPrefix(sig, []byte("-----")) {
				t.Fatal("signature is armored; ostree.gpgsigs needs binary")
			}
		})
	}
}

func keysOf(m map[string]*openpgp.Identity) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func bytesHex(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestOpenPGPSignVerify(t *testing.T) {
	dir, _, pgp := testKeyDir(t, GenerateOptions{})
	otherDir, _, otherPGP := testKeyDir(t, GenerateOptions{Name: "Someone else"})
	trusted := mustOpenPGPVerifier(t, dir)

	data := []byte("summary bytes")
	sig, err := pgp.Sign(data)
	if err != nil {
		t.Fatal(err)
	}
	otherSig, err := otherPGP.Sign(data)
	if err != nil {
		t.Fatal(err)
	}
	tampered := append(bytes.Clone(data), '!')
	flipped := bytes.Clone(sig)
	flipped[len(flipped)-5] ^= 0x01

	secret, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(readFile(t, filepath.Join(dir, OpenPGPSecretFile))))
	if err != nil {
		t.Fatal(err)
	}
	var textSig, armoredSig bytes.Buffer
	if err := openpgp.DetachSignText(&textSig, secret[0], bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}
	if err := openpgp.ArmoredDetachSign(&armoredSig, secret[0], bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		verifier Verifier
		data     []byte
		sigs     [][]byte
		want     error
	}{
		{"valid", trusted, data, [][]byte{sig}, nil},
		{"valid after bad ones", trusted, data, [][]byte{otherSig, {0x00}, sig}, nil},
		{"both keys trusted", mustOpenPGPVerifier(t, otherDir), data, [][]byte{otherSig}, nil},
		{"wrong key", trusted, data, [][]byte{otherSig}, ErrBadSignature},
		{"tampered data", trusted, tampered, [][]byte{sig}, ErrBadSignature},
		{"flipped signature bit", trusted, data, [][]byte{flipped}, ErrBadSignature},
		{"empty", trusted, data, nil, ErrNoSignatures},
		{"zero-length signature", trusted, data, [][]byte{{}}, ErrBadSignature},
		{"truncated to 10 bytes", trusted, data, [][]byte{sig[:10]}, ErrBadSignature},
		{"truncated by one byte", trusted, data, [][]byte{sig[:len(sig)-1]}, ErrBadSignature},
		{"garbage", trusted, data, [][]byte{bytes.Repeat([]byte{0xff}, 200)}, ErrBadSignature},
		{"ed25519-sized garbage", trusted, data, [][]byte{make([]byte, 64)}, ErrBadSignature},
		{"armored signature", trusted, data, [][]byte{armoredSig.Bytes()}, ErrBadSignature},
		{"text-mode signature", trusted, data, [][]byte{textSig.Bytes()}, ErrBadSignature},
		{"public key instead of signature", trusted, data, [][]byte{readFile(t, filepath.Join(dir, OpenPGPPublicFile))}, ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.verifier.Verify(tc.data, tc.sigs)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			t.Logf("rejected as expected: %v", err)
		})
	}
}

func TestNewOpenPGPVerifierKeyrings(t *testing.T) {
	dir, _, pgp := testKeyDir(t, GenerateOptions{})
	otherDir, _, otherPGP := testKeyDir(t, GenerateOptions{Name: "Rotated key"})
	pub := readFile(t, filepath.Join(dir, OpenPGPPublicFile))
	otherPub := readFile(t, filepath.Join(otherDir, OpenPGPPublicFile))

	block, err := armor.Decode(bytes.NewReader(pub))
	if err != nil {
		t.Fatal(err)
	}
	var binary bytes.Buffer
	if _, err := binary.ReadFrom(block.Body); err != nil {
		t.Fatal(err)
	}

	data := []byte("x")
	sig, _ := pgp.Sign(data)
	otherSig, _ := otherPGP.Sign(data)

	tests := []struct {
		name    string
		keyring []byte
		verify  [][]byte // each must verify
		wantErr string
		noKeys  bool
	}{
		{name: "armored", keyring: pub, verify: [][]byte{sig}},
		{name: "binary", keyring: binary.Bytes(), verify: [][]byte{sig}},
		{name: "two armored blocks (rotation)", keyring: append(bytes.Clone(pub), otherPub...), verify: [][]byte{sig, otherSig}},
		{name: "leading blank line", keyring: append([]byte("\n\n"), pub...), verify: [][]byte{sig}},
		{name: "secret keyring refused", keyring: readFile(t, filepath.Join(dir, OpenPGPSecretFile)), wantErr: "secret key material"},
		{name: "empty", keyring: nil, wantErr: "empty keyring", noKeys: true},
		{name: "garbage", keyring: []byte("hello, not a key"), wantErr: "openpgp public keys"},
		{name: "truncated armor", keyring: pub[:len(pub)/2], wantErr: "armored block 1"},
		{name: "text before armor", keyring: append([]byte("junk\n"), pub...), wantErr: "openpgp public keys"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewOpenPGPVerifier(tc.keyring)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if tc.noKeys && !errors.Is(err, ErrNoKeys) {
					t.Fatalf("err = %v, want ErrNoKeys", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tc.verify {
				if err := v.Verify(data, [][]byte{s}); err != nil {
					t.Fatalf("signature %d: %v", i, err)
				}
			}
		})
	}
}

func TestNewOpenPGPSignersRefusals(t *testing.T) {
	dir, _, _ := testKeyDir(t, GenerateOptions{})
	secret := readFile(t, filepath.Join(dir, OpenPGPSecretFile))

	el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(secret))
	if err != nil {
		t.Fatal(err)
	}
	if err := el[0].EncryptPrivateKeys([]byte("passphrase"), nil); err != nil {
		t.Fatal(err)
	}
	var locked bytes.Buffer
	w, _ := armor.Encode(&locked, openpgp.PrivateKeyType, nil)
	if err := el[0].SerializePrivateWithoutSigning(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()

	tests := []struct {
		name    string
		in      []byte
		wantErr string
		noKeys  bool
	}{
		{name: "passphrase-protected", in: locked.Bytes(), wantErr: "passphrase-protected"},
		{name: "public key only", in: readFile(t, filepath.Join(dir, OpenPGPPublicFile)), wantErr: "holds no secret key", noKeys: true},
		{name: "empty", in: []byte("  \n"), wantErr: "empty keyring", noKeys: true},
		{name: "garbage", in: []byte{0x99, 0x01, 0x02}, wantErr: "openpgp secret key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewOpenPGPSigners(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
			if tc.noKeys != errors.Is(err, ErrNoKeys) {
				t.Fatalf("errors.Is(err, ErrNoKeys) = %v, want %v", !tc.noKeys, tc.noKeys)
			}
		})
	}
}
