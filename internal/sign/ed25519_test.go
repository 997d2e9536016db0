package sign

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata from the constants in the tests")

// RFC 8032 §7.1 test vectors ("TEST 1" and "TEST 3"). These keys are public
// test keys printed in the RFC; they must never sign anything real.
var rfc8032Vectors = []struct {
	name, seed, pub, msg, sig string
}{
	{
		name: "rfc8032-test1",
		seed: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
		pub:  "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
		msg:  "",
		sig: "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155" +
			"5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
	},
	{
		name: "rfc8032-test3",
		seed: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
		pub:  "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
		msg:  "af82",
		sig: "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac" +
			"18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
	},
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex constant: %v", err)
	}
	return b
}

// TestEd25519GoldenVectors checks our key files, signer and verifier against
// the RFC 8032 vectors. testdata/<vector>/ holds the key files in ostree's
// format (as generated from the constant seed; rewrite with -update), the
// message and the raw 64-byte signature exactly as ostree stores it in an
// ostree.sign.ed25519 aay element.
func TestEd25519GoldenVectors(t *testing.T) {
	for _, v := range rfc8032Vectors {
		t.Run(v.name, func(t *testing.T) {
			dir := filepath.Join("testdata", v.name)
			priv := ed25519.NewKeyFromSeed(mustHex(t, v.seed))
			wantSecret := base64.StdEncoding.EncodeToString(priv) + "\n"
			wantPub := base64.StdEncoding.EncodeToString(mustHex(t, v.pub)) + "\n"
			msg := mustHex(t, v.msg)
			wantSig := mustHex(t, v.sig)
			if *update {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				for name, data := range map[string][]byte{
					Ed25519PublicFile: []byte(wantPub),
					"message":         msg,
					"signature":       wantSig,
				} {
					if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			for name, want := range map[string][]byte{
				Ed25519PublicFile: []byte(wantPub),
				"message":         msg,
				"signature":       wantSig,
			} {
				got, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Fatalf("read golden file (regenerate with go test -run TestEd25519GoldenVectors -update): %v", err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%s/%s differs from the RFC 8032 constants", dir, name)
				}
			}

			// No secret key file is committed, not even a published test
			// vector: write it from the RFC seed into a private directory.
			keyDir := t.TempDir()
			if err := os.WriteFile(filepath.Join(keyDir, Ed25519SecretFile), []byte(wantSecret), 0o600); err != nil {
				t.Fatal(err)
			}
			signers, err := LoadSigners(keyDir)
			if err != nil {
				t.Fatal(err)
			}
			if len(signers) != 1 || signers[0].MetaKey() != Ed25519MetaKey {
				t.Fatalf("LoadSigners = %d signers, want one ed25519 signer", len(signers))
			}
			if got := signers[0].(KeyIdentifier).KeyID(); got+"\n" != wantPub {
				t.Fatalf("KeyID = %q, want %q", got, strings.TrimSpace(wantPub))
			}
			sig, err := signers[0].Sign(msg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(sig, wantSig) {
				t.Fatalf("signature = %x, want RFC 8032 %x", sig, wantSig)
			}

			verifiers, err := LoadVerifiers(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyAll(verifiers, msg, map[string][][]byte{Ed25519MetaKey: {wantSig}}); err != nil {
				t.Fatalf("golden signature does not verify: %v", err)
			}
		})
	}
}

func TestParseEd25519PublicKeys(t *testing.T) {
	k1 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	k2 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
	tests := []struct {
		name    string
		in      string
		want    int
		wantErr string // substring; "" means success
		noKeys  bool   // error must wrap ErrNoKeys
	}{
		{name: "one key, trailing newline", in: k1 + "\n", want: 1},
		{name: "one key, no newline", in: k1, want: 1},
		{name: "two keys", in: k1 + "\n" + k2 + "\n", want: 2},
		{name: "empty file", in: "", wantErr: "empty key file", noKeys: true},
		{name: "only newline", in: "\n", wantErr: "empty key file", noKeys: true},
		{name: "empty line between keys", in: k1 + "\n\n" + k2 + "\n", wantErr: "line 2: empty line"},
		{name: "two trailing newlines", in: k1 + "\n\n", wantErr: "line 2: empty line"},
		{name: "garbage on line 2", in: k1 + "\nnot base64!\n", wantErr: "line 2: not valid base64"},
		{name: "CRLF line endings", in: k1 + "\r\n", wantErr: "line 1: not canonical"},
		{name: "leading space", in: " " + k1, wantErr: "line 1: not valid base64"},
		{name: "comment", in: "# release key\n" + k1, wantErr: "line 1"},
		{name: "unpadded", in: strings.TrimRight(k1, "="), wantErr: "line 1: not valid base64"},
		{name: "url alphabet", in: base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)), wantErr: "line 1: not valid base64"},
		{name: "31 bytes", in: base64.StdEncoding.EncodeToString(make([]byte, 31)), wantErr: "line 1: decodes to 31 bytes, want 32"},
		{name: "secret key in public file", in: base64.StdEncoding.EncodeToString(make([]byte, 64)), wantErr: "line 1: decodes to 64 bytes, want 32"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := ParseEd25519PublicKeys([]byte(tc.in))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if len(keys) != tc.want {
					t.Fatalf("got %d keys, want %d", len(keys), tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %q, want error containing %q", tc.in, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tc.wantErr)
			}
			if tc.noKeys != errors.Is(err, ErrNoKeys) {
				t.Fatalf("errors.Is(err, ErrNoKeys) = %v, want %v (err %v)", !tc.noKeys, tc.noKeys, err)
			}
		})
	}
}

func TestParseEd25519SecretKeys(t *testing.T) {
	good := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, 32))
	mismatched := append(bytes.Clone(good[:32]), other[32:]...)
	enc := base64.StdEncoding.EncodeToString
	tests := []struct {
		name    string
		in      string
		want    int
		wantErr string
	}{
		{name: "one key", in: enc(good) + "\n", want: 1},
		{name: "two keys", in: enc(good) + "\n" + enc(other) + "\n", want: 2},
		{name: "public half does not match seed", in: enc(mismatched) + "\n", wantErr: "line 1: public half does not match the seed"},
		{name: "mismatch on line 2", in: enc(good) + "\n" + enc(mismatched), wantErr: "line 2: public half"},
		{name: "bare seed", in: enc(good[:32]), wantErr: "line 1: decodes to 32 bytes, want 64"},
		{name: "garbage", in: "secret!", wantErr: "line 1: not valid base64"},
		{name: "empty", in: "", wantErr: "empty key file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := ParseEd25519SecretKeys([]byte(tc.in))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if len(keys) != tc.want {
					t.Fatalf("got %d keys, want %d", len(keys), tc.want)
				}
				if !bytes.Equal(keys[0], good) {
					t.Fatal("first key does not round-trip")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
			}
			// No fragment of the key material may leak into the message.
			for _, secret := range []string{enc(good), enc(good[:32]), enc(mismatched), hex.EncodeToString(good[:32])} {
				if len(secret) > 8 && strings.Contains(err.Error(), secret[:8]) {
					t.Fatalf("error message leaks key material: %v", err)
				}
			}
		})
	}
}

func TestEd25519SignVerify(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	otherPub, otherPriv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := NewEd25519Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("commit object bytes")
	sig, err := signer.Sign(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(sig) != ed25519.SignatureSize {
		t.Fatalf("signature is %d bytes, want 64", len(sig))
	}
	otherSig := ed25519.Sign(otherPriv, data)
	flipped := bytes.Clone(sig)
	flipped[10] ^= 0x40
	tampered := bytes.Clone(data)
	tampered[0] ^= 1

	trusted := NewEd25519Verifier([]ed25519.PublicKey{priv.Public().(ed25519.PublicKey)})
	tests := []struct {
		name     string
		verifier Verifier
		data     []byte
		sigs     [][]byte
		want     error // nil, ErrNoSignatures or ErrBadSignature
	}{
		{"valid", trusted, data, [][]byte{sig}, nil},
		{"valid after a bad one", trusted, data, [][]byte{otherSig, []byte("short"), sig}, nil},
		{"two trusted keys", NewEd25519Verifier([]ed25519.PublicKey{otherPub, priv.Public().(ed25519.PublicKey)}), data, [][]byte{sig}, nil},
		{"wrong key", trusted, data, [][]byte{otherSig}, ErrBadSignature},
		{"untrusted signer", NewEd25519Verifier([]ed25519.PublicKey{otherPub}), data, [][]byte{sig}, ErrBadSignature},
		{"tampered data", trusted, tampered, [][]byte{sig}, ErrBadSignature},
		{"flipped signature bit", trusted, data, [][]byte{flipped}, ErrBadSignature},
		{"empty", trusted, data, nil, ErrNoSignatures},
		{"empty list", trusted, data, [][]byte{}, ErrNoSignatures},
		{"10-byte signature", trusted, data, [][]byte{sig[:10]}, ErrBadSignature},
		{"truncated signature", trusted, data, [][]byte{sig[:63]}, ErrBadSignature},
		{"overlong signature", trusted, data, [][]byte{append(bytes.Clone(sig), 0)}, ErrBadSignature},
		{"zero-length signature", trusted, data, [][]byte{{}}, ErrBadSignature},
		{"garbage", trusted, data, [][]byte{bytes.Repeat([]byte{0xff}, 64)}, ErrBadSignature},
		{"no usable keys", NewEd25519Verifier([]ed25519.PublicKey{make([]byte, 5)}), data, [][]byte{sig}, ErrBadSignature},
		{"nil keys", NewEd25519Verifier(nil), data, [][]byte{sig}, ErrBadSignature},
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

func TestNewEd25519SignerRejectsShortKey(t *testing.T) {
	if _, err := NewEd25519Signer(make(ed25519.PrivateKey, 32)); err == nil {
		t.Fatal("accepted a 32-byte private key")
	}
}
