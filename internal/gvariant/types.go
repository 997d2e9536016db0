package gvariant

import (
	"errors"
	"fmt"
	"sync"
)

// Variant is a value of type v: a value together with its own type string.
type Variant struct {
	Type  string
	Value any
}

// DictEntry is a value of a dictionary entry type {KV}.
type DictEntry struct {
	Key, Value any
}

// Maybe is a value of a maybe type mT. Value is ignored when Valid is false.
type Maybe struct {
	Valid bool
	Value any
}

// MaxDepth bounds the nesting of containers inside one type string and the
// nesting of variants inside variants, so that hostile input cannot exhaust
// the stack.
const MaxDepth = 64

// typeInfo is a parsed type string with its layout precomputed, so that the
// encoder and decoder never re-scan type strings.
type typeInfo struct {
	str       string
	kind      byte        // first character of str
	align     int         // 1, 2, 4 or 8
	fixedSize int         // 0 when the type is variable-size
	elem      *typeInfo   // a, m
	fields    []*typeInfo // (, {
	nFrame    int         // (, {: framing offsets = variable-size members except the last
}

func (t *typeInfo) isBasic() bool {
	switch t.kind {
	case 'b', 'y', 'n', 'q', 'i', 'u', 'x', 't', 'h', 'd', 's', 'o', 'g':
		return true
	}
	return false
}

// basicTypes holds one shared typeInfo per single-character type.
var basicTypes = func() (m [256]*typeInfo) {
	set := func(c byte, align, size int) {
		m[c] = &typeInfo{str: string([]byte{c}), kind: c, align: align, fixedSize: size}
	}
	set('y', 1, 1)
	set('b', 1, 1)
	set('n', 2, 2)
	set('q', 2, 2)
	set('i', 4, 4)
	set('u', 4, 4)
	set('h', 4, 4)
	set('x', 8, 8)
	set('t', 8, 8)
	set('d', 8, 8)
	set('s', 1, 0)
	set('o', 1, 0)
	set('g', 1, 0)
	set('v', 8, 0)
	return m
}()

// ValidateType reports whether typ is exactly one complete, definite GVariant
// type no deeper than MaxDepth.
func ValidateType(typ string) error {
	_, err := parseType(typ)
	return err
}

var errEmptyType = errors.New("gvariant: empty type string")

func parseType(s string) (*typeInfo, error) {
	if s == "" {
		return nil, errEmptyType
	}
	p := typeParser{s: s}
	t, err := p.parse(0)
	if err != nil {
		return nil, fmt.Errorf("gvariant: invalid type %q: %w", s, err)
	}
	if p.pos != len(s) {
		return nil, fmt.Errorf("gvariant: invalid type %q: trailing characters at offset %d", s, p.pos)
	}
	return t, nil
}

type typeParser struct {
	s   string
	pos int
}

func (p *typeParser) parse(depth int) (*typeInfo, error) {
	if p.pos >= len(p.s) {
		return nil, errors.New("unexpected end")
	}
	start := p.pos
	c := p.s[p.pos]
	p.pos++
	if t := basicTypes[c]; t != nil {
		return t, nil
	}
	switch c {
	case 'a', 'm', '(', '{':
	default:
		return nil, fmt.Errorf("unexpected character %q at offset %d", c, start)
	}
	if depth >= MaxDepth {
		return nil, fmt.Errorf("nested deeper than %d", MaxDepth)
	}
	t := &typeInfo{kind: c}
	switch c {
	case 'a', 'm':
		elem, err := p.parse(depth + 1)
		if err != nil {
			return nil, err
		}
		t.elem = elem
		t.align = elem.align
	case '(':
		for {
			if p.pos >= len(p.s) {
				return nil, errors.New("unterminated tuple")
			}
			if p.s[p.pos] == ')' {
				p.pos++
				break
			}
			f, err := p.parse(depth + 1)
			if err != nil {
				return nil, err
			}
			t.fields = append(t.fields, f)
		}
		t.layoutStruct()
	case '{':
		key, err := p.parse(depth + 1)
		if err != nil {
			return nil, err
		}
		if !key.isBasic() {
			return nil, fmt.Errorf("dictionary key type %q at offset %d is not basic", key.str, start+1)
		}
		val, err := p.parse(depth + 1)
		if err != nil {
			return nil, err
		}
		if p.pos >= len(p.s) || p.s[p.pos] != '}' {
			return nil, fmt.Errorf("dictionary entry at offset %d does not have exactly two types", start)
		}
		p.pos++
		t.fields = []*typeInfo{key, val}
		t.layoutStruct()
	}
	t.str = p.s[start:p.pos]
	return t, nil
}

// layoutStruct computes alignment, fixed size and framing offset count of a
// tuple or dictionary entry.
func (t *typeInfo) layoutStruct() {
	t.align = 1
	fixed := true
	off := 0
	for i, f := range t.fields {
		t.align = max(t.align, f.align)
		if f.fixedSize == 0 {
			fixed = false
			if i != len(t.fields)-1 {
				t.nFrame++
			}
			continue
		}
		off = alignUp(off, f.align) + f.fixedSize
	}
	switch {
	case !fixed:
		t.fixedSize = 0
	case len(t.fields) == 0:
		t.fixedSize = 1 // the unit type still occupies one byte
	default:
		t.fixedSize = alignUp(off, t.align)
	}
}

func alignUp(n, align int) int {
	return (n + align - 1) &^ (align - 1)
}

// The type cache holds parsed types by string. Types arriving inside variants
// come from the network, so the cache is bounded in entries and key length;
// misses beyond that are parsed each time.
const (
	typeCacheMaxEntries = 4096
	typeCacheMaxLen     = 64
)

var typeCache = struct {
	sync.RWMutex
	m map[string]*typeInfo
}{m: make(map[string]*typeInfo)}

func lookupType(s string) (*typeInfo, error) {
	if len(s) == 1 {
		if t := basicTypes[s[0]]; t != nil {
			return t, nil
		}
	}
	typeCache.RLock()
	t := typeCache.m[s]
	typeCache.RUnlock()
	if t != nil {
		return t, nil
	}
	t, err := parseType(s)
	if err != nil {
		return nil, err
	}
	cacheType(t)
	return t, nil
}

// lookupTypeBytes is lookupType for a type string held in a byte slice; a hit
// does not allocate.
func lookupTypeBytes(b []byte) (*typeInfo, error) {
	if len(b) == 1 {
		if t := basicTypes[b[0]]; t != nil {
			return t, nil
		}
	}
	typeCache.RLock()
	t := typeCache.m[string(b)]
	typeCache.RUnlock()
	if t != nil {
		return t, nil
	}
	t, err := parseType(string(b))
	if err != nil {
		return nil, err
	}
	cacheType(t)
	return t, nil
}

func cacheType(t *typeInfo) {
	if len(t.str) > typeCacheMaxLen {
		return
	}
	typeCache.Lock()
	if len(typeCache.m) < typeCacheMaxEntries {
		typeCache.m[t.str] = t
	}
	typeCache.Unlock()
}

// offsetWidth is the framing offset width a writer uses for a container whose
// body is body bytes long and needs n offsets: the smallest width whose
// maximum value can address the whole container.
func offsetWidth(body, n int) int {
	switch {
	case body+n <= 0xff:
		return 1
	case body+2*n <= 0xffff:
		return 2
	case uint64(body)+4*uint64(n) <= 0xffffffff:
		return 4
	default:
		return 8
	}
}

// offsetWidthForSize is the framing offset width a reader derives from the
// total size of a container.
func offsetWidthForSize(size int) int {
	switch {
	case size <= 0xff:
		return 1
	case size <= 0xffff:
		return 2
	case uint64(size) <= 0xffffffff:
		return 4
	default:
		return 8
	}
}
