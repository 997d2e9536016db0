package gvariant

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func TestValidateType(t *testing.T) {
	valid := []string{
		"y", "b", "n", "q", "i", "u", "x", "t", "h", "d", "s", "o", "g", "v",
		"ay", "aay", "a{sv}", "()", "(yu)", "{sv}", "{yv}", "mv", "mmy", "a(say)",
		"(a{sv}aya(say)sstayay)", "(a(say)a(sayay))", "(uuua(ayay))", "(tuuuusa(ayay))",
		"(a(s(taya{sv}))a{sv})", "(a{sv}tayay(a{sv}aya(say)sstayay)aya(uayttay)a(yaytt))",
		"(a(uuu)aa(ayay)ayay)", "(yay)", "a{s(taya{sv})}",
		strings.Repeat("a", MaxDepth) + "y",
		strings.Repeat("(", MaxDepth) + strings.Repeat(")", MaxDepth),
	}
	for _, typ := range valid {
		if err := ValidateType(typ); err != nil {
			t.Errorf("ValidateType(%q) = %v, want nil", typ, err)
		}
	}
	invalid := []string{
		"", "z", "yy", "a", "m", "(", ")", "(y", "y)", "{", "{s}", "{svv}", "{vs}", "{ays}",
		"{(y)s}", "{sv", "a{sv}x", "?", "*", "r", "(yy))", "a{}", "\x00", "ay\x00",
		strings.Repeat("a", MaxDepth+1) + "y",
		strings.Repeat("(", MaxDepth+1) + strings.Repeat(")", MaxDepth+1),
		strings.Repeat("m", MaxDepth+1) + "y",
	}
	for _, typ := range invalid {
		if err := ValidateType(typ); err == nil {
			t.Errorf("ValidateType(%q) = nil, want error", typ)
		}
	}
}

type roundTripCase struct {
	name string
	typ  string
	val  any
	hex  string // expected encoding; empty to skip the byte comparison
}

func roundTripCases() []roundTripCase {
	return []roundTripCase{
		// Scalars.
		{"byte", "y", uint8(0xab), "ab"},
		{"false", "b", false, "00"},
		{"true", "b", true, "01"},
		{"int16", "n", int16(-2), "feff"},
		{"uint16", "q", uint16(0x1234), "3412"},
		{"int32", "i", int32(-1), "ffffffff"},
		{"uint32", "u", uint32(0x01020304), "04030201"},
		{"handle", "h", int32(7), "07000000"},
		{"int64", "x", int64(-2), "feffffffffffffff"},
		{"uint64", "t", uint64(0x0102030405060708), "0807060504030201"},
		{"double", "d", 1.5, "000000000000f83f"},
		{"negative zero", "d", math.Copysign(0, -1), "0000000000000080"},
		{"string", "s", "hello world", "68656c6c6f20776f726c6400"},
		{"empty string", "s", "", "00"},
		{"utf8 string", "s", "año", "61c3b16f00"},
		{"object path", "o", "/org/mxos/Update1", ""},
		{"root object path", "o", "/", "2f00"},
		{"signature", "g", "a{sv}(ii)", ""},
		{"empty signature", "g", "", "00"},

		// Examples from the GVariant specification.
		{"spec as", "as", []any{"i", "can", "has", "strings?"}, "6900 63616e00 68617300 737472696e67733f00 02060a13"},
		{"spec (si)", "(si)", []any{"foo", int32(-1)}, "666f6f00 ffffffff 04"},
		{"spec a{si}", "a{si}", []DictEntry{{"hi", int32(-2)}, {"bye", int32(-1)}},
			"686900 00 feffffff 03 000000 62796500 ffffffff 04 09 15"},
		{"spec ai", "ai", []any{int32(4), int32(258)}, "04000000 02010000"},
		{"spec ms", "ms", Maybe{true, "hello world"}, "68656c6c6f20776f726c6400 00"},
		{"spec aai", "aai", []any{[]any{int32(1)}, []any{int32(2), int32(3)}}, "01000000 02000000 03000000 04 0c"},

		// Empty things.
		{"empty ay", "ay", []byte{}, ""},
		{"empty as", "as", []any{}, ""},
		{"empty a{sv}", "a{sv}", []DictEntry{}, ""},
		{"empty a(uuu)", "a(uuu)", []any{}, ""},
		{"unit", "()", []any{}, "00"},
		{"array of unit", "a()", []any{[]any{}, []any{}, []any{}}, "000000"},
		{"struct of units", "(()())", []any{[]any{}, []any{}}, "0000"},
		{"tuple of empty arrays", "(ayay)", []any{[]byte{}, []byte{}}, "00"},
		{"tuple of single empty array", "(ay)", []any{[]byte{}}, ""},
		{"array of empty strings", "as", []any{"", ""}, "00 00 01 02"},
		{"array of empty arrays", "aay", []any{[]byte{}, []byte{}, []byte{}}, "000000"},

		// Fixed-size structs and their padding.
		{"(yu)", "(yu)", []any{uint8(1), uint32(2)}, "01000000 02000000"},
		{"(uy) tail padding", "(uy)", []any{uint32(2), uint8(1)}, "02000000 01000000"},
		{"(ty) tail padding", "(ty)", []any{uint64(1), uint8(2)}, "0100000000000000 02 00000000000000"},
		{"(yt)", "(yt)", []any{uint8(2), uint64(1)}, "02 00000000000000 0100000000000000"},
		{"(yy)", "(yy)", []any{uint8(1), uint8(2)}, "0102"},
		{"(qy) tail", "(qy)", []any{uint16(1), uint8(2)}, "0100 02 00"},
		{"array of (uy)", "a(uy)", []any{[]any{uint32(1), uint8(2)}, []any{uint32(3), uint8(4)}},
			"01000000 02000000 03000000 04000000"},
		{"array of (uuu)", "a(uuu)", []any{[]any{uint32(0), uint32(0), uint32(0x81a4)}}, "00000000 00000000 a4810000"},
		{"dict of fixed entries", "a{yu}", []DictEntry{{uint8(1), uint32(2)}}, "01000000 02000000"},
		{"(yv) variant alignment", "(yv)", []any{uint8(1), Variant{"t", uint64(5)}},
			"01 00000000000000 0500000000000000 00 74"},

		// Variable-size structs.
		{"(sy)", "(sy)", []any{"a", uint8(5)}, "6100 05 02"},
		{"(ys)", "(ys)", []any{uint8(5), "a"}, "05 6100"},
		{"(yay)", "(yay)", []any{uint8('x'), []byte{1, 2, 3}}, "78 010203"},
		{"(say)", "(say)", []any{"f", []byte{0xaa}}, "6600 aa 02"},
		{"(sayay)", "(sayay)", []any{"d", []byte{1}, []byte{2}}, "6400 01 02 03 02"},
		{"(ayt) variable before fixed", "(ayt)", []any{[]byte{1}, uint64(2)},
			"01 00000000000000 0200000000000000 01"},

		// Variants.
		{"variant string", "v", Variant{"s", "x"}, "7800 00 73"},
		{"variant unit", "v", Variant{"()", []any{}}, "00 00 2829"},
		{"variant in variant", "v", Variant{"v", Variant{"u", uint32(1)}}, "01000000 00 75 00 76"},
		{"variant as", "v", Variant{"as", []any{"main"}}, "6d61696e00 05 00 6173"},
		{"array of variants", "av", []any{Variant{"y", uint8(1)}, Variant{"t", uint64(2)}},
			"01 00 79 0000000000 0200000000000000 00 74 03 12"},
		{"a{sv} mixed", "a{sv}", []DictEntry{
			{"s", Variant{"s", "str"}},
			{"as", Variant{"as", []any{"a", "b"}}},
			{"t", Variant{"t", uint64(1704067200)}},
			{"b", Variant{"b", true}},
			{"y", Variant{"y", uint8('l')}},
			{"ay", Variant{"ay", []byte{1, 2, 3}}},
			{"aay", Variant{"aay", []any{[]byte{1}, []byte{}}}},
			{"nested", Variant{"a{sv}", []DictEntry{{"u", Variant{"u", uint32(3)}}}}},
			{"u", Variant{"u", uint32(7)}},
			{"i", Variant{"i", int32(-7)}},
			{"x", Variant{"x", int64(-8)}},
			{"d", Variant{"d", 2.5}},
			{"o", Variant{"o", "/a"}},
			{"g", Variant{"g", "a{sv}"}},
			{"(yay)", Variant{"(yay)", []any{uint8('x'), []byte("xz")}}},
			{"mu", Variant{"mu", Maybe{true, uint32(1)}}},
		}, ""},
		{"dict entry outside array", "{sv}", DictEntry{"k", Variant{"b", false}}, "6b00 000000000000 00 00 62 02"},
		{"dict with int keys", "a{ts}", []DictEntry{{uint64(1), "a"}, {uint64(2), ""}},
			"0100000000000000 6100 000000000000 0200000000000000 00 0a 19"},

		// Maybes.
		{"maybe nothing fixed", "mu", Maybe{}, ""},
		{"maybe just fixed", "mu", Maybe{true, uint32(5)}, "05000000"},
		{"maybe nothing variable", "ms", Maybe{}, ""},
		{"maybe just empty string", "ms", Maybe{true, ""}, "00 00"},
		{"maybe just empty array", "mas", Maybe{true, []any{}}, "00"},
		{"maybe maybe", "mmy", Maybe{true, Maybe{true, uint8(3)}}, "03 00"},
		{"maybe just nothing", "mmy", Maybe{true, Maybe{}}, "00"},
		{"array of maybes", "amy", []any{Maybe{true, uint8(1)}, Maybe{}, Maybe{true, uint8(2)}},
			"01 02 01 01 02"},
		{"maybe unit", "m()", Maybe{true, []any{}}, "00"},
		{"tuple with maybe", "(mus)", []any{Maybe{}, "a"}, "6100 00"},

		// OSTree shapes.
		{"dirmeta", "(uuua(ayay))", []any{uint32(0), uint32(0), uint32(0xed410000), []any{}},
			"00000000 00000000 000041ed"},
		{"xattrs", "a(ayay)", []any{
			[]any{[]byte("user.abc\x00"), []byte("xyz")},
			[]any{[]byte("user.foo\x00"), []byte("bar")},
		}, ""},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range roundTripCases() {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Marshal(tc.typ, tc.val)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if tc.hex != "" {
				if want := unhex(t, tc.hex); !bytes.Equal(got, want) {
					t.Fatalf("Marshal(%s) =\n  %x\nwant\n  %x", tc.typ, got, want)
				}
			}
			back, err := Unmarshal(tc.typ, got)
			if err != nil {
				t.Fatalf("Unmarshal(%x): %v", got, err)
			}
			if !reflect.DeepEqual(back, tc.val) {
				t.Fatalf("Unmarshal = %#v, want %#v", back, tc.val)
			}
		})
	}
}

// TestOffsetWidthBoundaries crosses the sizes where framing offsets grow from
// 1 to 2 to 4 bytes, in arrays and in structs.
func TestOffsetWidthBoundaries(t *testing.T) {
	cases := []struct {
		name      string
		typ       string
		val       any
		wantLen   int
		wantWidth int
	}{
		// aay with one element of n bytes: body n, one offset.
		{"array 254+1", "aay", []any{make([]byte, 254)}, 255, 1},
		{"array 255+2", "aay", []any{make([]byte, 255)}, 257, 2},
		{"array 65533+2", "aay", []any{make([]byte, 65533)}, 65535, 2},
		{"array 65534+4", "aay", []any{make([]byte, 65534)}, 65538, 4},
		// Many small elements: the table itself pushes the size over.
		{"array 127 elems", "aay", repeatBytes(127, 1), 254, 1},
		{"array 128 elems", "aay", repeatBytes(128, 1), 384, 2},
		{"array 21845 elems", "aay", repeatBytes(21845, 1), 65535, 2},
		{"array 21846 elems", "aay", repeatBytes(21846, 1), 21846 * 5, 4},
		// (ayay): one framing offset for the first member.
		{"struct 254+1", "(ayay)", []any{make([]byte, 200), make([]byte, 54)}, 255, 1},
		{"struct 255+2", "(ayay)", []any{make([]byte, 200), make([]byte, 55)}, 257, 2},
		{"struct 65533+2", "(ayay)", []any{make([]byte, 65000), make([]byte, 533)}, 65535, 2},
		{"struct 65534+4", "(ayay)", []any{make([]byte, 65000), make([]byte, 534)}, 65538, 4},
		// Strings crossing the boundary inside an as.
		{"as 255", "as", []any{strings.Repeat("a", 252), ""}, 258, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Marshal(tc.typ, tc.val)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.wantLen {
				t.Fatalf("len = %d, want %d", len(got), tc.wantLen)
			}
			if w := offsetWidthForSize(len(got)); w != tc.wantWidth {
				t.Fatalf("offset width = %d, want %d", w, tc.wantWidth)
			}
			back, err := Unmarshal(tc.typ, got)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, tc.val) {
				t.Fatal("round trip changed the value")
			}
		})
	}
}

func repeatBytes(n, size int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = make([]byte, size)
	}
	return out
}

func TestMarshalAcceptsTypedSlices(t *testing.T) {
	a, err := Marshal("as", []string{"x", "yz"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Marshal("as", []any{"x", "yz"})
	if !bytes.Equal(a, b) {
		t.Fatalf("[]string encoding %x != []any encoding %x", a, b)
	}
	a, err = Marshal("aay", [][]byte{{1}, {2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = Marshal("aay", []any{[]byte{1}, []byte{2, 3}})
	if !bytes.Equal(a, b) {
		t.Fatalf("[][]byte encoding %x != []any encoding %x", a, b)
	}
	a, err = Marshal("v", &Variant{"u", uint32(1)})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = Marshal("v", Variant{"u", uint32(1)})
	if !bytes.Equal(a, b) {
		t.Fatalf("*Variant encoding %x != Variant encoding %x", a, b)
	}
}

func TestMarshalErrors(t *testing.T) {
	cases := []struct {
		name string
		typ  string
		val  any
	}{
		{"invalid type", "z", uint8(1)},
		{"trailing type", "yy", uint8(1)},
		{"int for byte", "y", 1},
		{"uint32 for int32", "i", uint32(1)},
		{"string for ay", "ay", "abc"},
		{"[]any for ay", "ay", []any{uint8(1)}},
		{"wrong element", "as", []any{"a", uint8(1)}},
		{"[]string for au", "au", []string{"a"}},
		{"short tuple", "(yy)", []any{uint8(1)}},
		{"long tuple", "(y)", []any{uint8(1), uint8(2)}},
		{"unit with members", "()", []any{uint8(1)}},
		{"map for dict", "a{sv}", map[string]any{"a": Variant{"s", "b"}}},
		{"[]any for dict", "a{sv}", []any{DictEntry{"a", Variant{"s", "b"}}}},
		{"bad dict key", "a{sv}", []DictEntry{{uint8(1), Variant{"s", "b"}}}},
		{"raw value for v", "a{sv}", []DictEntry{{"a", "b"}}},
		{"string with NUL", "s", "a\x00b"},
		{"invalid UTF-8", "s", "\xff"},
		{"invalid object path", "o", "a/b"},
		{"object path trailing slash", "o", "/a/"},
		{"object path empty element", "o", "/a//b"},
		{"invalid signature", "g", "a{vs}"},
		{"maybe signature", "g", "my"},
		{"variant with bad type", "v", Variant{"a", []any{}}},
		{"variant with mismatched value", "v", Variant{"u", "x"}},
		{"nil variant pointer", "v", (*Variant)(nil)},
		{"not a maybe", "mu", uint32(1)},
		{"maybe with wrong value", "mu", Maybe{true, "x"}},
		{"nil", "s", nil},
		{"too deep variants", "v", nestVariants(MaxDepth + 1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Marshal(tc.typ, tc.val)
			if err == nil {
				t.Fatalf("Marshal(%q, %#v) = %x, want error", tc.typ, tc.val, b)
			}
			if !strings.HasPrefix(err.Error(), "gvariant: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

// nestVariants returns n variants nested inside each other around a byte.
func nestVariants(n int) Variant {
	v := Variant{"y", uint8(1)}
	for i := 1; i < n; i++ {
		v = Variant{"v", v}
	}
	return v
}

func TestVariantDepth(t *testing.T) {
	ok := nestVariants(MaxDepth)
	b, err := Marshal("v", ok)
	if err != nil {
		t.Fatalf("Marshal of %d nested variants: %v", MaxDepth, err)
	}
	back, err := Unmarshal("v", b)
	if err != nil {
		t.Fatalf("Unmarshal of %d nested variants: %v", MaxDepth, err)
	}
	if !reflect.DeepEqual(back, ok) {
		t.Fatal("nested variants changed")
	}
	// One level deeper, built by hand since Marshal refuses it.
	deep := append(append([]byte{}, b...), 0, 'v')
	if _, err := Unmarshal("v", deep); !errors.Is(err, ErrNotNormal) {
		t.Fatalf("Unmarshal of %d nested variants = %v, want ErrNotNormal", MaxDepth+1, err)
	}
}

func TestNotNormal(t *testing.T) {
	// Each input is one edit away from a normal form encoding.
	cases := []struct {
		name   string
		typ    string
		hex    string
		reason string
	}{
		{"non-zero padding in struct", "(yu)", "01ff0000 02000000", "padding"},
		{"non-zero tail padding", "(uy)", "02000000 01000001", "padding"},
		{"non-zero padding in array", "a(uy)", "02000000 01000100", "padding"},
		{"non-zero padding between array elements", "av", "01 00 79 00ff000000 0200000000000000 00 74 03 12", "padding"},
		{"non-zero padding before variant child", "(yv)", "01 00000000000001 0500000000000000 00 74", "padding"},
		{"unit not zero", "()", "01", "padding"},
		{"bool 2", "b", "02", "boolean"},
		{"bool ff in struct", "(bb)", "01ff", "boolean"},
		{"string without NUL", "s", "6162", "NUL-terminated"},
		{"empty string data", "s", "", "NUL-terminated"},
		{"interior NUL", "s", "610062 00", "NUL byte"},
		{"interior NUL in array", "as", "610062 00 04", "NUL byte"},
		{"invalid UTF-8", "s", "ff00", "UTF-8"},
		{"invalid object path", "o", "6100", "object path"},
		{"invalid signature", "g", "7a00", "signature"},
		{"wrong size u", "u", "010000", "size"},
		{"wrong size t", "t", "0100000000000000 00", "size"},
		{"trailing bytes after fixed struct", "(yy)", "010203", "size"},
		{"short fixed struct", "(uy)", "0200000001", "size"},
		{"fixed array not a multiple", "au", "0100000002", "multiple"},
		{"fixed struct array not a multiple", "a(uy)", "02000000 01000000 00", "multiple"},
		{"non-minimal array offsets", "aay", strings.Repeat("00", 254) + "fe00", "not minimal"},
		{"non-minimal struct offsets", "(ayay)", strings.Repeat("00", 254) + "fe00", "not minimal"},
		{"array offset beyond end", "as", "6100 09", "out of range"},
		{"array offset past table", "aay", "61 62 03", "out of range"},
		{"element offset beyond table", "aay", "6162 03 02", "out of range"},
		{"decreasing array offsets", "aay", "61626364 03 02 04", "out of range"},
		{"array table size not multiple", "aay", strings.Repeat("00", 300) + "00 2c01", "multiple"},
		{"struct offset beyond body", "(ayay)", "6162 05", "out of range"},
		{"decreasing struct offsets", "(ayayay)", "616263 01 02", "out of range"},
		{"struct too short for offsets", "(ayayay)", "00", "too short"},
		{"struct junk after last fixed member", "(sy)", "6100 05 00 02", "unused bytes"},
		{"variable struct member beyond end", "(ayt)", "01 01", "beyond the end"},
		{"variant without separator", "v", "01020304", "separator"},
		{"empty variant", "v", "", "separator"},
		{"variant with empty type", "v", "0100", "variant type"},
		{"variant with invalid type", "v", "0100 7a", "variant type"},
		{"variant with two types", "v", "0100 7979", "variant type"},
		{"variant with unbalanced type", "v", "0100 61", "variant type"},
		{"variant with too deep type", "v", "0100" + strings.Repeat("61", MaxDepth+1) + "79", "variant type"},
		{"variant trailing junk after fixed child", "v", "01000000ff 00 75", "size"},
		{"variant child not normal", "v", "02 00 62", "boolean"},
		{"dict value variant bad", "a{sv}", "6100 000000000000 01007a 02 0c", "variant type"},
		{"maybe without trailing zero", "ms", "610001", "zero byte"},
		{"maybe fixed wrong size", "mu", "0100", "size"},
		{"array claiming many elements", "aay", "ffffffffffffffffff00", "out of range"},
		{"array of huge offsets", "as", strings.Repeat("ff", 10), "out of range"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Unmarshal(tc.typ, unhex(t, tc.hex))
			if err == nil {
				t.Fatalf("Unmarshal(%q, %s) succeeded", tc.typ, tc.hex)
			}
			if !errors.Is(err, ErrNotNormal) {
				t.Fatalf("error %v is not ErrNotNormal", err)
			}
			var nn *NotNormalError
			if !errors.As(err, &nn) {
				t.Fatalf("error %v is not a *NotNormalError", err)
			}
			if !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("error %q does not mention %q", err, tc.reason)
			}
		})
	}
}

func TestUnmarshalPlainErrors(t *testing.T) {
	for _, typ := range []string{"", "z", "a", "yy", "{vs}"} {
		_, err := Unmarshal(typ, []byte{0})
		if err == nil {
			t.Errorf("Unmarshal(%q) succeeded", typ)
			continue
		}
		if errors.Is(err, ErrNotNormal) {
			t.Errorf("Unmarshal(%q) = %v: an invalid type is not a normal-form problem", typ, err)
		}
	}
}

func TestUnmarshalDoesNotAlias(t *testing.T) {
	in, err := Marshal("(ayas)", []any{[]byte{1, 2}, []any{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := Unmarshal("(ayas)", in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		in[i] = 0xee
	}
	if got := v.([]any)[0].([]byte); !bytes.Equal(got, []byte{1, 2}) {
		t.Fatalf("decoded ay changed with the input: %x", got)
	}
}

func TestErrorsCarryContext(t *testing.T) {
	_, err := Marshal("(sa{sv})", []any{"x", []DictEntry{{"k", Variant{"u", "bad"}}}})
	if err == nil {
		t.Fatal("want error")
	}
	for _, part := range []string{"(sa{sv})", "member 1", "element 0", "variant", "string", "type u"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q lacks %q", err, part)
		}
	}
	_, err = Unmarshal("(sa{sv})", unhex(t, "7800 000000000000 6b00 000000000000 01007a 02 0c 02"))
	var nn *NotNormalError
	if !errors.As(err, &nn) {
		t.Fatalf("want *NotNormalError, got %v", err)
	}
	if nn.Type != "v" || nn.Offset != 16 {
		t.Errorf("error at type %s offset %d, want v at 16", nn.Type, nn.Offset)
	}
}

// TestConcurrent exercises the shared type cache and encoder pool (run with
// -race).
func TestConcurrent(t *testing.T) {
	cases := roundTripCases()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, tc := range cases {
				b, err := Marshal(tc.typ, tc.val)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := Unmarshal(tc.typ, b); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestMarshalMismatchesDoNotPanic feeds every sample value to every sample
// type: whatever does not match must fail with an error, never a panic, and
// whatever Marshal accepts must decode back.
func TestMarshalMismatchesDoNotPanic(t *testing.T) {
	cases := roundTripCases()
	vals := []any{nil, 1, "x", []any{nil}, []DictEntry{{}}, DictEntry{}, Maybe{Valid: true}, Variant{}, []any{}, []byte(nil)}
	for _, tc := range cases {
		vals = append(vals, tc.val)
	}
	for _, tc := range cases {
		for _, v := range vals {
			b, err := Marshal(tc.typ, v)
			if err != nil {
				continue
			}
			if _, err := Unmarshal(tc.typ, b); err != nil {
				t.Errorf("Marshal(%q, %#v) = %x, which Unmarshal rejects: %v", tc.typ, v, b, err)
			}
		}
	}
}
