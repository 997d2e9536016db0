package delta

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"

	"github.com/ulikunitz/xz"

	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// Bounds the device applies to deltas it reads (they admit libostree's own
// deltas too: its parts hold up to 32 MB of objects).
const (
	// MaxSuperblockSize bounds a superblock (libostree 2022.7 refuses
	// metadata over 10 MiB).
	MaxSuperblockSize = 10 << 20
	// MaxPartSize bounds a part file, whatever its header says.
	MaxPartSize = 48 << 20
	// MaxPayloadSize bounds a decompressed part.
	MaxPayloadSize = 64 << 20
)

// PayloadLimit is how far a part may inflate: the object bytes its header
// declares, plus room for its mode and xattr tables and operations (64
// bytes an object and 1 MiB), never more than MaxPayloadSize.
func PayloadLimit(h PartHeader) int64 {
	n := int64(h.USize) + 64*int64(len(h.Objects)) + 1<<20
	if h.USize > MaxPayloadSize || n > MaxPayloadSize {
		return MaxPayloadSize
	}
	return n
}

// OpenPart checks a whole part file against its header (size, then
// SHA-256, before anything is decompressed), decompresses it within
// PayloadLimit and parses it.
func OpenPart(b []byte, h PartHeader) (*Payload, error) {
	if h.Size > MaxPartSize {
		return nil, fmt.Errorf("%w: part of %d bytes (limit %d)", ErrTooLarge, h.Size, MaxPartSize)
	}
	if uint64(len(b)) != h.Size {
		return nil, fmt.Errorf("%w: part has %d bytes, the superblock says %d", ErrBadDelta, len(b), h.Size)
	}
	if sha256.Sum256(b) != h.Checksum {
		return nil, fmt.Errorf("%w: part does not match its checksum in the superblock", ErrBadDelta)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty part", ErrBadDelta)
	}
	limit := PayloadLimit(h)
	var raw []byte
	switch b[0] {
	case CompNone:
		raw = b[1:]
	case CompXZ:
		zr, err := xz.ReaderConfig{SingleStream: true}.NewReader(bytes.NewReader(b[1:]))
		if err != nil {
			return nil, fmt.Errorf("%w: part: xz: %v", ErrBadDelta, err)
		}
		if raw, err = io.ReadAll(io.LimitReader(zr, limit+1)); err != nil {
			return nil, fmt.Errorf("%w: part: xz: %v", ErrBadDelta, err)
		}
	default:
		return nil, fmt.Errorf("%w: part compression type %d", ErrBadDelta, b[0])
	}
	if int64(len(raw)) > limit {
		return nil, fmt.Errorf("%w: part inflates past %d bytes (%d bytes of objects declared)", ErrTooLarge, limit, h.USize)
	}
	return ParsePayload(raw)
}

// PartObject is one object a part rebuilds.
type PartObject struct {
	Object
	Data   []byte             // metadata bytes, or regular file content
	Header *ostree.FileHeader // content objects only
}

// Objects runs the part's operations and returns the objects they make, in
// the header's order, each checked against its name: nothing is returned
// unless every object of the part verifies. Only 'S' operations are
// applied (ErrUnsupported for the others).
func (p *Payload) Objects(h PartHeader) ([]PartObject, error) {
	ops := opReader{bytes.NewReader(p.Ops)}
	out := make([]PartObject, 0, len(h.Objects))
	slice := func(off, n uint64) ([]byte, error) {
		if off > uint64(len(p.Data)) || n > uint64(len(p.Data))-off {
			return nil, fmt.Errorf("%w: operation reads past the payload", ErrBadDelta)
		}
		return p.Data[off : off+n], nil
	}
	for ops.r.Len() > 0 {
		op, _ := ops.r.ReadByte()
		if op != OpSpliceClose {
			switch op {
			case OpOpen, OpWrite, OpSetRead, OpUnsetRead, OpClose, OpBspatch:
				return nil, fmt.Errorf("%w: opcode %q", ErrUnsupported, op)
			}
			return nil, fmt.Errorf("%w: unknown opcode %d", ErrBadDelta, op)
		}
		if len(out) == len(h.Objects) {
			return nil, fmt.Errorf("%w: more operations than objects", ErrBadDelta)
		}
		o := PartObject{Object: h.Objects[len(out)]}
		if o.Type.IsMetadata() {
			n, err := ops.varint()
			if err != nil {
				return nil, err
			}
			off, err := ops.varint()
			if err != nil {
				return nil, err
			}
			if o.Data, err = slice(off, n); err != nil {
				return nil, err
			}
			if sha256.Sum256(o.Data) != o.Checksum {
				return nil, fmt.Errorf("%w: %s %s does not match its name", ErrBadDelta, o.Type, o.Checksum)
			}
			out = append(out, o)
			continue
		}
		var args [4]uint64
		for i := range args {
			v, err := ops.varint()
			if err != nil {
				return nil, err
			}
			args[i] = v
		}
		if args[0] >= uint64(len(p.Modes)) || args[1] >= uint64(len(p.Xattrs)) {
			return nil, fmt.Errorf("%w: mode or xattr index out of range", ErrBadDelta)
		}
		data, err := slice(args[3], args[2])
		if err != nil {
			return nil, err
		}
		m := p.Modes[args[0]]
		fh := &ostree.FileHeader{UID: m.UID, GID: m.GID, Mode: m.Mode, Xattrs: p.Xattrs[args[1]]}
		var content io.Reader
		switch m.Mode & ostree.ModeTypeMask {
		case ostree.ModeSymlink:
			if len(data) == 0 || bytes.IndexByte(data, 0) >= 0 {
				return nil, fmt.Errorf("%w: bad symlink target", ErrBadDelta)
			}
			fh.SymlinkTarget = string(data)
		case ostree.ModeRegular:
			fh.Size = uint64(len(data))
			o.Data = data
			content = bytes.NewReader(data)
		default:
			return nil, fmt.Errorf("%w: content mode %o", ErrBadDelta, m.Mode)
		}
		c, err := ostree.ContentChecksum(fh, content)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadDelta, err)
		}
		if c != o.Checksum {
			return nil, fmt.Errorf("%w: file %s does not match its name", ErrBadDelta, o.Checksum)
		}
		o.Header = fh
		out = append(out, o)
	}
	if len(out) != len(h.Objects) {
		return nil, fmt.Errorf("%w: %d operations for %d objects", ErrBadDelta, len(out), len(h.Objects))
	}
	return out, nil
}

// Write stores verified part objects in txn (which checks each against
// its name once more as it writes).
func Write(txn *ostree.Txn, objs []PartObject) error {
	for _, o := range objs {
		var err error
		if o.Type.IsMetadata() {
			_, err = txn.WriteMetadata(o.Type, o.Data, o.Checksum)
		} else {
			var r io.Reader
			if !o.Header.IsSymlink() {
				r = bytes.NewReader(o.Data)
			}
			_, err = txn.WriteContent(o.Header, r, o.Checksum)
		}
		if err != nil {
			return fmt.Errorf("delta object %s.%s: %w", o.Checksum, o.Type, err)
		}
	}
	return nil
}
