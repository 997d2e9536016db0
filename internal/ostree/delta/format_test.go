package delta

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// golden are the files libostree 2022.7 wrote (internal/gvariant/testdata,
// see its README): a delta from scratch with one part, and an inline one.
const golden = "../../gvariant/testdata"

func readGolden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(golden, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLibostreeDelta reads deltas `ostree static-delta generate` made:
// the superblock parses and re-encodes byte for byte, every object of the
// scratch delta's part hashes to its name, and the inline delta's part
// file matches its header.
func TestLibostreeDelta(t *testing.T) {
	b := readGolden(t, "scratch.superblock")
	sb, err := ParseSuperblock(b)
	if err != nil {
		t.Fatal(err)
	}
	if !sb.From.IsZero() || len(sb.Parts) != 1 {
		t.Fatalf("superblock: from %s, %d parts", sb.From, len(sb.Parts))
	}
	if sb.CommitMeta() == nil {
		t.Errorf("superblock carries no commitmeta")
	}
	again, err := sb.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, b) {
		t.Errorf("re-encoded superblock differs from libostree's")
	}
	// scratch.part0 is the part's payload, decompressed.
	p, err := ParsePayload(readGolden(t, "scratch.part0"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := p.Objects(sb.Parts[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != len(sb.Parts[0].Objects) || len(objs) == 0 {
		t.Fatalf("%d objects, header lists %d", len(objs), len(sb.Parts[0].Objects))
	}
	// The inline delta carries its part file in the superblock: the same
	// bytes a part file has, checked against the header as one.
	in, err := ParseSuperblock(readGolden(t, "inline.superblock"))
	if err != nil {
		t.Fatal(err)
	}
	v, ok := in.Metadata.Lookup(in.ID().PartPath(0))
	if !ok || v.Type != "(yay)" || len(in.Parts) != 1 {
		t.Fatalf("inline superblock has no part 0: %v", v)
	}
	pv := v.Value.([]any)
	file := append([]byte{pv[0].(uint8)}, pv[1].([]byte)...)
	ip, err := OpenPart(file, in.Parts[0])
	if err != nil {
		t.Fatal(err)
	}
	// libostree made C2's changed file from C1's (hello.filez) with a
	// bsdiff patch: not applied here, the caller pulls loose objects.
	if _, err := ip.Objects(in.Parts[0], nil); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("inline part ops without a read source: %v, want ErrUnsupported", err)
	}
	if _, err = ip.Objects(in.Parts[0], goldenSource(t)); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "'B'") {
		t.Fatalf("inline part ops: %v, want ErrUnsupported for bsdiff", err)
	}
}

// goldenSource serves the content of the golden .filez objects.
func goldenSource(t testing.TB) Source {
	return func(c ostree.Checksum, limit int64) ([]byte, error) {
		for _, name := range []string{"hello.filez", "link.filez", "xattr.filez"} {
			cr, err := ostree.OpenFilez(bytes.NewReader(readGolden(t, name)), c)
			if err != nil {
				continue
			}
			b, err := io.ReadAll(cr)
			if err == nil {
				return b, nil
			}
		}
		return nil, ostree.ErrNotFound
	}
}

// xzPart makes a part file of payload raw and the header vouching for it.
func xzPart(t testing.TB, raw []byte, objs []Object, usize uint64) ([]byte, PartHeader) {
	t.Helper()
	var out bytes.Buffer
	out.WriteByte(CompXZ)
	cfg := xzConfig(len(raw))
	w, err := cfg.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(raw)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b := out.Bytes()
	return b, PartHeader{Checksum: sumOf(b), Size: uint64(len(b)), USize: usize, Objects: objs}
}

// TestPartChecks: a part is refused before decompression when its size
// or checksum is not the header's, and each object must hash to its name.
func TestPartChecks(t *testing.T) {
	sb, err := ParseSuperblock(readGolden(t, "scratch.superblock"))
	if err != nil {
		t.Fatal(err)
	}
	part, h := xzPart(t, readGolden(t, "scratch.part0"), sb.Parts[0].Objects, sb.Parts[0].USize)
	flipped := append([]byte(nil), part...)
	flipped[len(flipped)/2] ^= 1
	renamed := h
	renamed.Objects = append([]Object(nil), h.Objects...)
	renamed.Objects[0].Checksum[0] ^= 1
	tooBig := h
	tooBig.Size = MaxPartSize + 1
	for _, tc := range []struct {
		name string
		b    []byte
		h    PartHeader
		want error
	}{
		{"longer", append(append([]byte(nil), part...), 0), h, ErrBadDelta},
		{"truncated", part[:len(part)-1], h, ErrBadDelta},
		{"flipped byte", flipped, h, ErrBadDelta},
		{"over the part bound", part, tooBig, ErrTooLarge},
		{"object renamed", part, renamed, ErrBadDelta},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := OpenPart(tc.b, tc.h)
			if err == nil {
				_, err = p.Objects(tc.h, nil)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// FuzzSuperblock: any bytes either fail with ErrBadDelta or parse into a
// superblock that re-encodes and parses to the same delta.
func FuzzSuperblock(f *testing.F) {
	f.Add(readGolden(f, "scratch.superblock"))
	f.Add(readGolden(f, "inline.superblock"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sb, err := ParseSuperblock(b)
		if err != nil {
			if !errors.Is(err, ErrBadDelta) {
				t.Fatalf("error %v does not wrap ErrBadDelta", err)
			}
			return
		}
		again, err := sb.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		sb2, err := ParseSuperblock(again)
		if err != nil || sb2.ID() != sb.ID() || len(sb2.Parts) != len(sb.Parts) {
			t.Fatalf("re-encoded superblock: %v", err)
		}
	})
}

// FuzzPart feeds a part file and an object list to OpenPart and
// Objects, with a header that vouches for the bytes (as a signed
// superblock would): nothing may panic, inflate past PayloadLimit, or
// return an object that does not hash to its name.
func FuzzPart(f *testing.F) {
	sb, err := ParseSuperblock(readGolden(f, "scratch.superblock"))
	if err != nil {
		f.Fatal(err)
	}
	part, _ := xzPart(f, readGolden(f, "scratch.part0"), nil, 0)
	f.Add(part, objectsBytes(sb.Parts[0].Objects), sb.Parts[0].USize)
	f.Add(append([]byte{CompNone}, readGolden(f, "scratch.part0")...), objectsBytes(sb.Parts[0].Objects), sb.Parts[0].USize)
	f.Add([]byte{0}, []byte{}, uint64(0))
	f.Fuzz(func(t *testing.T, b, objs []byte, usize uint64) {
		list, err := parseObjects(objs)
		if err != nil {
			return
		}
		h := PartHeader{Size: uint64(len(b)), USize: usize, Objects: list}
		h.Checksum = sumOf(b)
		p, err := OpenPart(b, h)
		if err != nil {
			return
		}
		out, err := p.Objects(h, nil)
		if err != nil {
			return
		}
		for _, o := range out {
			if o.Type.IsMetadata() && sumOf(o.Data) != o.Checksum {
				t.Fatalf("metadata object %s returned with other bytes", o.Checksum)
			}
			if !o.Type.IsMetadata() {
				var r *bytes.Reader
				if !o.Header.IsSymlink() {
					r = bytes.NewReader(o.Data)
				}
				var c ostree.Checksum
				if r != nil {
					c, err = ostree.ContentChecksum(o.Header, r)
				} else {
					c, err = ostree.ContentChecksum(o.Header, nil)
				}
				if err != nil || c != o.Checksum {
					t.Fatalf("content object %s returned with other bytes", o.Checksum)
				}
			}
		}
	})
}
