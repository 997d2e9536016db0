package delta

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/mxos-linux/mxos-update/internal/gvariant"
	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// GVariant types (libostree ostree-repo-static-delta-private.h).
const (
	SuperblockType = "(a{sv}tayay" + ostree.CommitType + "aya(uayttay)a(yaytt))"
	PayloadType    = "(a(uuu)aa(ayay)ayay)"
)

// Compression types: the first byte of a part file.
const (
	CompNone byte = 0
	CompXZ   byte = 'x'
)

// Opcodes of part payloads. Only OpSpliceClose is generated and applied
// here; the others come from libostree's rollsum and bsdiff deltas.
const (
	OpSpliceClose = 'S'
	OpOpen        = 'o'
	OpWrite       = 'w'
	OpSetRead     = 'r'
	OpUnsetRead   = 'R'
	OpClose       = 'c'
	OpBspatch     = 'B'
)

const endiannessKey = "ostree.endianness"

// Errors callers decide on; returned errors wrap them with detail.
var (
	// ErrBadDelta: a superblock or part is malformed, does not match its
	// digest, or describes something else than what was asked.
	ErrBadDelta = errors.New("bad static delta")
	// ErrTooLarge: a superblock or part is larger than its bound.
	ErrTooLarge = errors.New("static delta too large")
	// ErrUnsupported: a well-formed delta uses an opcode this package does
	// not apply (libostree's rollsum and bsdiff); pull loose objects.
	ErrUnsupported = errors.New("static delta opcode not supported")
)

// Object names one object of a part or a fallback.
type Object struct {
	Type     ostree.ObjectType
	Checksum ostree.Checksum
}

// PartHeader describes one part file, as the superblock lists it.
type PartHeader struct {
	Version  uint32
	Checksum ostree.Checksum // SHA-256 of the whole part file
	Size     uint64          // bytes of the part file
	USize    uint64          // bytes of the objects it makes
	Objects  []Object
}

// Fallback is an object the client fetches loose.
type Fallback struct {
	Object
	Size, USize uint64
}

// Superblock is a delta's descriptor.
type Superblock struct {
	Metadata  ostree.Metadata
	Timestamp uint64 // seconds since the epoch
	From, To  ostree.Checksum
	Commit    []byte // the complete target commit object
	Parts     []PartHeader
	Fallbacks []Fallback
}

// ID is the delta this superblock describes.
func (s *Superblock) ID() ostree.DeltaID { return ostree.DeltaID{From: s.From, To: s.To} }

// CommitMeta returns the detached metadata of the target commit carried
// in the superblock, or nil.
func (s *Superblock) CommitMeta() ostree.Metadata {
	v, ok := s.Metadata.Lookup(s.ID().CommitMetaKey())
	if !ok || v.Type != ostree.MetadataType {
		return nil
	}
	md, _ := v.Value.([]gvariant.DictEntry)
	return ostree.Metadata(md)
}

func objectsBytes(objs []Object) []byte {
	b := make([]byte, 0, 33*len(objs))
	for _, o := range objs {
		b = append(b, byte(o.Type))
		b = append(b, o.Checksum[:]...)
	}
	return b
}

func parseObjects(b []byte) ([]Object, error) {
	if len(b)%33 != 0 {
		return nil, fmt.Errorf("%w: object list of %d bytes", ErrBadDelta, len(b))
	}
	out := make([]Object, 0, len(b)/33)
	for i := 0; i < len(b); i += 33 {
		t := ostree.ObjectType(b[i])
		switch t {
		case ostree.ObjFile, ostree.ObjDirTree, ostree.ObjDirMeta, ostree.ObjCommit:
		default:
			return nil, fmt.Errorf("%w: object type %d", ErrBadDelta, b[i])
		}
		var c ostree.Checksum
		copy(c[:], b[i+1:i+33])
		out = append(out, Object{t, c})
	}
	return out, nil
}

// Marshal encodes the superblock (little-endian part headers, announced
// by ostree.endianness = 'l').
func (s *Superblock) Marshal() ([]byte, error) {
	cv, err := gvariant.Unmarshal(ostree.CommitType, s.Commit)
	if err != nil {
		return nil, fmt.Errorf("superblock: commit: %w", err)
	}
	// Part headers are written little-endian whatever the parsed
	// superblock announced; ostree.endianness keeps its place (libostree
	// writes it after user metadata, before the commitmeta).
	le := gvariant.DictEntry{Key: endiannessKey, Value: gvariant.Variant{Type: "y", Value: uint8('l')}}
	md := ostree.Metadata{le}
	for _, e := range s.Metadata {
		if k, _ := e.Key.(string); k == endiannessKey {
			md = md[1:]
			md = append(md, le)
			continue
		}
		md = append(md, e)
	}
	parts := make([]any, len(s.Parts))
	for i, p := range s.Parts {
		c := p.Checksum
		parts[i] = []any{p.Version, c[:], p.Size, p.USize, objectsBytes(p.Objects)}
	}
	fbs := make([]any, len(s.Fallbacks))
	for i, f := range s.Fallbacks {
		c := f.Checksum
		fbs[i] = []any{uint8(f.Type), c[:], f.Size, f.USize}
	}
	var from []byte
	if !s.From.IsZero() {
		from = s.From[:]
	} else {
		from = []byte{}
	}
	to := s.To
	return gvariant.Marshal(SuperblockType, []any{[]gvariant.DictEntry(md), bits.ReverseBytes64(s.Timestamp),
		from, to[:], cv, []byte{}, parts, fbs})
}

// ParseSuperblock decodes and checks a superblock: normal form, a known
// endianness, a target commit that hashes to To, no recursive deltas,
// known part versions and object types.
func ParseSuperblock(b []byte) (*Superblock, error) {
	v, err := gvariant.Unmarshal(SuperblockType, b)
	if err != nil {
		return nil, fmt.Errorf("%w: superblock: %v", ErrBadDelta, err)
	}
	t := v.([]any)
	s := &Superblock{Metadata: ostree.Metadata(t[0].([]gvariant.DictEntry)), Timestamp: bits.ReverseBytes64(t[1].(uint64))}
	swap := false
	if e, ok := s.Metadata.Lookup(endiannessKey); ok {
		c, _ := e.Value.(uint8)
		switch {
		case e.Type == "y" && c == 'l':
		case e.Type == "y" && c == 'B':
			swap = true
		default:
			return nil, fmt.Errorf("%w: superblock: bad %s", ErrBadDelta, endiannessKey)
		}
	}
	if from := t[2].([]byte); len(from) != 0 {
		if len(from) != 32 {
			return nil, fmt.Errorf("%w: superblock: from checksum of %d bytes", ErrBadDelta, len(from))
		}
		copy(s.From[:], from)
	}
	to := t[3].([]byte)
	if len(to) != 32 {
		return nil, fmt.Errorf("%w: superblock: to checksum of %d bytes", ErrBadDelta, len(to))
	}
	copy(s.To[:], to)
	if s.Commit, err = gvariant.Marshal(ostree.CommitType, t[4]); err != nil {
		return nil, fmt.Errorf("%w: superblock: commit: %v", ErrBadDelta, err)
	}
	if sha256.Sum256(s.Commit) != s.To {
		return nil, fmt.Errorf("%w: superblock: the commit it carries is not %s", ErrBadDelta, s.To)
	}
	if len(t[5].([]byte)) != 0 {
		return nil, fmt.Errorf("%w: superblock: recursive deltas", ErrBadDelta)
	}
	u32 := func(x uint32) uint32 {
		if swap {
			return bits.ReverseBytes32(x)
		}
		return x
	}
	u64 := func(x uint64) uint64 {
		if swap {
			return bits.ReverseBytes64(x)
		}
		return x
	}
	for i, pv := range t[6].([]any) {
		p := pv.([]any)
		h := PartHeader{Version: u32(p[0].(uint32)), Size: u64(p[2].(uint64)), USize: u64(p[3].(uint64))}
		if h.Version != 0 {
			return nil, fmt.Errorf("%w: part %d has version %d", ErrBadDelta, i, h.Version)
		}
		c := p[1].([]byte)
		if len(c) != 32 {
			return nil, fmt.Errorf("%w: part %d checksum of %d bytes", ErrBadDelta, i, len(c))
		}
		copy(h.Checksum[:], c)
		if h.Objects, err = parseObjects(p[4].([]byte)); err != nil {
			return nil, fmt.Errorf("part %d: %w", i, err)
		}
		s.Parts = append(s.Parts, h)
	}
	for i, fv := range t[7].([]any) {
		f := fv.([]any)
		objs, err := parseObjects(append([]byte{f[0].(uint8)}, f[1].([]byte)...))
		if err != nil || len(objs) != 1 {
			return nil, fmt.Errorf("%w: fallback %d", ErrBadDelta, i)
		}
		s.Fallbacks = append(s.Fallbacks, Fallback{Object: objs[0], Size: u64(f[2].(uint64)), USize: u64(f[3].(uint64))})
	}
	return s, nil
}

// Mode is a (uid, gid, mode) triple of a part's mode table.
type Mode struct{ UID, GID, Mode uint32 }

// Payload is a decompressed part.
type Payload struct {
	Modes  []Mode
	Xattrs [][]ostree.Xattr
	Data   []byte
	Ops    []byte
}

// Marshal encodes the payload (without the compression byte).
func (p *Payload) Marshal() ([]byte, error) {
	modes := make([]any, len(p.Modes))
	for i, m := range p.Modes {
		modes[i] = []any{bits.ReverseBytes32(m.UID), bits.ReverseBytes32(m.GID), bits.ReverseBytes32(m.Mode)}
	}
	xs := make([]any, len(p.Xattrs))
	for i, x := range p.Xattrs {
		xs[i] = ostree.XattrsGV(x)
	}
	return gvariant.Marshal(PayloadType, []any{modes, xs, p.Data, p.Ops})
}

// ParsePayload decodes a decompressed part.
func ParsePayload(b []byte) (*Payload, error) {
	v, err := gvariant.Unmarshal(PayloadType, b)
	if err != nil {
		return nil, fmt.Errorf("%w: part payload: %v", ErrBadDelta, err)
	}
	t := v.([]any)
	p := &Payload{Data: t[2].([]byte), Ops: t[3].([]byte)}
	for _, mv := range t[0].([]any) {
		m := mv.([]any)
		p.Modes = append(p.Modes, Mode{bits.ReverseBytes32(m[0].(uint32)), bits.ReverseBytes32(m[1].(uint32)), bits.ReverseBytes32(m[2].(uint32))})
	}
	for _, xv := range t[1].([]any) {
		x, err := ostree.ParseXattrsGV(xv)
		if err != nil {
			return nil, fmt.Errorf("%w: part xattrs: %v", ErrBadDelta, err)
		}
		p.Xattrs = append(p.Xattrs, x)
	}
	return p, nil
}

// appendVarint appends an unsigned LEB128 varint.
func appendVarint(b []byte, v uint64) []byte { return binary.AppendUvarint(b, v) }

// opReader reads opcodes and their varint arguments.
type opReader struct{ r *bytes.Reader }

func (o opReader) varint() (uint64, error) {
	v, err := binary.ReadUvarint(o.r)
	if err != nil {
		return 0, fmt.Errorf("%w: truncated or overlong varint in ops", ErrBadDelta)
	}
	return v, nil
}

func varMeta(md ostree.Metadata) gvariant.Variant {
	return gvariant.Variant{Type: ostree.MetadataType, Value: []gvariant.DictEntry(md)}
}

func sumOf(b []byte) ostree.Checksum { return sha256.Sum256(b) }
