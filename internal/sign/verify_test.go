package sign

import (
	"errors"
	"testing"
)

func TestVerifyAll(t *testing.T) {
	dir, ed, pgp := testKeyDir(t, GenerateOptions{})
	_, otherEd, otherPGP := testKeyDir(t, GenerateOptions{})
	verifiers, err := LoadVerifiers(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("commit")
	sign := func(s Signer) []byte {
		sig, err := s.Sign(data)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	edSig, pgpSig := sign(ed), sign(pgp)
	badEd, badPGP := sign(otherEd), sign(otherPGP)
	edOnly := []Verifier{verifiers[0]}

	tests := []struct {
		name      string
		verifiers []Verifier
		meta      map[string][][]byte
		want      error
	}{
		{"both engines valid", verifiers, map[string][][]byte{Ed25519MetaKey: {edSig}, GPGMetaKey: {pgpSig}}, nil},
		{"only ed25519 present", verifiers, map[string][][]byte{Ed25519MetaKey: {edSig}}, nil},
		{"only gpg present", verifiers, map[string][][]byte{GPGMetaKey: {pgpSig}}, nil},
		{"unrelated keys ignored", verifiers, map[string][][]byte{GPGMetaKey: {pgpSig}, "ostree.sign.dummy": {[]byte("x")}}, nil},
		{"gpg present but not trusted here", edOnly, map[string][][]byte{Ed25519MetaKey: {edSig}, GPGMetaKey: {badPGP}}, nil},
		{"ed25519 good, gpg bad", verifiers, map[string][][]byte{Ed25519MetaKey: {edSig}, GPGMetaKey: {badPGP}}, ErrBadSignature},
		{"ed25519 bad, gpg good", verifiers, map[string][][]byte{Ed25519MetaKey: {badEd}, GPGMetaKey: {pgpSig}}, ErrBadSignature},
		{"signatures swapped between keys", verifiers, map[string][][]byte{Ed25519MetaKey: {pgpSig}, GPGMetaKey: {edSig}}, ErrBadSignature},
		{"present but empty list", verifiers, map[string][][]byte{Ed25519MetaKey: {edSig}, GPGMetaKey: {}}, ErrNoSignatures},
		{"nothing present", verifiers, map[string][][]byte{}, ErrNoSignatures},
		{"nil meta", verifiers, nil, ErrNoSignatures},
		{"only untrusted engine present", edOnly, map[string][][]byte{GPGMetaKey: {pgpSig}}, ErrNoSignatures},
		{"no verifiers", nil, map[string][][]byte{Ed25519MetaKey: {edSig}}, ErrNoKeys},
		{"nil verifier skipped", []Verifier{nil, verifiers[1]}, map[string][][]byte{GPGMetaKey: {pgpSig}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyAll(tc.verifiers, data, tc.meta)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("VerifyAll: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("VerifyAll = %v, want %v", err, tc.want)
			}
			t.Logf("rejected as expected: %v", err)
		})
	}
}
