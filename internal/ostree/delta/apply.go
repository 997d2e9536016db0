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

// Source returns the uncompressed content of a regular file the client
// already has (the read source of 'r' operations), at most limit bytes.
type Source func(c ostree.Checksum, limit int64) ([]byte, error)

// Objects runs the part's operations and returns the objects they make, in
// the header's order, each checked against its name: nothing is returned
// unless every object of the part verifies. 'S' makes an object from the
// payload; 'o', 'w', 'r', 'R' and 'c' build a regular file from payload
// bytes and ranges of a file the client has (src; nil refuses them);
// 'B' (bsdiff) is ErrUnsupported. The objects one part makes may not
// exceed MaxPayloadSize bytes in all (libostree's declared sizes are not
// exact enough to hold them to).
func (p *Payload) Objects(h PartHeader, src Source) ([]PartObject, error) {
	ops := opReader{bytes.NewReader(p.Ops)}
	out := make([]PartObject, 0, len(h.Objects))
	slice := func(off, n uint64) ([]byte, error) {
		if off > uint64(len(p.Data)) || n > uint64(len(p.Data))-off {
			return nil, fmt.Errorf("%w: operation reads past the payload", ErrBadDelta)
		}
		return p.Data[off : off+n], nil
	}
	var made uint64
	grow := func(n uint64) error {
		made += n
		if made > MaxPayloadSize || made < n {
			return fmt.Errorf("%w: part makes more than %d bytes of objects", ErrTooLarge, MaxPayloadSize)
		}
		return nil
	}
	varints := func(n int) ([]uint64, error) {
		args := make([]uint64, n)
		for i := range args {
			v, err := ops.varint()
			if err != nil {
				return nil, err
			}
			args[i] = v
		}
		return args, nil
	}
	header := func(mi, xi uint64) (*ostree.FileHeader, error) {
		if mi >= uint64(len(p.Modes)) || xi >= uint64(len(p.Xattrs)) {
			return nil, fmt.Errorf("%w: mode or xattr index out of range", ErrBadDelta)
		}
		m := p.Modes[mi]
		return &ostree.FileHeader{UID: m.UID, GID: m.GID, Mode: m.Mode, Xattrs: p.Xattrs[xi]}, nil
	}
	finish := func(o PartObject) error {
		var content io.Reader
		if !o.Header.IsSymlink() {
			content = bytes.NewReader(o.Data)
		}
		c, err := ostree.ContentChecksum(o.Header, content)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadDelta, err)
		}
		if c != o.Checksum {
			return fmt.Errorf("%w: file %s does not match its name", ErrBadDelta, o.Checksum)
		}
		return nil
	}
	var open *PartObject // the file 'o' opened
	var size uint64      // its declared size
	var source []byte    // the read source's content, while set
	// The last read source loaded: a file sent as many ranges of an old
	// one sets and unsets the same source between its literal writes, and
	// reading (and decompressing) the old file each time made applying
	// such a delta quadratic.
	var cachedSum ostree.Checksum
	var cached []byte
	next := func() (PartObject, error) {
		if len(out) == len(h.Objects) {
			return PartObject{}, fmt.Errorf("%w: more operations than objects", ErrBadDelta)
		}
		return PartObject{Object: h.Objects[len(out)]}, nil
	}
	for ops.r.Len() > 0 {
		op, _ := ops.r.ReadByte()
		switch op {
		case OpSpliceClose:
			if open != nil {
				return nil, fmt.Errorf("%w: 'S' while a file is open", ErrBadDelta)
			}
			o, err := next()
			if err != nil {
				return nil, err
			}
			if o.Type.IsMetadata() {
				a, err := varints(2)
				if err != nil {
					return nil, err
				}
				if o.Data, err = slice(a[1], a[0]); err != nil {
					return nil, err
				}
				if err := grow(a[0]); err != nil {
					return nil, err
				}
				if sha256.Sum256(o.Data) != o.Checksum {
					return nil, fmt.Errorf("%w: %s %s does not match its name", ErrBadDelta, o.Type, o.Checksum)
				}
				out = append(out, o)
				continue
			}
			a, err := varints(4)
			if err != nil {
				return nil, err
			}
			if o.Header, err = header(a[0], a[1]); err != nil {
				return nil, err
			}
			data, err := slice(a[3], a[2])
			if err != nil {
				return nil, err
			}
			if err := grow(a[2]); err != nil {
				return nil, err
			}
			switch o.Header.Mode & ostree.ModeTypeMask {
			case ostree.ModeSymlink:
				if len(data) == 0 || bytes.IndexByte(data, 0) >= 0 {
					return nil, fmt.Errorf("%w: bad symlink target", ErrBadDelta)
				}
				o.Header.SymlinkTarget = string(data)
			case ostree.ModeRegular:
				o.Header.Size = uint64(len(data))
				o.Data = data
			default:
				return nil, fmt.Errorf("%w: content mode %o", ErrBadDelta, o.Header.Mode)
			}
			if err := finish(o); err != nil {
				return nil, err
			}
			out = append(out, o)
		case OpOpen:
			if open != nil {
				return nil, fmt.Errorf("%w: 'o' while a file is open", ErrBadDelta)
			}
			o, err := next()
			if err != nil {
				return nil, err
			}
			if o.Type != ostree.ObjFile {
				return nil, fmt.Errorf("%w: 'o' for a %s object", ErrBadDelta, o.Type)
			}
			a, err := varints(3)
			if err != nil {
				return nil, err
			}
			if o.Header, err = header(a[0], a[1]); err != nil {
				return nil, err
			}
			if o.Header.Mode&ostree.ModeTypeMask != ostree.ModeRegular {
				return nil, fmt.Errorf("%w: 'o' for a file of mode %o", ErrBadDelta, o.Header.Mode)
			}
			if err := grow(a[2]); err != nil {
				return nil, err
			}
			size = a[2]
			o.Header.Size = size
			o.Data = make([]byte, 0, size)
			open = &o
		case OpWrite:
			a, err := varints(2)
			if err != nil {
				return nil, err
			}
			if open == nil {
				return nil, fmt.Errorf("%w: 'w' with no open file", ErrBadDelta)
			}
			if a[0] > size-uint64(len(open.Data)) {
				return nil, fmt.Errorf("%w: 'w' past the file's declared size", ErrBadDelta)
			}
			var b []byte
			if source != nil {
				if a[1] > uint64(len(source)) || a[0] > uint64(len(source))-a[1] {
					return nil, fmt.Errorf("%w: 'w' reads past the read source", ErrBadDelta)
				}
				b = source[a[1] : a[1]+a[0]]
			} else if b, err = slice(a[1], a[0]); err != nil {
				return nil, err
			}
			open.Data = append(open.Data, b...)
		case OpSetRead:
			a, err := varints(1)
			if err != nil {
				return nil, err
			}
			cb, err := slice(a[0], 32)
			if err != nil {
				return nil, err
			}
			if src == nil {
				return nil, fmt.Errorf("%w: read source without a local repository", ErrUnsupported)
			}
			var c ostree.Checksum
			copy(c[:], cb)
			if cached == nil || c != cachedSum {
				if cached, err = src(c, MaxPayloadSize); err != nil {
					return nil, fmt.Errorf("read source %s: %w", c, err)
				}
				if cached == nil {
					cached = []byte{}
				}
				cachedSum = c
			}
			source = cached
		case OpUnsetRead:
			source = nil
		case OpClose:
			if open == nil {
				return nil, fmt.Errorf("%w: 'c' with no open file", ErrBadDelta)
			}
			if uint64(len(open.Data)) != size {
				return nil, fmt.Errorf("%w: file closed at %d of its %d bytes", ErrBadDelta, len(open.Data), size)
			}
			if err := finish(*open); err != nil {
				return nil, err
			}
			out = append(out, *open)
			open, source = nil, nil
		case OpBspatch:
			return nil, fmt.Errorf("%w: opcode %q", ErrUnsupported, op)
		default:
			return nil, fmt.Errorf("%w: unknown opcode %d", ErrBadDelta, op)
		}
	}
	if open != nil || len(out) != len(h.Objects) {
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
