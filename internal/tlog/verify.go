package tlog

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// Errors callers decide on.
var (
	// ErrCheckpoint: a checkpoint that is malformed, of another log, or
	// not signed by the log key.
	ErrCheckpoint = errors.New("invalid checkpoint")
	// ErrFork: two checkpoints of the log that cannot both be true (same
	// size with different roots, or no valid consistency proof between
	// them). Whoever holds both has evidence of a split view.
	ErrFork = errors.New("the log forked: checkpoints are not consistent")
	// ErrShrunk: a checkpoint smaller than one already seen.
	ErrShrunk = errors.New("the log is smaller than a checkpoint already seen")
	// ErrNotIncluded: an entry that the proof does not place in the tree.
	ErrNotIncluded = errors.New("entry is not in the log")
)

// Checkpoint is a verified checkpoint and its signed bytes.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte
	Raw    []byte
}

// NewVerifier parses a note verifier key ("name+hash+base64").
func NewVerifier(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("log public key: %w", err)
	}
	return v, nil
}

// OpenCheckpoint checks raw's signature by v (whose name is the log's
// origin) and parses it.
func OpenCheckpoint(raw []byte, v note.Verifier) (Checkpoint, error) {
	cp, _, _, err := log.ParseCheckpoint(raw, v.Name(), v)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	if len(cp.Hash) != 32 {
		return Checkpoint{}, fmt.Errorf("%w: root hash of %d bytes", ErrCheckpoint, len(cp.Hash))
	}
	return Checkpoint{Origin: cp.Origin, Size: cp.Size, Root: cp.Hash, Raw: raw}, nil
}

// LeafHash is the RFC 6962 leaf hash of an entry's bytes.
func LeafHash(entry []byte) []byte { return rfc6962.DefaultHasher.HashLeaf(entry) }

// CheckInclusion checks that entry is at index in the tree of cp.
func CheckInclusion(cp Checkpoint, index uint64, entry []byte, p [][]byte) error {
	if index >= cp.Size {
		return fmt.Errorf("%w: index %d is beyond the checkpoint's size %d", ErrNotIncluded, index, cp.Size)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, cp.Size, LeafHash(entry), p, cp.Root); err != nil {
		return fmt.Errorf("%w: index %d of %d: %v", ErrNotIncluded, index, cp.Size, err)
	}
	return nil
}

// CheckConsistency checks that the tree of newer extends the tree of
// older with proof p (a consistency proof from older.Size to newer.Size).
// A smaller newer gives ErrShrunk; equal sizes need equal roots.
func CheckConsistency(older, newer Checkpoint, p [][]byte) error {
	switch {
	case newer.Size < older.Size:
		return fmt.Errorf("%w: size %d, already seen %d", ErrShrunk, newer.Size, older.Size)
	case newer.Size == older.Size:
		if !bytes.Equal(newer.Root, older.Root) {
			return fmt.Errorf("%w: two checkpoints of size %d with different roots", ErrFork, newer.Size)
		}
		return nil
	case older.Size == 0:
		return nil
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, older.Size, newer.Size, p, older.Root, newer.Root); err != nil {
		return fmt.Errorf("%w: from size %d to %d: %v", ErrFork, older.Size, newer.Size, err)
	}
	return nil
}
