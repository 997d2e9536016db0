package tlog

import (
	"errors"
	"fmt"
	"strings"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// ErrWitnesses: a checkpoint that fewer witnesses cosigned than the
// device requires, or with a witness signature that does not verify.
var ErrWitnesses = errors.New("not enough witnesses vouch for the log's checkpoint")

// WitnessPolicy is what a device requires of a checkpoint beyond the log's
// own signature: cosignatures (C2SP tlog-cosignature, cosignature/v1)
// from at least Threshold of Witnesses. A witness (C2SP tlog-witness, for
// example a partner university running litewitness) cosigns a checkpoint
// only when it is consistent with every checkpoint of the log it has
// cosigned before, so a log cannot show this device a tree that the
// witnesses did not see. The zero policy requires nothing.
type WitnessPolicy struct {
	Witnesses []note.Verifier
	Threshold int
}

// NewWitnessPolicy parses witness verifier keys ("name+hash+base64", the
// cosignature/v1 form or the plain Ed25519 one, as litewitness prints
// them) and a threshold; threshold 0 means all of them.
func NewWitnessPolicy(vkeys []string, threshold int) (WitnessPolicy, error) {
	var p WitnessPolicy
	names := map[string]bool{}
	for _, k := range vkeys {
		v, err := fnote.NewVerifierForCosignatureV1(strings.TrimSpace(k))
		if err != nil {
			return p, fmt.Errorf("witness key %q: %w", k, err)
		}
		if names[v.Name()] {
			return p, fmt.Errorf("witness %q is listed twice", v.Name())
		}
		names[v.Name()] = true
		p.Witnesses = append(p.Witnesses, v)
	}
	switch {
	case threshold < 0 || threshold > len(p.Witnesses):
		return p, fmt.Errorf("witness threshold %d with %d witnesses", threshold, len(p.Witnesses))
	case threshold == 0:
		threshold = len(p.Witnesses)
	}
	p.Threshold = threshold
	return p, nil
}

// Check returns nil when the signed checkpoint raw carries valid
// cosignatures of at least p.Threshold distinct witnesses. It does not
// check the log's own signature (OpenCheckpoint does).
func (p WitnessPolicy) Check(raw []byte) error {
	if p.Threshold == 0 {
		return nil
	}
	n, err := note.Open(raw, note.VerifierList(p.Witnesses...))
	var unverified *note.UnverifiedNoteError
	switch {
	case errors.As(err, &unverified):
		return fmt.Errorf("%w: 0 of the %d required", ErrWitnesses, p.Threshold)
	case err != nil:
		return fmt.Errorf("%w: %v", ErrWitnesses, err)
	}
	seen := map[string]bool{}
	for _, s := range n.Sigs {
		seen[s.Name] = true
	}
	if len(seen) < p.Threshold {
		return fmt.Errorf("%w: %d of the %d required", ErrWitnesses, len(seen), p.Threshold)
	}
	return nil
}
