package commitsig

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

func keys(t *testing.T) ([]sign.Signer, []sign.Verifier) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if err := sign.GenerateKeys(dir, sign.GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := sign.LoadSigners(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := sign.LoadVerifiers(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func TestSignAndVerify(t *testing.T) {
	signers, verifiers := keys(t)
	otherSigners, otherVerifiers := keys(t)
	data := []byte("a commit object")
	var sum ostree.Checksum
	md, err := Sign(signers, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := SignatureMap(md)
	if len(m[sign.Ed25519MetaKey]) != 1 || len(m[sign.GPGMetaKey]) != 1 {
		t.Fatalf("one signature per engine expected: %d ed25519, %d gpg", len(m[sign.Ed25519MetaKey]), len(m[sign.GPGMetaKey]))
	}
	if err := Verifier(verifiers)(sum, data, md); err != nil {
		t.Fatalf("good signatures refused: %v", err)
	}
	// Appending keeps the earlier signatures: both key sets verify.
	both, err := Sign(otherSigners, data, md)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(SignatureMap(both)[sign.Ed25519MetaKey]); n != 2 {
		t.Fatalf("after appending: %d ed25519 signatures, want 2", n)
	}
	for name, v := range map[string][]sign.Verifier{"first": verifiers, "second": otherVerifiers} {
		if err := Verifier(v)(sum, data, both); err != nil {
			t.Errorf("%s keys refuse the appended metadata: %v", name, err)
		}
	}

	for _, c := range []struct {
		name string
		data []byte
		md   ostree.Metadata
		v    []sign.Verifier
		is   error
	}{
		{"tampered data", []byte("a commit object!"), md, verifiers, sign.ErrBadSignature},
		{"unknown key", data, md, otherVerifiers, nil},
		{"no metadata", data, nil, verifiers, sign.ErrNoSignatures},
		{"no signatures", data, ostree.Metadata{}, verifiers, nil},
	} {
		err := Verifier(c.v)(sum, c.data, c.md)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if c.is != nil && !errors.Is(err, c.is) {
			t.Errorf("%s: %v, want %v", c.name, err, c.is)
		}
	}
}
