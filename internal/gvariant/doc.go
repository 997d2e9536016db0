// Package gvariant encodes and decodes the GVariant binary serialisation
// format (GLib's "GVariant Serialisation" specification) in normal form.
//
// It owns the byte-level codec for every GVariant type the OSTree side of
// MxOS Update reads or writes: commits, dirtrees, dirmetas, content-object
// headers, summaries, detached metadata, delta superblocks and parts, and the
// a{sv} dictionaries inside them. It knows nothing about what those
// structures mean; callers in internal/ostree give them meaning (and byte-swap
// OSTree's big-endian fields themselves: integers here are always written in
// the little-endian order of the spec).
//
// The package is hand-written from the specification because no maintained
// pure-Go implementation of the binary format exists (godbus only handles the
// text format), and the project builds with CGO_ENABLED=0 so GLib is not an
// option.
//
// Normal form matters because OSTree names metadata objects by the SHA-256
// of their bytes and libostree rejects anything not in normal form. Marshal
// therefore only produces normal form, and Unmarshal only accepts it, so that
// Unmarshal followed by Marshal reproduces the input byte for byte.
//
// Values are represented by type code:
//
//	y uint8   b bool   n int16   q uint16   i int32   u uint32
//	x int64   t uint64   h int32   d float64
//	s, o, g   string
//	ay        []byte (never []any)
//	v         Variant
//	aT        []any for T != y (Marshal also accepts []string for as and
//	          [][]byte for aay)
//	a{KV}     []DictEntry, order preserved
//	(T1T2...) []any with one element per member; () is an empty []any
//	{KV}      DictEntry when not inside an array
//	mT        Maybe
//
// Unmarshal treats its input as hostile: it never panics, bounds type and
// variant nesting at 64 levels, and allocates in proportion to len(data).
package gvariant
