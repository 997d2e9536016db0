package ostree

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// uploadSource commits the golden tree into a fresh repository and returns
// it with the commit and every object a client would send for it.
func uploadSource(t *testing.T) (*Repo, Checksum, []ObjectRef) {
	t.Helper()
	src := newRepo(t)
	c := commitDir(t, src, writeGoldenTree(t), rootOwned)
	objs, err := src.Reachable(c)
	if err != nil {
		t.Fatal(err)
	}
	return src, c, append(objs, ObjectRef{c, ObjCommit})
}

func rawObject(t *testing.T, r *Repo, o ObjectRef) []byte {
	t.Helper()
	b, err := os.ReadFile(r.objectFile(o.Checksum, o.Type))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func stagedNames(t *testing.T, u *Upload) []string {
	t.Helper()
	ents, err := os.ReadDir(u.dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestUploadHappyPathAndResume(t *testing.T) {
	src, c, objs := uploadSource(t)
	dst := newRepo(t)
	u, err := dst.NewUpload()
	if err != nil {
		t.Fatal(err)
	}
	half := len(objs) / 2
	for _, o := range objs[:half] {
		if err := u.Put(o.Checksum, o.Type, bytes.NewReader(rawObject(t, src, o)), 0); err != nil {
			t.Fatalf("put %v: %v", o, err)
		}
	}
	// "Interruption": a writer's transaction in between must leave the
	// session alone, and the session re-opens by id.
	txn, err := dst.Begin()
	if err != nil {
		t.Fatal(err)
	}
	txn.Close()
	u2, err := dst.OpenUpload(u.ID())
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range objs {
		if got, want := u2.Has(o.Checksum, o.Type), i < half; got != want {
			t.Fatalf("Has(%v) = %v after resume, want %v", o, got, want)
		}
	}
	for _, o := range objs[half:] {
		if err := u2.Put(o.Checksum, o.Type, bytes.NewReader(rawObject(t, src, o)), 1<<20); err != nil {
			t.Fatalf("put %v: %v", o, err)
		}
	}
	if dst.HasObject(c, ObjCommit) {
		t.Fatal("commit visible before the session is committed")
	}
	if err := u2.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := dst.CheckComplete(c); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.OpenUpload(u.ID()); !errors.Is(err, ErrNoUpload) {
		t.Fatalf("session still open after commit: %v", err)
	}
	txn, err = dst.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.SetRef("test", c); err != nil {
		t.Fatal(err)
	}
	txn.Close()
	rep, err := dst.Fsck(context.Background(), FsckOptions{})
	if err != nil || len(rep.Errors) != 0 {
		t.Fatalf("fsck: %v %v", err, rep.Errors)
	}
	if rep.Objects == 0 {
		t.Fatal("fsck checked nothing")
	}

	// A second session for the same commit stages nothing: all is stored.
	u3, err := dst.NewUpload()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if err := u3.Put(o.Checksum, o.Type, strings.NewReader("not read"), 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := stagedNames(t, u3); len(n) != 0 {
		t.Fatalf("staged %v although the repository has them", n)
	}
	if err := u3.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestUploadRefusesWrongObjects(t *testing.T) {
	src, _, objs := uploadSource(t)
	var meta, file, other ObjectRef
	for _, o := range objs {
		switch {
		case o.Type == ObjDirTree && meta.Checksum.IsZero():
			meta = o
		case o.Type == ObjFile:
			// The largest content object is a regular file with a deflate
			// stream; any other one serves as a wrong name.
			if file.Checksum.IsZero() || len(rawObject(t, src, o)) > len(rawObject(t, src, file)) {
				if !file.Checksum.IsZero() {
					other = file
				}
				file = o
			} else {
				other = o
			}
		}
	}
	dst := newRepo(t)
	u, err := dst.NewUpload()
	if err != nil {
		t.Fatal(err)
	}
	mb, fb := rawObject(t, src, meta), rawObject(t, src, file)
	var zero Checksum
	cases := []struct {
		name string
		o    ObjectRef
		data []byte
		max  int64
		want error
	}{
		{"metadata flipped", meta, flipAt(mb, len(mb)-1), 0, ErrCorrupt},
		{"metadata truncated", meta, mb[:len(mb)-1], 0, ErrCorrupt},
		{"metadata under another name", ObjectRef{other.Checksum, ObjDirTree}, mb, 0, ErrCorrupt},
		{"metadata as another type", ObjectRef{meta.Checksum, ObjCommit}, mb, 0, ErrCorrupt},
		{"metadata too large", meta, mb, int64(len(mb) - 1), ErrTooLarge},
		// Not the last byte: it may hold only padding bits of the deflate
		// stream, and a content object is named by its uncompressed bytes.
		{"content flipped", file, flipAt(fb, len(fb)-4), 0, ErrCorrupt},
		{"content header flipped", file, flipAt(fb, 12), 0, ErrCorrupt},
		{"content truncated", file, fb[:len(fb)-3], 0, ErrCorrupt},
		{"content with junk after", file, append(append([]byte{}, fb...), 0), 0, ErrCorrupt},
		{"content under another name", ObjectRef{other.Checksum, ObjFile}, fb, 0, ErrCorrupt},
		{"content too large", file, fb, int64(len(fb) - 1), ErrTooLarge},
		{"content empty", file, nil, 0, ErrCorrupt},
		{"commitmeta", ObjectRef{meta.Checksum, ObjCommitMeta}, mb, 0, ErrBadName},
		{"zero name", ObjectRef{zero, ObjDirTree}, mb, 0, ErrCorrupt},
	}
	for _, tc := range cases {
		err := u.Put(tc.o.Checksum, tc.o.Type, bytes.NewReader(tc.data), tc.max)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
		if u.Has(tc.o.Checksum, tc.o.Type) {
			t.Errorf("%s: staged", tc.name)
		}
	}
	if n := stagedNames(t, u); len(n) != 0 {
		t.Fatalf("left in the session: %v", n)
	}
	// The right bytes are still accepted afterwards.
	if err := u.Put(file.Checksum, ObjFile, bytes.NewReader(fb), int64(len(fb))); err != nil {
		t.Fatal(err)
	}
	if !u.Has(file.Checksum, ObjFile) {
		t.Fatal("good object not staged")
	}
}

func TestUploadIDsAndNames(t *testing.T) {
	r := newRepo(t)
	u, err := r.NewUpload()
	if err != nil {
		t.Fatal(err)
	}
	// A directory an attacker might aim at: it exists, but is no session.
	os.MkdirAll(filepath.Join(r.path, "tmp", "uploads", "x"), 0o755)
	for _, id := range []string{"", "..", "../..", "x", "../uploads/" + u.ID(), strings.ToUpper(u.ID()),
		u.ID() + "/", u.ID()[:31], u.ID() + "0", "/" + u.ID()[1:], strings.Repeat("0", 32)} {
		if _, err := r.OpenUpload(id); !errors.Is(err, ErrNoUpload) {
			t.Errorf("OpenUpload(%q) = %v, want ErrNoUpload", id, err)
		}
	}
	if _, err := r.OpenUpload(u.ID()); err != nil {
		t.Fatal(err)
	}
	good := strings.Repeat("ab", 32)
	for _, name := range []string{good + ".commit", good + ".dirtree", good + ".dirmeta", good + ".filez"} {
		if _, _, err := ParseObjectName(name); err != nil {
			t.Errorf("ParseObjectName(%q): %v", name, err)
		}
	}
	for _, name := range []string{"", good, good + ".commitmeta", good + ".file", strings.ToUpper(good) + ".commit",
		good[:63] + ".commit", "../" + good[3:] + ".commit", good + ".commit.x", good + ".filez/"} {
		if _, _, err := ParseObjectName(name); !errors.Is(err, ErrBadName) {
			t.Errorf("ParseObjectName(%q) = %v, want ErrBadName", name, err)
		}
	}
}

func TestCleanUploads(t *testing.T) {
	r := newRepo(t)
	old, _ := r.NewUpload()
	fresh, _ := r.NewUpload()
	past := time.Now().Add(-UploadMaxAge - time.Hour)
	if err := os.Chtimes(old.dir, past, past); err != nil {
		t.Fatal(err)
	}
	n, err := r.CleanUploads(time.Now())
	if err != nil || n != 1 {
		t.Fatalf("CleanUploads = %d, %v", n, err)
	}
	if _, err := r.OpenUpload(old.ID()); !errors.Is(err, ErrNoUpload) {
		t.Fatal("old session kept")
	}
	if _, err := r.OpenUpload(fresh.ID()); err != nil {
		t.Fatal("fresh session removed")
	}
	// Put into a removed session fails cleanly.
	if err := old.Put(Checksum{1}, ObjFile, strings.NewReader("x"), 0); !errors.Is(err, ErrNoUpload) {
		t.Fatalf("put into removed session: %v", err)
	}
}

func flipAt(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x10
	return c
}

// A commit uploaded without its tree never becomes visible: stock
// `ostree fsck` checks every commit object, referenced or not.
func TestUploadCommitWithoutTreeRefused(t *testing.T) {
	src := newRepo(t)
	c := commitDir(t, src, writeGoldenTree(t), rootOwned)
	cb, err := src.ReadMetadata(c, ObjCommit)
	if err != nil {
		t.Fatal(err)
	}
	dst := newRepo(t)
	up, err := dst.NewUpload()
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Put(c, ObjCommit, bytes.NewReader(cb), int64(len(cb))); err != nil {
		t.Fatal(err)
	}
	err = up.Commit()
	if err == nil || !strings.Contains(err.Error(), "incomplete tree") {
		t.Fatalf("Commit = %v, want an incomplete-tree error", err)
	}
	if dst.HasObject(c, ObjCommit) {
		t.Fatal("the commit became visible without its tree")
	}
}

// A dirtree larger than devices accept (ostree.DeviceLimit) parses, but
// neither an upload nor a local write may store it: a release holding it
// could be published and then refused by every device.
func TestMetadataPastDeviceLimitRefused(t *testing.T) {
	var d DirTree
	for i := 0; int64(i)*40 <= MaxDirTreeSize; i++ {
		d.Files = append(d.Files, TreeFile{Name: fmt.Sprintf("file-%07d", i), Checksum: Checksum{byte(i), byte(i >> 8), byte(i >> 16)}})
	}
	data, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) <= MaxDirTreeSize {
		t.Fatalf("test dirtree is %d bytes, not past the limit", len(data))
	}
	c := Checksum(sha256.Sum256(data))
	r := newRepo(t)
	u, err := r.NewUpload()
	if err != nil {
		t.Fatal(err)
	}
	err = u.Put(c, ObjDirTree, bytes.NewReader(data), MaxMetadataSize)
	if !errors.Is(err, ErrTooLarge) || u.Has(c, ObjDirTree) {
		t.Errorf("upload: err = %v, staged %v; want ErrTooLarge, nothing staged", err, u.Has(c, ObjDirTree))
	}
	txn, err := r.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	if _, err := txn.WriteMetadata(ObjDirTree, data, c); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "larger than devices accept") {
		t.Errorf("local write: err = %v, want ErrTooLarge saying devices refuse it", err)
	}
	if r.HasObject(c, ObjDirTree) || txn.HasObject(c, ObjDirTree) {
		t.Error("the dirtree was stored")
	}
	// Just under the limit is still accepted.
	d.Files = d.Files[:len(d.Files)/2]
	small, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := txn.WriteMetadata(ObjDirTree, small, Checksum{}); err != nil {
		t.Errorf("a dirtree of %d bytes refused: %v", len(small), err)
	}
}
