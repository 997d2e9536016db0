package gvariant

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// fuzzTypes are the type strings the fuzz targets start from: every OSTree
// object type plus small types that reach each code path.
var fuzzTypes = []string{
	commitType, dirtreeType, dirmetaType, fileHeaderType, filezType, summaryType,
	superblockType, deltaPartType, "a{sv}", "(yay)", "v", "av", "as", "aay",
	"(yu)", "(uy)", "a(uy)", "(sy)", "(ayt)", "mv", "ms", "mu", "amy", "()", "a()",
	"{sv}", "a{ts}", "(bnqiuxthd)", "(sog)",
}

func addFuzzSeeds(f *testing.F) {
	fixtures := map[string]string{
		"commit1.commit": commitType, "commit2.commit": commitType,
		"commit1.commitmeta": "a{sv}", "summary.sig": "a{sv}", "delta.index": "a{sv}",
		"root.dirtree": dirtreeType, "sub.dirtree": dirtreeType, "root.dirmeta": dirmetaType,
		"summary": summaryType, "scratch.superblock": superblockType,
		"inline.superblock": superblockType, "scratch.part0": deltaPartType,
	}
	for name, typ := range fixtures {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(typ, b)
		f.Add("v", append(append(b, 0), typ...))
	}
	for _, name := range []string{"hello.filez", "link.filez", "xattr.filez"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(filezType, filezHeader(f, b))
	}
	for _, tc := range roundTripCases() {
		b, err := Marshal(tc.typ, tc.val)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tc.typ, b)
	}
	for _, typ := range fuzzTypes {
		f.Add(typ, []byte{})
		f.Add(typ, []byte{0})
		f.Add(typ, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	}
}

// FuzzUnmarshal checks that hostile input never panics and that whatever
// Unmarshal accepts is canonical: Marshal reproduces it byte for byte.
func FuzzUnmarshal(f *testing.F) {
	addFuzzSeeds(f)
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		if len(typ) > 512 || ValidateType(typ) != nil {
			return
		}
		v, err := Unmarshal(typ, data)
		if err != nil {
			return
		}
		out, err := Marshal(typ, v)
		if err != nil {
			t.Fatalf("Marshal(%q) of an accepted value: %v", typ, err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("Marshal(%q) = %x, input was %x", typ, out, data)
		}
	})
}

// FuzzVariant wraps arbitrary bytes in variants, so that the fuzzer also
// chooses the type strings found inside the data.
func FuzzVariant(f *testing.F) {
	f.Add([]byte("\x01\x00y"))
	f.Add([]byte("a\x00\x00s"))
	f.Add([]byte("\x00\x00()"))
	f.Add([]byte("\x01\x00\x00\x00\x00u\x00v"))
	for _, tc := range roundTripCases() {
		b, err := Marshal(tc.typ, tc.val)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append(append(b, 0), tc.typ...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, typ := range []string{"v", "av", "a{sv}", "(vv)"} {
			v, err := Unmarshal(typ, data)
			if err != nil {
				continue
			}
			out, err := Marshal(typ, v)
			if err != nil {
				t.Fatalf("Marshal(%q) of an accepted value: %v", typ, err)
			}
			if !bytes.Equal(out, data) {
				t.Fatalf("Marshal(%q) = %x, input was %x", typ, out, data)
			}
		}
	})
}

// FuzzValidateType checks that the type parser never panics and that the
// cache hands back the type that was asked for.
func FuzzValidateType(f *testing.F) {
	for _, typ := range fuzzTypes {
		f.Add(typ)
	}
	f.Add("a{vs}")
	f.Add("((((")
	f.Fuzz(func(t *testing.T, typ string) {
		if ValidateType(typ) != nil {
			return
		}
		ti, err := lookupType(typ)
		if err != nil {
			t.Fatalf("ValidateType accepted %q but lookupType: %v", typ, err)
		}
		if ti.str != typ {
			t.Fatalf("lookupType(%q).str = %q", typ, ti.str)
		}
	})
}
