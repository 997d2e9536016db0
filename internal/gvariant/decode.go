package gvariant

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// ErrNotNormal is matched (with errors.Is) by every error Unmarshal returns
// for input that is not in GVariant normal form.
var ErrNotNormal = errors.New("gvariant: not in normal form")

// NotNormalError describes where and why input is not in normal form.
type NotNormalError struct {
	Type   string // type of the value being decoded
	Offset int    // byte offset of that value in the input
	Reason string
}

func (e *NotNormalError) Error() string {
	return fmt.Sprintf("gvariant: not in normal form: %s (type %s at offset %d)", e.Reason, e.Type, e.Offset)
}

// Is makes errors.Is(err, ErrNotNormal) hold.
func (e *NotNormalError) Is(target error) bool { return target == ErrNotNormal }

func notNormal(t *typeInfo, off int, format string, args ...any) error {
	return &NotNormalError{Type: t.str, Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// Unmarshal decodes data as a value of type typ. It accepts only normal form,
// so a successful result marshals back to exactly data. Input that is not in
// normal form yields a *NotNormalError; an invalid typ yields a plain error.
// The result never aliases data.
func Unmarshal(typ string, data []byte) (any, error) {
	t, err := lookupType(typ)
	if err != nil {
		return nil, err
	}
	return decode(t, data, 0, 0)
}

// decode decodes d, which is exactly the bytes of one value of type t; off
// is the position of d in the original input, for error messages only.
func decode(t *typeInfo, d []byte, off, vdepth int) (any, error) {
	if t.fixedSize != 0 && len(d) != t.fixedSize {
		return nil, notNormal(t, off, "size %d, want %d", len(d), t.fixedSize)
	}
	switch t.kind {
	case 'y':
		return d[0], nil
	case 'b':
		switch d[0] {
		case 0:
			return false, nil
		case 1:
			return true, nil
		}
		return nil, notNormal(t, off, "boolean byte %d", d[0])
	case 'n':
		return int16(binary.LittleEndian.Uint16(d)), nil
	case 'q':
		return binary.LittleEndian.Uint16(d), nil
	case 'i', 'h':
		return int32(binary.LittleEndian.Uint32(d)), nil
	case 'u':
		return binary.LittleEndian.Uint32(d), nil
	case 'x':
		return int64(binary.LittleEndian.Uint64(d)), nil
	case 't':
		return binary.LittleEndian.Uint64(d), nil
	case 'd':
		return math.Float64frombits(binary.LittleEndian.Uint64(d)), nil
	case 's', 'o', 'g':
		return decodeString(t, d, off)
	case 'v':
		return decodeVariant(t, d, off, vdepth)
	case 'a':
		return decodeArray(t, d, off, vdepth)
	case 'm':
		return decodeMaybe(t, d, off, vdepth)
	case '(':
		vals := make([]any, len(t.fields))
		if err := decodeStruct(t, d, off, vdepth, vals); err != nil {
			return nil, err
		}
		return vals, nil
	case '{':
		return decodeEntry(t, d, off, vdepth)
	}
	return nil, fmt.Errorf("gvariant: unsupported type %s", t.str)
}

func decodeString(t *typeInfo, d []byte, off int) (any, error) {
	n := len(d)
	if n == 0 || d[n-1] != 0 {
		return nil, notNormal(t, off, "string not NUL-terminated")
	}
	if i := bytes.IndexByte(d[:n-1], 0); i >= 0 {
		return nil, notNormal(t, off, "string has a NUL byte at offset %d", off+i)
	}
	if !utf8.Valid(d[:n-1]) {
		return nil, notNormal(t, off, "string is not valid UTF-8")
	}
	s := string(d[:n-1])
	switch {
	case t.kind == 'o' && !isObjectPath(s):
		return nil, notNormal(t, off, "invalid object path %q", s)
	case t.kind == 'g' && !isSignature(s):
		return nil, notNormal(t, off, "invalid signature %q", s)
	}
	return s, nil
}

func decodeVariant(t *typeInfo, d []byte, off, vdepth int) (any, error) {
	if vdepth >= MaxDepth {
		return nil, notNormal(t, off, "variants nested deeper than %d", MaxDepth)
	}
	sep := bytes.LastIndexByte(d, 0)
	if sep < 0 {
		return nil, notNormal(t, off, "variant has no type separator")
	}
	ct, err := lookupTypeBytes(d[sep+1:])
	if err != nil {
		return nil, notNormal(t, off, "variant type: %v", err)
	}
	v, err := decode(ct, d[:sep], off, vdepth+1)
	if err != nil {
		return nil, err
	}
	return Variant{Type: ct.str, Value: v}, nil
}

func decodeMaybe(t *typeInfo, d []byte, off, vdepth int) (any, error) {
	if len(d) == 0 {
		return Maybe{}, nil
	}
	child := d
	if t.elem.fixedSize == 0 {
		if d[len(d)-1] != 0 {
			return nil, notNormal(t, off, "maybe value does not end in a zero byte")
		}
		child = d[:len(d)-1]
	}
	v, err := decode(t.elem, child, off, vdepth)
	if err != nil {
		return nil, err
	}
	return Maybe{Valid: true, Value: v}, nil
}

func readOffset(d []byte, w int) uint64 {
	switch w {
	case 1:
		return uint64(d[0])
	case 2:
		return uint64(binary.LittleEndian.Uint16(d))
	case 4:
		return uint64(binary.LittleEndian.Uint32(d))
	default:
		return binary.LittleEndian.Uint64(d)
	}
}

func checkZero(t *typeInfo, d []byte, off int) error {
	for i, c := range d {
		if c != 0 {
			return notNormal(t, off+i, "non-zero padding byte 0x%02x", c)
		}
	}
	return nil
}

func decodeArray(t *typeInfo, d []byte, off, vdepth int) (any, error) {
	el := t.elem
	if el.kind == 'y' {
		out := make([]byte, len(d))
		copy(out, d)
		return out, nil
	}
	if el.fixedSize != 0 {
		sz := el.fixedSize
		if len(d)%sz != 0 {
			return nil, notNormal(t, off, "array size %d is not a multiple of element size %d", len(d), sz)
		}
		n := len(d) / sz
		if el.kind == '{' {
			out := make([]DictEntry, n)
			for i := range out {
				de, err := decodeEntry(el, d[i*sz:(i+1)*sz], off+i*sz, vdepth)
				if err != nil {
					return nil, err
				}
				out[i] = de
			}
			return out, nil
		}
		out := make([]any, n)
		for i := range out {
			v, err := decode(el, d[i*sz:(i+1)*sz], off+i*sz, vdepth)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	}

	if len(d) == 0 {
		if el.kind == '{' {
			return []DictEntry{}, nil
		}
		return []any{}, nil
	}
	size := len(d)
	w := offsetWidthForSize(size)
	last64 := readOffset(d[size-w:], w)
	if last64 > uint64(size-w) {
		return nil, notNormal(t, off, "array offset %d out of range", last64)
	}
	last := int(last64)
	if (size-last)%w != 0 {
		return nil, notNormal(t, off, "array offset table size %d is not a multiple of %d", size-last, w)
	}
	n := (size - last) / w
	if offsetWidth(last, n) != w {
		return nil, notNormal(t, off, "array offsets are %d bytes wide, not minimal", w)
	}
	var entries []DictEntry
	var vals []any
	if el.kind == '{' {
		entries = make([]DictEntry, n)
	} else {
		vals = make([]any, n)
	}
	pos := 0
	for i := 0; i < n; i++ {
		end64 := readOffset(d[last+i*w:], w)
		start := alignUp(pos, el.align)
		if end64 > uint64(last) || int(end64) < start {
			return nil, notNormal(t, off, "element %d end offset %d out of range [%d, %d]", i, end64, start, last)
		}
		end := int(end64)
		if err := checkZero(t, d[pos:start], off+pos); err != nil {
			return nil, err
		}
		if entries != nil {
			de, err := decodeEntry(el, d[start:end], off+start, vdepth)
			if err != nil {
				return nil, err
			}
			entries[i] = de
		} else {
			v, err := decode(el, d[start:end], off+start, vdepth)
			if err != nil {
				return nil, err
			}
			vals[i] = v
		}
		pos = end
	}
	if entries != nil {
		return entries, nil
	}
	return vals, nil
}

func decodeEntry(t *typeInfo, d []byte, off, vdepth int) (DictEntry, error) {
	if t.fixedSize != 0 && len(d) != t.fixedSize {
		return DictEntry{}, notNormal(t, off, "size %d, want %d", len(d), t.fixedSize)
	}
	var vals [2]any
	if err := decodeStruct(t, d, off, vdepth, vals[:]); err != nil {
		return DictEntry{}, err
	}
	return DictEntry{Key: vals[0], Value: vals[1]}, nil
}

// decodeStruct decodes the members of a tuple or dictionary entry into out.
// The size of fixed-size structs has already been checked.
func decodeStruct(t *typeInfo, d []byte, off, vdepth int, out []any) error {
	size := len(d)
	bodyEnd := size
	w := 0
	if t.nFrame > 0 {
		w = offsetWidthForSize(size)
		if t.nFrame*w > size {
			return notNormal(t, off, "%d bytes too short for %d framing offsets", size, t.nFrame)
		}
		bodyEnd = size - t.nFrame*w
		if offsetWidth(bodyEnd, t.nFrame) != w {
			return notNormal(t, off, "framing offsets are %d bytes wide, not minimal", w)
		}
	}
	pos := 0
	frame := 0
	last := len(t.fields) - 1
	for i, f := range t.fields {
		start := alignUp(pos, f.align)
		if start > bodyEnd {
			return notNormal(t, off, "member %d starts beyond the end", i)
		}
		if err := checkZero(t, d[pos:start], off+pos); err != nil {
			return err
		}
		var end int
		switch {
		case f.fixedSize != 0:
			end = start + f.fixedSize
			if end > bodyEnd {
				return notNormal(t, off, "member %d extends beyond the end", i)
			}
		case i == last:
			end = bodyEnd
		default:
			frame++
			e := readOffset(d[size-frame*w:], w)
			if e < uint64(start) || e > uint64(bodyEnd) {
				return notNormal(t, off, "member %d end offset %d out of range [%d, %d]", i, e, start, bodyEnd)
			}
			end = int(e)
		}
		v, err := decode(f, d[start:end], off+start, vdepth)
		if err != nil {
			return err
		}
		out[i] = v
		pos = end
	}
	if t.fixedSize != 0 {
		// Tail padding of a fixed-size struct (or the unit byte of ()).
		return checkZero(t, d[pos:], off+pos)
	}
	if pos != bodyEnd {
		return notNormal(t, off, "%d unused bytes after the last member", bodyEnd-pos)
	}
	return nil
}
