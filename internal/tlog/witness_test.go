package tlog

import (
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// testWitness is a witness key pair: a cosignature/v1 signer and the
// verifier key a device lists.
type testWitness struct {
	signer note.Signer
	vkey   string
}

func newTestWitness(t *testing.T, name string) testWitness {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	return testWitness{signer: s, vkey: vkey}
}

func TestWitnessPolicy(t *testing.T) {
	logSkey, _, err := note.GenerateKey(rand.Reader, "test.mxos.example/releases")
	if err != nil {
		t.Fatal(err)
	}
	logSigner, err := note.NewSigner(logSkey)
	if err != nil {
		t.Fatal(err)
	}
	w1, w2, w3 := newTestWitness(t, "witness.unam.example"), newTestWitness(t, "witness.gob.example"), newTestWitness(t, "witness.other.example")
	body := "test.mxos.example/releases\n5\n" + strings.Repeat("A", 43) + "=\n"
	signed := func(signers ...note.Signer) []byte {
		b, err := note.Sign(&note.Note{Text: body}, append([]note.Signer{logSigner}, signers...)...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// A cosignature of w2 over another checkpoint, pasted onto this one.
	other, err := note.Sign(&note.Note{Text: "test.mxos.example/releases\n6\n" + strings.Repeat("B", 43) + "=\n"}, w2.signer)
	if err != nil {
		t.Fatal(err)
	}
	_, otherSig, _ := strings.Cut(string(other), "\n\n")
	pasted := append(signed(w1.signer), []byte(otherSig)...)

	tests := []struct {
		name      string
		vkeys     []string
		threshold int
		cp        []byte
		want      string // "" for accepted
	}{
		{"no witnesses required", nil, 0, signed(), ""},
		{"both of two", []string{w1.vkey, w2.vkey}, 0, signed(w1.signer, w2.signer), ""},
		{"one of two, all required", []string{w1.vkey, w2.vkey}, 0, signed(w1.signer), "1 of the 2 required"},
		{"one of two, one required", []string{w1.vkey, w2.vkey}, 1, signed(w2.signer), ""},
		{"none", []string{w1.vkey, w2.vkey}, 1, signed(), "0 of the 1 required"},
		{"an unknown witness does not count", []string{w1.vkey, w2.vkey}, 2, signed(w1.signer, w3.signer), "1 of the 2 required"},
		{"the same witness twice counts once", []string{w1.vkey, w2.vkey}, 2, signed(w1.signer, w1.signer), "1 of the 2 required"},
		{"a cosignature of another checkpoint", []string{w1.vkey, w2.vkey}, 2, pasted, "invalid signature"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewWitnessPolicy(tc.vkeys, tc.threshold)
			if err != nil {
				t.Fatal(err)
			}
			err = p.Check(tc.cp)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (!errors.Is(err, ErrWitnesses) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want ErrWitnesses with %q", err, tc.want)
			}
		})
	}
}

func TestNewWitnessPolicyRefuses(t *testing.T) {
	w1 := newTestWitness(t, "witness.unam.example")
	tests := []struct {
		name      string
		vkeys     []string
		threshold int
	}{
		{"not a key", []string{"witness.unam.example+1234"}, 0},
		{"listed twice", []string{w1.vkey, w1.vkey}, 0},
		{"threshold above the witnesses", []string{w1.vkey}, 2},
		{"negative threshold", []string{w1.vkey}, -1},
	}
	for _, tc := range tests {
		if _, err := NewWitnessPolicy(tc.vkeys, tc.threshold); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

// FuzzWitnessPolicyCheck: any bytes are refused or accepted without a
// panic.
func FuzzWitnessPolicyCheck(f *testing.F) {
	f.Add([]byte("test.mxos.example/releases\n5\nAAAA\n\n— witness.unam.example AAAAAA==\n"))
	f.Add([]byte(""))
	skey, vkey, _ := note.GenerateKey(rand.Reader, "witness.unam.example")
	s, _ := fnote.NewSignerForCosignatureV1(skey)
	b, _ := note.Sign(&note.Note{Text: "o\n1\nAAAA\n"}, s)
	f.Add(b)
	p, err := NewWitnessPolicy([]string{vkey}, 1)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		_ = p.Check(raw)
	})
}
