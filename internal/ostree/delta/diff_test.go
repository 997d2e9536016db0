package delta

import (
	"bytes"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// TestDiffAppliesWithOneSourceRead: a file sent as many ranges of an old
// one (a changed byte every 100) rebuilds exactly, reading the old file
// once, not once per range (which made applying a package upgrade's
// delta quadratic in its binaries' sizes).
func TestDiffAppliesWithOneSourceRead(t *testing.T) {
	old := make([]byte, 64<<10)
	x := uint32(7)
	for i := range old {
		x = x*1664525 + 1013904223
		old[i] = byte(x >> 24)
	}
	data := bytes.Clone(old)
	for i := 50; i < len(data); i += 100 {
		data[i] ^= 0xff
	}
	segs := diff(old, data)
	if len(segs) < 100 {
		t.Fatalf("diff made %d segments, want one per change", len(segs))
	}
	h := &ostree.FileHeader{Mode: ostree.ModeRegular | 0o644, Size: uint64(len(data))}
	oldSum, err := ostree.ContentChecksum(&ostree.FileHeader{Mode: ostree.ModeRegular | 0o644, Size: uint64(len(old))}, bytes.NewReader(old))
	if err != nil {
		t.Fatal(err)
	}
	sum, err := ostree.ContentChecksum(h, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	pb := newPartBuilder()
	pb.addDiff(ostree.ObjectRef{Checksum: sum, Type: ostree.ObjFile}, h, oldSum, data, segs)
	pb.p.Data, pb.p.Ops = pb.data, pb.ops
	reads := 0
	src := func(c ostree.Checksum, limit int64) ([]byte, error) {
		reads++
		if c != oldSum {
			return nil, ostree.ErrNotFound
		}
		return old, nil
	}
	objs, err := pb.p.Objects(PartHeader{Objects: pb.objects}, src)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || !bytes.Equal(objs[0].Data, data) {
		t.Fatalf("rebuilt %d objects, or the wrong bytes", len(objs))
	}
	if reads != 1 {
		t.Errorf("the old file was read %d times, want once", reads)
	}
}
