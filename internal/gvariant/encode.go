package gvariant

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"unicode/utf8"
)

// Marshal serialises v as a value of type typ in normal form. It returns an
// error if typ is not a valid type or v does not match it.
func Marshal(typ string, v any) ([]byte, error) {
	t, err := lookupType(typ)
	if err != nil {
		return nil, err
	}
	e := encoderPool.Get().(*encoder)
	defer e.release()
	if err := e.encode(t, v, 0); err != nil {
		return nil, fmt.Errorf("gvariant: marshal %s: %w", typ, err)
	}
	out := make([]byte, len(e.buf))
	copy(out, e.buf)
	return out, nil
}

// encoder writes into one buffer that starts at offset 0, so absolute
// alignment equals the alignment relative to every enclosing container (each
// container starts at a multiple of its own alignment).
type encoder struct {
	buf  []byte
	offs []int // stack of pending framing offsets shared by all containers
}

var encoderPool = sync.Pool{New: func() any {
	return &encoder{buf: make([]byte, 0, 512), offs: make([]int, 0, 64)}
}}

func (e *encoder) release() {
	// Do not let one huge summary pin its buffer forever.
	if cap(e.buf) > 1<<20 || cap(e.offs) > 1<<16 {
		return
	}
	e.buf = e.buf[:0]
	e.offs = e.offs[:0]
	encoderPool.Put(e)
}

func (e *encoder) pad(align int) {
	for len(e.buf)&(align-1) != 0 {
		e.buf = append(e.buf, 0)
	}
}

func mismatch(t *typeInfo, v any) error {
	return fmt.Errorf("cannot use %T as type %s", v, t.str)
}

func (e *encoder) encode(t *typeInfo, v any, vdepth int) error {
	e.pad(t.align)
	switch t.kind {
	case 'y':
		x, ok := v.(uint8)
		if !ok {
			return mismatch(t, v)
		}
		e.buf = append(e.buf, x)
	case 'b':
		x, ok := v.(bool)
		if !ok {
			return mismatch(t, v)
		}
		var b byte
		if x {
			b = 1
		}
		e.buf = append(e.buf, b)
	case 'n':
		x, ok := v.(int16)
		if !ok {
			return mismatch(t, v)
		}
		e.buf = binary.LittleEndian.AppendUint16(e.buf, uint16(x))
	case 'q':
		x, ok := v.(uint16)
		if !ok {
			return mismatch(t, v)
		}
		e.buf = binary.LittleEndian.AppendUint16(e.buf, x)
	case 'i', 'h':
		x, ok := v.(int32)
		if !ok {
			return mismatch(t, v)
		}
		e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(x))
	case 'u':
		x, ok := v.(uint32)
		if !ok {
			return mismatch(t, v)
		}
		e.buf = binary.LittleEndian.AppendUint32(e.buf, x)
	case 'x':
		x, ok := v.(int64)
		if !ok {
			return mismatch(t, v)
		}
		e.buf = binary.LittleEndian.AppendUint64(e.buf, uint64(x))
	case 't':
		x, ok := v.(uint64)
		if !ok {
			return mismatch(t, v)
		}
		e.buf = binary.LittleEndian.AppendUint64(e.buf, x)
	case 'd':
		x, ok := v.(float64)
		if !ok {
			return mismatch(t, v)
		}
		e.buf = binary.LittleEndian.AppendUint64(e.buf, math.Float64bits(x))
	case 's', 'o', 'g':
		x, ok := v.(string)
		if !ok {
			return mismatch(t, v)
		}
		if err := checkString(t.kind, x); err != nil {
			return err
		}
		e.buf = append(e.buf, x...)
		e.buf = append(e.buf, 0)
	case 'v':
		return e.encodeVariant(v, vdepth)
	case 'a':
		return e.encodeArray(t, v, vdepth)
	case 'm':
		x, ok := v.(Maybe)
		if !ok {
			return mismatch(t, v)
		}
		if !x.Valid {
			return nil
		}
		if err := e.encode(t.elem, x.Value, vdepth); err != nil {
			return err
		}
		if t.elem.fixedSize == 0 {
			e.buf = append(e.buf, 0)
		}
	case '(':
		x, ok := v.([]any)
		if !ok {
			return mismatch(t, v)
		}
		if len(x) != len(t.fields) {
			return fmt.Errorf("type %s needs %d members, got %d", t.str, len(t.fields), len(x))
		}
		return e.encodeStruct(t, x, vdepth)
	case '{':
		x, ok := v.(DictEntry)
		if !ok {
			return mismatch(t, v)
		}
		return e.encodeEntry(t, x, vdepth)
	default:
		return fmt.Errorf("unsupported type %s", t.str)
	}
	return nil
}

func (e *encoder) encodeVariant(v any, vdepth int) error {
	x, ok := v.(Variant)
	if !ok {
		if p, isPtr := v.(*Variant); isPtr && p != nil {
			x, ok = *p, true
		}
	}
	if !ok {
		return fmt.Errorf("cannot use %T as type v", v)
	}
	if vdepth >= MaxDepth {
		return fmt.Errorf("variants nested deeper than %d", MaxDepth)
	}
	ct, err := lookupType(x.Type)
	if err != nil {
		return err
	}
	if err := e.encode(ct, x.Value, vdepth+1); err != nil {
		return fmt.Errorf("variant: %w", err)
	}
	e.buf = append(e.buf, 0)
	e.buf = append(e.buf, ct.str...)
	return nil
}

func (e *encoder) encodeArray(t *typeInfo, v any, vdepth int) error {
	el := t.elem
	switch el.kind {
	case 'y':
		x, ok := v.([]byte)
		if !ok {
			return mismatch(t, v)
		}
		e.buf = append(e.buf, x...)
		return nil
	case '{':
		x, ok := v.([]DictEntry)
		if !ok {
			return mismatch(t, v)
		}
		return encodeElems(e, t, x, vdepth, func(de DictEntry) error { return e.encodeEntry(el, de, vdepth) })
	case 's', 'o', 'g':
		if x, ok := v.([]string); ok {
			return encodeElems(e, t, x, vdepth, func(s string) error { return e.encode(el, s, vdepth) })
		}
	case 'a':
		if x, ok := v.([][]byte); ok && el.elem.kind == 'y' {
			return encodeElems(e, t, x, vdepth, func(b []byte) error { return e.encode(el, b, vdepth) })
		}
	}
	x, ok := v.([]any)
	if !ok {
		return mismatch(t, v)
	}
	return encodeElems(e, t, x, vdepth, func(a any) error { return e.encode(el, a, vdepth) })
}

// encodeElems writes the elements of an array of type t, followed by the
// offset table when the element type is variable-size.
func encodeElems[E any](e *encoder, t *typeInfo, elems []E, vdepth int, enc func(E) error) error {
	if len(elems) == 0 {
		return nil
	}
	start := len(e.buf)
	if t.elem.fixedSize != 0 {
		for i, x := range elems {
			if err := enc(x); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
		return nil
	}
	mark := len(e.offs)
	for i, x := range elems {
		if err := enc(x); err != nil {
			return fmt.Errorf("element %d: %w", i, err)
		}
		e.offs = append(e.offs, len(e.buf)-start)
	}
	e.writeOffsets(len(e.buf)-start, e.offs[mark:], false)
	e.offs = e.offs[:mark]
	return nil
}

// writeOffsets appends a framing offset table for a container whose body is
// body bytes long. Arrays list offsets in element order, structs in reverse.
func (e *encoder) writeOffsets(body int, offs []int, reverse bool) {
	if len(offs) == 0 {
		return
	}
	w := offsetWidth(body, len(offs))
	for i := range offs {
		o := offs[i]
		if reverse {
			o = offs[len(offs)-1-i]
		}
		switch w {
		case 1:
			e.buf = append(e.buf, byte(o))
		case 2:
			e.buf = binary.LittleEndian.AppendUint16(e.buf, uint16(o))
		case 4:
			e.buf = binary.LittleEndian.AppendUint32(e.buf, uint32(o))
		default:
			e.buf = binary.LittleEndian.AppendUint64(e.buf, uint64(o))
		}
	}
}

func (e *encoder) encodeStruct(t *typeInfo, vals []any, vdepth int) error {
	start := len(e.buf)
	if len(t.fields) == 0 {
		e.buf = append(e.buf, 0)
		return nil
	}
	mark := len(e.offs)
	last := len(t.fields) - 1
	for i, f := range t.fields {
		if err := e.encode(f, vals[i], vdepth); err != nil {
			return fmt.Errorf("member %d: %w", i, err)
		}
		if f.fixedSize == 0 && i != last {
			e.offs = append(e.offs, len(e.buf)-start)
		}
	}
	if t.fixedSize != 0 {
		e.pad(t.align)
		return nil
	}
	e.writeOffsets(len(e.buf)-start, e.offs[mark:], true)
	e.offs = e.offs[:mark]
	return nil
}

func (e *encoder) encodeEntry(t *typeInfo, de DictEntry, vdepth int) error {
	e.pad(t.align)
	vals := [2]any{de.Key, de.Value}
	if err := e.encodeStruct(t, vals[:], vdepth); err != nil {
		return fmt.Errorf("dictionary entry: %w", err)
	}
	return nil
}

var (
	errStringNUL  = errors.New("string contains a NUL byte")
	errStringUTF8 = errors.New("string is not valid UTF-8")
)

// checkString enforces what GLib requires of s, o and g values: UTF-8
// without NUL, and valid object path or signature syntax.
func checkString(kind byte, s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return errStringNUL
	}
	if !utf8.ValidString(s) {
		return errStringUTF8
	}
	switch kind {
	case 'o':
		if !isObjectPath(s) {
			return fmt.Errorf("invalid object path %q", s)
		}
	case 'g':
		if !isSignature(s) {
			return fmt.Errorf("invalid signature %q", s)
		}
	}
	return nil
}

// isObjectPath reports D-Bus object path syntax: "/" or "/" separated
// non-empty elements of [A-Za-z0-9_] with no trailing slash.
func isObjectPath(s string) bool {
	if s == "" || s[0] != '/' {
		return false
	}
	if s == "/" {
		return true
	}
	prevSlash := true
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '/':
			if prevSlash {
				return false
			}
			prevSlash = true
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
			prevSlash = false
		default:
			return false
		}
	}
	return !prevSlash
}

// isSignature reports whether s is a concatenation of zero or more complete
// types built only from D-Bus type characters (so no maybe types).
func isSignature(s string) bool {
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune("ybnqiuxthdvasog(){}", rune(s[i])) {
			return false
		}
	}
	p := typeParser{s: s}
	for p.pos < len(s) {
		if _, err := p.parse(0); err != nil {
			return false
		}
	}
	return true
}
