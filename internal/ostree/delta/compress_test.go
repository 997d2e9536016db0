package delta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// TestCompressXZ: a part compressed by the system's xz, by the pure-Go
// encoder, and by the pure-Go encoder after xz fails, opens and rebuilds
// its objects with this package's reader; xz's is smaller and the same
// bytes every time (parts are cached as immutable).
func TestCompressXZ(t *testing.T) {
	xzPath := testtool.Require(t, "xz")
	sb, err := ParseSuperblock(readGolden(t, "scratch.superblock"))
	if err != nil {
		t.Fatal(err)
	}
	h := sb.Parts[0]
	raw := readGolden(t, "scratch.part0")
	// A payload large enough for the encoders to differ: text of words
	// drawn from a small vocabulary.
	words := []string{"actualización", "escuela", "versión", "libre", "paquete", "red", "archivo", "MxOS"}
	var tb bytes.Buffer
	x := uint32(1)
	for tb.Len() < 256<<10 {
		x = x*1664525 + 1013904223
		tb.WriteString(words[x>>29])
		tb.WriteByte(" \n"[x>>28&1])
	}
	text := tb.Bytes()
	saved := systemXZ
	t.Cleanup(func() { systemXZ = saved })
	sizes := map[string]int{}
	outs := map[string][]byte{}
	for _, tc := range []struct{ name, cmd string }{
		{"system xz", xzPath},
		{"pure Go", ""},
		{"xz fails", "/bin/false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			systemXZ = func() string { return tc.cmd }
			z, err := compressXZ(context.Background(), raw)
			if err != nil {
				t.Fatal(err)
			}
			again, err := compressXZ(context.Background(), raw)
			if err != nil || !bytes.Equal(again, z) {
				t.Fatalf("a second compression differs (%v)", err)
			}
			b := append([]byte{CompXZ}, z...)
			ph := h
			ph.Checksum, ph.Size = sha256.Sum256(b), uint64(len(b))
			p, err := OpenPart(b, ph)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Objects(ph, goldenSource(t)); err != nil {
				t.Fatal(err)
			}
			outs[tc.name] = z
			big, err := compressXZ(context.Background(), text)
			if err != nil {
				t.Fatal(err)
			}
			sizes[tc.name] = len(big)
		})
	}
	if !bytes.Equal(outs["xz fails"], outs["pure Go"]) {
		t.Errorf("after xz failed the part is not the pure-Go encoder's")
	}
	if sizes["system xz"] >= sizes["pure Go"] {
		t.Errorf("xz made %d bytes, the pure-Go encoder %d: xz was not used", sizes["system xz"], sizes["pure Go"])
	}
	t.Logf("%d bytes of text: xz %d, pure Go %d", len(text), sizes["system xz"], sizes["pure Go"])
}
