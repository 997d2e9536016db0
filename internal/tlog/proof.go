package tlog

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// A Proof is what a device needs to check, offline, that a release is in
// the log: the entry, its inclusion proof and the consistency proof from
// the device's remembered size, against a signed checkpoint. Text form:
//
//	mxos-release-log-proof/v1
//	index <n>
//	old <size the consistency proof starts from; 0 for none>
//	entry <base64 of the entry>
//	inclusion <base64 hash>        (one line per hash)
//	consistency <base64 hash>      (one line per hash)
//	<blank line>
//	<the signed checkpoint>
//
// It is at most MaxProofSize bytes (the checkpoint is about 200 bytes and
// each hash 57), far under the 10 KB a device may spend on it.
type Proof struct {
	Index       uint64
	Old         uint64
	Entry       []byte
	Inclusion   [][]byte
	Consistency [][]byte
	Checkpoint  []byte
}

// ProofSchema is the first line of a Proof.
const ProofSchema = "mxos-release-log-proof/v1"

// MaxProofSize bounds a proof's text; 64 hashes each cover any tree.
const MaxProofSize = 8 << 10

const maxProofHashes = 64

// ErrInvalidProof is wrapped by refusals of ParseProof.
var ErrInvalidProof = errors.New("invalid log proof")

// Marshal returns the text form of p.
func (p Proof) Marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nindex %d\nold %d\nentry %s\n", ProofSchema, p.Index, p.Old, base64.StdEncoding.EncodeToString(p.Entry))
	for _, h := range p.Inclusion {
		b.WriteString("inclusion " + base64.StdEncoding.EncodeToString(h) + "\n")
	}
	for _, h := range p.Consistency {
		b.WriteString("consistency " + base64.StdEncoding.EncodeToString(h) + "\n")
	}
	b.WriteString("\n")
	b.Write(p.Checkpoint)
	return b.Bytes()
}

// ParseProof reads the text form of a proof. It checks the form only;
// CheckOffer checks what it proves.
func ParseProof(b []byte) (Proof, error) {
	var p Proof
	if len(b) > MaxProofSize {
		return p, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidProof, len(b), MaxProofSize)
	}
	head, cp, ok := strings.Cut(string(b), "\n\n")
	if !ok || cp == "" {
		return p, fmt.Errorf("%w: no checkpoint after a blank line", ErrInvalidProof)
	}
	p.Checkpoint = []byte(cp)
	lines := strings.Split(head, "\n")
	if lines[0] != ProofSchema || len(lines) < 4 {
		return p, fmt.Errorf("%w: does not start with %q, index, old and entry", ErrInvalidProof, ProofSchema)
	}
	num := func(line, name string) (uint64, error) {
		v, ok := strings.CutPrefix(line, name+" ")
		n, err := strconv.ParseUint(v, 10, 64)
		if !ok || err != nil || strconv.FormatUint(n, 10) != v {
			return 0, fmt.Errorf("%w: bad %s line %q", ErrInvalidProof, name, trunc(line))
		}
		return n, nil
	}
	var err error
	if p.Index, err = num(lines[1], "index"); err != nil {
		return p, err
	}
	if p.Old, err = num(lines[2], "old"); err != nil {
		return p, err
	}
	e, ok := strings.CutPrefix(lines[3], "entry ")
	if p.Entry, err = base64.StdEncoding.DecodeString(e); !ok || err != nil || len(p.Entry) == 0 || len(p.Entry) > MaxEntrySize {
		return p, fmt.Errorf("%w: bad entry line", ErrInvalidProof)
	}
	inConsistency := false
	for _, line := range lines[4:] {
		name, v, _ := strings.Cut(line, " ")
		h, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(h) != 32 {
			return p, fmt.Errorf("%w: bad hash line %q", ErrInvalidProof, trunc(line))
		}
		switch {
		case name == "inclusion" && !inConsistency:
			p.Inclusion = append(p.Inclusion, h)
		case name == "consistency":
			inConsistency = true
			p.Consistency = append(p.Consistency, h)
		default:
			return p, fmt.Errorf("%w: unexpected line %q", ErrInvalidProof, trunc(line))
		}
	}
	if len(p.Inclusion) > maxProofHashes || len(p.Consistency) > maxProofHashes {
		return p, fmt.Errorf("%w: too many hashes", ErrInvalidProof)
	}
	return p, nil
}

// Offer is what a device was offered: the entry it needs in the log.
type Offer struct {
	Channel, Arch, Version, Commit string
}

// CheckOffer checks, on a device, that p proves offer is in the log whose
// key is v, consistently with remembered (the largest checkpoint the
// device has seen, or nil). It returns the checkpoint to remember next
// (p's when larger, else remembered). Errors wrap ErrInvalidProof,
// ErrCheckpoint, ErrNotIncluded, ErrFork or ErrShrunk.
func CheckOffer(p Proof, v note.Verifier, remembered []byte, offer Offer) ([]byte, error) {
	cp, err := OpenCheckpoint(p.Checkpoint, v)
	if err != nil {
		return nil, err
	}
	e, err := Parse(p.Entry)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidProof, err)
	}
	if (e.Kind != KindRelease && e.Kind != KindPromotion) || e.Channel != offer.Channel || e.Arch != offer.Arch ||
		e.Version != offer.Version || e.Commit != offer.Commit {
		return nil, fmt.Errorf("%w: the log entry proven (%s %s %s %s) is not the release offered (%s %s %s %s)", ErrNotIncluded,
			e.Channel, e.Arch, e.Version, short(e.Commit), offer.Channel, offer.Arch, offer.Version, short(offer.Commit))
	}
	if err := CheckInclusion(cp, p.Index, p.Entry, p.Inclusion); err != nil {
		return nil, err
	}
	if remembered == nil {
		return cp.Raw, nil
	}
	old, err := OpenCheckpoint(remembered, v)
	if err != nil {
		return nil, fmt.Errorf("the remembered checkpoint: %w", err)
	}
	if cp.Size > old.Size && p.Old != old.Size {
		return nil, fmt.Errorf("%w: the proof starts at size %d, the device remembers size %d", ErrInvalidProof, p.Old, old.Size)
	}
	if err := CheckConsistency(old, cp, p.Consistency); err != nil {
		return nil, err
	}
	if cp.Size > old.Size {
		return cp.Raw, nil
	}
	return remembered, nil
}
