package ostree

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var u0 = uint32(0)

// rootOwned makes commits independent of who runs the test, like
// `ostree commit --owner-uid=0 --owner-gid=0`.
var rootOwned = CommitOptions{OwnerUID: &u0, OwnerGID: &u0, NoXattrs: true}

// writeGoldenTree rebuilds the tree testdata/make-golden.sh committed.
func writeGoldenTree(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "golden-tree")
	mk := func(p string, mode os.FileMode) {
		if err := os.MkdirAll(filepath.Join(d, p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(d, p), mode); err != nil {
			t.Fatal(err)
		}
	}
	file := func(p, content string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(d, p), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(d, p), mode); err != nil {
			t.Fatal(err)
		}
	}
	mk(".", 0o755)
	mk("usr/bin", 0o755)
	mk("usr", 0o755)
	mk("etc", 0o755)
	mk("empty", 0o700)
	mk("año", 0o755)
	file("etc/motd", "hello world\n", 0o644)
	file("usr/bin/hola", "#!/bin/sh\necho hola\n", 0o755)
	file("etc/empty-file", "", 0o600)
	file("año/niño ñ.txt", "niño\n", 0o644)
	if err := os.Symlink("../etc/motd", filepath.Join(d, "usr/motd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/motd", filepath.Join(d, "abs-link")); err != nil {
		t.Fatal(err)
	}
	return d
}

func goldenRepo(t *testing.T) *Repo {
	t.Helper()
	r, err := Open("testdata/golden-repo")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newRepo(t *testing.T) *Repo {
	t.Helper()
	r, err := Create(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// commitDir commits dir and points ref "test" at it.
func commitDir(t *testing.T, r *Repo, dir string, opts CommitOptions) Checksum {
	t.Helper()
	txn, err := r.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	tree, meta, err := txn.WriteTreeFromDir(context.Background(), dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	c, err := txn.WriteCommit(&Commit{Subject: "test", Timestamp: 1, RootTree: tree, RootMeta: meta})
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := txn.SetRef("test", c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestGoldenCommitParses(t *testing.T) {
	r := goldenRepo(t)
	c, err := r.ResolveRef("golden")
	if err != nil {
		t.Fatal(err)
	}
	cm, err := r.ReadCommit(c)
	if err != nil {
		t.Fatal(err)
	}
	if cm.Subject != "golden" || cm.Version() != "1.0" || cm.Timestamp != 1704067200 {
		t.Errorf("commit = %q %q %d", cm.Subject, cm.Version(), cm.Timestamp)
	}
	if got := cm.RefBindings(); len(got) != 1 || got[0] != "golden" {
		t.Errorf("ref binding = %v", got)
	}
	b, _ := r.ReadMetadata(c, ObjCommit)
	again, err := cm.Marshal()
	if err != nil || !bytes.Equal(again, b) {
		t.Errorf("commit does not re-encode to the same bytes (err %v)", err)
	}
	rep, err := r.Fsck(context.Background(), FsckOptions{})
	if err != nil || len(rep.Errors) != 0 {
		t.Fatalf("fsck of ostree's repo: %v %v", err, rep.Errors)
	}
	if rep.Objects != 15 {
		t.Errorf("fsck checked %d objects, want 15", rep.Objects)
	}
}

// The same tree committed by us gives the checksums ostree gave.
func TestCommitMatchesOstree(t *testing.T) {
	golden := goldenRepo(t)
	gc, _ := golden.ResolveRef("golden")
	want, _ := golden.ReadCommit(gc)

	r := newRepo(t)
	c := commitDir(t, r, writeGoldenTree(t), rootOwned)
	got, _ := r.ReadCommit(c)
	if got.RootTree != want.RootTree || got.RootMeta != want.RootMeta {
		t.Fatalf("root = %s/%s, ostree wrote %s/%s", got.RootTree, got.RootMeta, want.RootTree, want.RootMeta)
	}
	// Content objects are not byte-identical (another deflate), but their
	// names are, and each of ours must decode.
	objs, err := r.Reachable(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if !golden.HasObject(o.Checksum, o.Type) {
			t.Errorf("%s.%s not in ostree's repo", o.Checksum, o.Type)
		}
	}
	// Same commit fields give the same commit checksum.
	cm := *want
	tx, _ := r.Begin()
	defer tx.Close()
	c2, err := tx.WriteCommit(&cm)
	if err != nil || c2 != gc {
		t.Fatalf("re-made commit %s, want %s (%v)", c2, gc, err)
	}
}

func TestTarballsMatchDirectory(t *testing.T) {
	src := writeGoldenTree(t)
	r := newRepo(t)
	dirCommit := commitDir(t, r, src, rootOwned)
	want, _ := r.ReadCommit(dirCommit)
	for _, tc := range []struct{ name, ext string }{{"tar", ".tar"}, {"gzip", ".tar.gz"}, {"zstd", ".tar.zst"}} {
		t.Run(tc.name, func(t *testing.T) {
			tarball := filepath.Join(t.TempDir(), "tree"+tc.ext)
			writeTarOfDir(t, src, tarball)
			tree, meta := commitTar(t, r, tarball, rootOwned)
			if tree != want.RootTree || meta != want.RootMeta {
				t.Fatalf("tar root %s/%s, dir root %s/%s", tree, meta, want.RootTree, want.RootMeta)
			}
		})
	}
}

func commitTar(t *testing.T, r *Repo, path string, opts CommitOptions) (Checksum, Checksum) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	txn, err := r.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	tree, meta, err := txn.WriteTreeFromTar(context.Background(), f, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	return tree, meta
}

func TestCheckoutRoundTrip(t *testing.T) {
	src := writeGoldenTree(t)
	r := newRepo(t)
	c := commitDir(t, r, src, CommitOptions{NoXattrs: true})
	dest := filepath.Join(t.TempDir(), "co")
	if err := r.Checkout(context.Background(), c, dest, CheckoutOptions{}); err != nil {
		t.Fatal(err)
	}
	if a, b := treeListing(t, src), treeListing(t, dest); a != b {
		t.Fatalf("checkout differs:\n%s\n---\n%s", a, b)
	}
	if err := r.Checkout(context.Background(), c, dest, CheckoutOptions{}); err == nil {
		t.Fatal("checkout over an existing directory succeeded")
	}
}

// treeListing describes a tree: path, mode, size, content or link target.
func treeListing(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		line := rel + " " + info.Mode().String()
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case info.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			line += " " + string(b)
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func TestImportFromOstreeRepoKeepsChecksum(t *testing.T) {
	r := newRepo(t)
	txn, err := r.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	c, err := txn.ImportCommit(context.Background(), "testdata/golden-repo", "golden")
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	want, _ := goldenRepo(t).ResolveRef("golden")
	if c != want {
		t.Fatalf("imported %s, want %s", c, want)
	}
	if err := txn.SetRef("golden", c); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Fsck(context.Background(), FsckOptions{})
	if err != nil || len(rep.Errors) != 0 {
		t.Fatalf("fsck: %v %v", err, rep.Errors)
	}
}

func TestSetRefRefusesIncompleteCommit(t *testing.T) {
	r := newRepo(t)
	c := commitDir(t, r, writeGoldenTree(t), rootOwned)
	objs, _ := r.Reachable(c)
	var victim ObjectRef
	for _, o := range objs {
		if o.Type == ObjFile {
			victim = o
			break
		}
	}
	if err := os.Remove(r.objectFile(victim.Checksum, victim.Type)); err != nil {
		t.Fatal(err)
	}
	txn, _ := r.Begin()
	defer txn.Close()
	err := txn.SetRef("other", c)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetRef on incomplete commit: %v", err)
	}
	if _, err := r.ResolveRef("other"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ref was created: %v", err)
	}
}

// Corrupting any stored object is caught by reads and by fsck.
func TestCorruptObjectsDetected(t *testing.T) {
	kinds := []struct {
		name string
		typ  ObjectType
		mut  func([]byte) []byte
	}{
		{"flip-commit", ObjCommit, flipLast},
		{"flip-dirtree", ObjDirTree, flipLast},
		{"flip-dirmeta", ObjDirMeta, flipLast},
		// The middle of the deflate stream: the last byte may hold only
		// padding bits, which no inflater reads (nor does ostree).
		{"flip-filez-data", ObjFile, func(b []byte) []byte { b[len(b)-4] ^= 0x40; return b }},
		{"flip-filez-header", ObjFile, func(b []byte) []byte { b[12] ^= 1; return b }},
		{"truncate-filez", ObjFile, func(b []byte) []byte { return b[:len(b)-3] }},
		{"truncate-dirtree", ObjDirTree, func(b []byte) []byte { return b[:len(b)/2] }},
		{"append-filez", ObjFile, func(b []byte) []byte { return append(b, 0) }},
		{"empty-commit", ObjCommit, func([]byte) []byte { return nil }},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			r := newRepo(t)
			c := commitDir(t, r, writeGoldenTree(t), rootOwned)
			var victim ObjectRef
			if k.typ == ObjCommit {
				victim = ObjectRef{c, ObjCommit}
			} else {
				objs, _ := r.Reachable(c)
				for _, o := range objs {
					if o.Type != k.typ {
						continue
					}
					// Pick a regular file with content for filez cases.
					if o.Type == ObjFile {
						cr, err := r.OpenContent(o.Checksum)
						if err != nil {
							t.Fatal(err)
						}
						ok := !cr.Header.IsSymlink() && cr.Header.Size > 4
						cr.Close()
						if !ok {
							continue
						}
					}
					victim = o
					break
				}
			}
			p := r.objectFile(victim.Checksum, victim.Type)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, k.mut(b), 0o644); err != nil {
				t.Fatal(err)
			}
			var rerr error
			switch victim.Type {
			case ObjFile:
				_, rerr = r.VerifyContent(victim.Checksum)
			default:
				_, rerr = r.ReadMetadata(victim.Checksum, victim.Type)
			}
			if !errors.Is(rerr, ErrCorrupt) {
				t.Errorf("read of corrupted object: %v, want ErrCorrupt", rerr)
			}
			rep, err := r.Fsck(context.Background(), FsckOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Errors) == 0 {
				t.Fatal("fsck found nothing")
			}
			if !strings.Contains(rep.Errors[0].Error(), victim.Checksum.String()) {
				t.Errorf("fsck error does not name the object: %v", rep.Errors[0])
			}
			dest := filepath.Join(t.TempDir(), "co")
			if err := r.Checkout(context.Background(), c, dest, CheckoutOptions{}); err == nil {
				t.Error("checkout of a corrupt commit succeeded")
			}
			if _, err := os.Lstat(dest); !errors.Is(err, fs.ErrNotExist) {
				t.Error("failed checkout left its destination behind")
			}
		})
	}
}

func flipLast(b []byte) []byte {
	b[len(b)-1] ^= 0x40
	return b
}

func TestObjectUnderWrongChecksum(t *testing.T) {
	r := newRepo(t)
	c := commitDir(t, r, writeGoldenTree(t), rootOwned)
	objs, _ := r.Reachable(c)
	var files []ObjectRef
	var trees []ObjectRef
	for _, o := range objs {
		switch o.Type {
		case ObjFile:
			files = append(files, o)
		case ObjDirTree:
			trees = append(trees, o)
		}
	}
	for _, pair := range [][]ObjectRef{files[:2], trees[:2]} {
		a, b := pair[0], pair[1]
		data, _ := os.ReadFile(r.objectFile(a.Checksum, a.Type))
		os.WriteFile(r.objectFile(b.Checksum, b.Type), data, 0o644)
		var err error
		if b.Type == ObjFile {
			_, err = r.VerifyContent(b.Checksum)
		} else {
			_, err = r.ReadMetadata(b.Checksum, b.Type)
		}
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s stored under %s: %v", a.Checksum, b.Checksum, err)
		}
	}
}

func TestWritesVerifyBeforeStoring(t *testing.T) {
	r := newRepo(t)
	before := listObjects(t, r)
	txn, _ := r.Begin()
	dm := &DirMeta{Mode: ModeDir | 0o755}
	b, _ := dm.Marshal()
	var wrong Checksum
	wrong[0] = 1
	if _, err := txn.WriteMetadata(ObjDirMeta, b, wrong); !errors.Is(err, ErrCorrupt) {
		t.Errorf("WriteMetadata with a wrong checksum: %v", err)
	}
	if _, err := txn.WriteMetadata(ObjDirTree, []byte{1, 2, 3}, Checksum{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("WriteMetadata of garbage: %v", err)
	}
	h := &FileHeader{Mode: ModeRegular | 0o644, Size: 5}
	if _, err := txn.WriteContent(h, strings.NewReader("hello"), wrong); !errors.Is(err, ErrCorrupt) {
		t.Errorf("WriteContent with a wrong checksum: %v", err)
	}
	if _, err := txn.WriteContent(h, strings.NewReader("hell"), Checksum{}); err == nil {
		t.Error("WriteContent of a short file succeeded")
	}
	var buf bytes.Buffer
	good, _ := writeFilez(&buf, h, strings.NewReader("hello"))
	raw := buf.Bytes()
	if err := txn.WriteFilez(wrong, bytes.NewReader(raw)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("WriteFilez under a wrong checksum: %v", err)
	}
	if err := txn.WriteFilez(good, bytes.NewReader(raw[:len(raw)-2])); !errors.Is(err, ErrCorrupt) {
		t.Errorf("WriteFilez of a truncated object: %v", err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	txn.Close()
	if after := listObjects(t, r); after != before {
		t.Fatalf("objects changed:\n%s\n---\n%s", before, after)
	}
}

func listObjects(t *testing.T, r *Repo) string {
	t.Helper()
	var out []string
	filepath.WalkDir(filepath.Join(r.Path(), "objects"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	refs, _ := r.ListRefs()
	for k, v := range refs {
		out = append(out, k+"="+v.String())
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func TestContentReaderLimits(t *testing.T) {
	h := &FileHeader{Mode: ModeRegular | 0o644, Size: 10}
	var buf bytes.Buffer
	// A header that admits 10 bytes over a stream of 10 MiB of zeros: the
	// reader must stop at the declared size and report the excess.
	if _, err := writeFilezUnchecked(&buf, h, bytes.NewReader(make([]byte, 10<<20))); err != nil {
		t.Fatal(err)
	}
	cr, err := OpenFilez(bytes.NewReader(buf.Bytes()), Checksum{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, cr)
	if !errors.Is(err, ErrCorrupt) || n > 10 {
		t.Fatalf("bomb: read %d bytes, err %v", n, err)
	}
	// Header claims more than the stream holds.
	buf.Reset()
	h.Size = 1000
	writeFilezUnchecked(&buf, h, bytes.NewReader(make([]byte, 10)))
	cr, _ = OpenFilez(bytes.NewReader(buf.Bytes()), Checksum{})
	if _, err := io.Copy(io.Discard, cr); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short stream: %v", err)
	}
	// A header length beyond the limit is refused before allocating it.
	huge := []byte{0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0}
	if _, err := OpenFilez(bytes.NewReader(huge), Checksum{}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("huge header: %v", err)
	}
}

// writeFilezUnchecked writes a .filez whose header size may lie.
func writeFilezUnchecked(w io.Writer, h *FileHeader, content io.Reader) (int64, error) {
	real := *h
	data, _ := io.ReadAll(content)
	real.Size = uint64(len(data))
	var body bytes.Buffer
	if _, err := writeFilez(&body, &real, bytes.NewReader(data)); err != nil {
		return 0, err
	}
	// Swap in the lying header, keep the deflate stream.
	b := body.Bytes()
	n := int(b[3]) | int(b[2])<<8
	stream := b[8+n:]
	ahdr, _ := h.MarshalArchiveHeader()
	pre := []byte{0, 0, byte(len(ahdr) >> 8), byte(len(ahdr)), 0, 0, 0, 0}
	out := append(append(pre, ahdr...), stream...)
	m, err := w.Write(out)
	return int64(m), err
}

func TestValidateNames(t *testing.T) {
	bad := []string{"", ".", "..", "a/b", "a\x00b", "\xff"}
	for _, n := range bad {
		if err := ValidateFilename(n); !errors.Is(err, ErrBadName) {
			t.Errorf("ValidateFilename(%q) = %v", n, err)
		}
	}
	for _, n := range []string{"a", "...", "niño ñ", ".hidden"} {
		if err := ValidateFilename(n); err != nil {
			t.Errorf("ValidateFilename(%q) = %v", n, err)
		}
	}
	for _, r := range []string{"", "/a", "a/", "a//b", "a/../b", "-a", "a b"} {
		if err := ValidateRef(r); err == nil {
			t.Errorf("ValidateRef(%q) accepted", r)
		}
	}
	for _, r := range []string{"mxos/10/x86_64/stable", "main", "a.b-c_d"} {
		if err := ValidateRef(r); err != nil {
			t.Errorf("ValidateRef(%q) = %v", r, err)
		}
	}
}

func TestSymlinkEscapes(t *testing.T) {
	cases := []struct {
		dir, target string
		escapes     bool
	}{
		{"", "a", false},
		{"", "../a", true},
		{"usr", "../etc/motd", false},
		{"usr", "../../etc", true},
		{"usr/lib", "../../x", false},
		{"usr/lib", "a/../../../x", false},
		{"usr/lib", "a/../../../../x", true},
		{"", "/etc/passwd", false},
		{"a", "./.././b", false},
	}
	for _, c := range cases {
		if got := SymlinkEscapes(c.dir, c.target); got != c.escapes {
			t.Errorf("SymlinkEscapes(%q, %q) = %v", c.dir, c.target, got)
		}
	}
}
