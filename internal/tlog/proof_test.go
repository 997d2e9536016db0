package tlog

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"
)

func TestProofRoundTrip(t *testing.T) {
	h := bytes.Repeat([]byte{7}, 32)
	p := Proof{Index: 5, Old: 3, Entry: []byte("mxos-release-log/v1\n"), Inclusion: [][]byte{h, h}, Consistency: [][]byte{h},
		Checkpoint: []byte("o\n9\nAAAA\n\n— o abc\n")}
	got, err := ParseProof(p.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Marshal(), p.Marshal()) {
		t.Fatalf("round trip:\n%s\n%s", got.Marshal(), p.Marshal())
	}
	for name, b := range map[string]string{
		"empty":        "",
		"no blank":     ProofSchema + "\nindex 1\nold 0\nentry eA==\n",
		"index":        ProofSchema + "\nindex 01\nold 0\nentry eA==\n\ncp",
		"short hash":   ProofSchema + "\nindex 1\nold 0\nentry eA==\ninclusion AAAA\n\ncp",
		"order":        ProofSchema + "\nindex 1\nold 0\nentry eA==\nconsistency " + b64(h) + "\ninclusion " + b64(h) + "\n\ncp",
		"unknown line": ProofSchema + "\nindex 1\nold 0\nentry eA==\nleaf " + b64(h) + "\n\ncp",
	} {
		if _, err := ParseProof([]byte(b)); !errors.Is(err, ErrInvalidProof) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzParseProof: no panic; what parses re-encodes to itself.
func FuzzParseProof(f *testing.F) {
	h := bytes.Repeat([]byte{7}, 32)
	f.Add(Proof{Index: 5, Old: 3, Entry: []byte("x"), Inclusion: [][]byte{h}, Consistency: [][]byte{h}, Checkpoint: []byte("o\n1\nAA==\n")}.Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseProof(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidProof) {
				t.Fatalf("error not ErrInvalidProof: %v", err)
			}
			return
		}
		if q, err := ParseProof(p.Marshal()); err != nil || !bytes.Equal(q.Marshal(), p.Marshal()) {
			t.Fatalf("re-encoding: %v", err)
		}
	})
}

func b64(h []byte) string { return base64.StdEncoding.EncodeToString(h) }
