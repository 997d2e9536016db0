package ostree

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/mxos-linux/mxos-update/internal/gvariant"
)

// writeTarOfDir archives dir (owners as root) into path, compressed by
// the path's extension.
func writeTarOfDir(t *testing.T, dir, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var w io.Writer = f
	var closer io.Closer
	switch {
	case strings.HasSuffix(path, ".gz"):
		zw := gzip.NewWriter(f)
		w, closer = zw, zw
	case strings.HasSuffix(path, ".zst"):
		zw, _ := zstd.NewWriter(f)
		w, closer = zw, zw
	}
	tw := tar.NewWriter(w)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, _ := os.Lstat(p)
		link := ""
		if info.Mode()&os.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = "./" + filepath.ToSlash(rel)
		if d.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			_, err = tw.Write(b)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if closer != nil {
		closer.Close()
	}
}

type tarEntry struct {
	name, link string
	typ        byte
	body       string
	mode       int64
}

func makeTar(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: mode, Size: int64(len(e.body)), Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func TestHostileTarballsRefused(t *testing.T) {
	ok := tarEntry{name: "etc/ok", typ: tar.TypeReg, body: "fine"}
	cases := []struct {
		name    string
		entries []tarEntry
		want    string
	}{
		{"dotdot-path", []tarEntry{ok, {name: "../evil", typ: tar.TypeReg, body: "x"}}, "leaves the tree"},
		{"dotdot-inside", []tarEntry{ok, {name: "etc/../../evil", typ: tar.TypeReg, body: "x"}}, "leaves the tree"},
		{"absolute-path", []tarEntry{ok, {name: "/etc/shadow", typ: tar.TypeReg, body: "x"}}, "absolute path"},
		{"absolute-hardlink", []tarEntry{ok, {name: "etc/pw", typ: tar.TypeLink, link: "/etc/passwd"}}, "is absolute"},
		{"dotdot-hardlink", []tarEntry{ok, {name: "etc/pw", typ: tar.TypeLink, link: "../etc/passwd"}}, "leaves the tree"},
		{"dangling-hardlink", []tarEntry{ok, {name: "etc/pw", typ: tar.TypeLink, link: "etc/nothing"}}, "names no earlier regular file"},
		{"escaping-symlink", []tarEntry{ok, {name: "etc/up", typ: tar.TypeSymlink, link: "../../../root"}}, "points outside the tree"},
		{"file-under-symlink", []tarEntry{{name: "etc", typ: tar.TypeReg, body: "x"}, {name: "etc/passwd", typ: tar.TypeReg, body: "y"}}, "is a file, not a directory"},
		{"device-node", []tarEntry{ok, {name: "dev/null", typ: tar.TypeChar}}, "device node"},
		{"truncated", nil, "tarball"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRepo(t)
			commitDir(t, r, writeGoldenTree(t), rootOwned)
			before := listObjects(t, r)
			data := makeTar(t, c.entries)
			if c.entries == nil {
				full := makeTar(t, []tarEntry{{name: "big", typ: tar.TypeReg, body: strings.Repeat("z", 5000)}})
				data = full[:1500]
			}
			txn, err := r.Begin()
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = txn.WriteTreeFromTar(context.Background(), bytes.NewReader(data), rootOwned)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to say %q", err, c.want)
			}
			txn.Close()
			if after := listObjects(t, r); after != before {
				t.Fatal("a refused tarball changed the repository")
			}
		})
	}
}

func TestTarHardlinksAndXattrs(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "usr/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "usr/a", Typeflag: tar.TypeReg, Mode: 0o4755, Size: 3,
		PAXRecords: map[string]string{"SCHILY.xattr.user.mxos": "v1", "SCHILY.xattr.security.capability": "\x01\x02"}})
	tw.Write([]byte("abc"))
	tw.WriteHeader(&tar.Header{Name: "usr/b", Typeflag: tar.TypeLink, Linkname: "usr/a"})
	tw.Close()

	r := newRepo(t)
	tree, _ := commitTar(t, r, writeTemp(t, buf.Bytes()), CommitOptions{})
	root, err := r.ReadDirTree(tree)
	if err != nil {
		t.Fatal(err)
	}
	usr, err := r.ReadDirTree(root.Dirs[0].Tree)
	if err != nil {
		t.Fatal(err)
	}
	if len(usr.Files) != 2 || usr.Files[0].Checksum != usr.Files[1].Checksum {
		t.Fatalf("hardlinked files differ: %+v", usr.Files)
	}
	h, err := r.VerifyContent(usr.Files[0].Checksum)
	if err != nil {
		t.Fatal(err)
	}
	if h.Mode != ModeRegular|0o4755 || len(h.Xattrs) != 2 || h.Xattrs[0].Name != "security.capability" || string(h.Xattrs[1].Value) != "v1" {
		t.Fatalf("header = %+v", h)
	}
}

func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "in.tar")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// plantDirTree stores a dirtree as a hostile server would send it: bytes
// that bypass our own validation, named by their real hash.
func plantDirTree(t *testing.T, r *Repo, files []any, dirs []any) Checksum {
	t.Helper()
	b, err := gvariant.Marshal(DirTreeType, []any{files, dirs})
	if err != nil {
		t.Fatal(err)
	}
	c := Checksum(sha256.Sum256(b))
	p := r.objectFile(c, ObjDirTree)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHostileDirTreeNames(t *testing.T) {
	for _, name := range []string{"../x", "a/b", "..", ".", ""} {
		t.Run(strings.ReplaceAll(name, "/", "_"), func(t *testing.T) {
			r := newRepo(t)
			good := commitDir(t, r, writeGoldenTree(t), rootOwned)
			gc, _ := r.ReadCommit(good)
			gtree, _ := r.ReadDirTree(gc.RootTree)
			fileSum := gtree.Dirs[0].Meta // any existing checksum will do
			_ = fileSum
			var someFile Checksum
			objs, _ := r.Reachable(good)
			for _, o := range objs {
				if o.Type == ObjFile {
					someFile = o.Checksum
				}
			}
			bad := plantDirTree(t, r, []any{[]any{name, someFile[:]}}, []any{})
			if _, err := r.ReadDirTree(bad); !errors.Is(err, ErrBadName) {
				t.Fatalf("ReadDirTree: %v, want ErrBadName", err)
			}
			b, _ := os.ReadFile(r.objectFile(bad, ObjDirTree))
			txn, _ := r.Begin()
			if _, err := txn.WriteMetadata(ObjDirTree, b, bad); err == nil {
				t.Error("WriteMetadata stored a dirtree with a bad name")
			}
			c, err := txn.WriteCommit(&Commit{Timestamp: 2, RootTree: bad, RootMeta: gc.RootMeta})
			if err != nil {
				t.Fatal(err)
			}
			txn.Commit()
			if err := txn.SetRef("evil", c); err == nil {
				t.Error("SetRef accepted a commit with a bad tree")
			}
			txn.Close()
			dest := filepath.Join(t.TempDir(), "co")
			if err := r.Checkout(context.Background(), c, dest, CheckoutOptions{}); !errors.Is(err, ErrBadName) {
				t.Fatalf("checkout: %v, want ErrBadName", err)
			}
			if _, err := os.Lstat(dest); !errors.Is(err, fs.ErrNotExist) {
				t.Error("refused checkout left files")
			}
			if _, err := os.Lstat(filepath.Join(filepath.Dir(dest), "x")); err == nil {
				t.Error("checkout wrote outside its root")
			}
		})
	}
}

func TestCheckoutRefusesEscapingSymlink(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "usr"), 0o755)
	os.Symlink("../../../etc/shadow", filepath.Join(src, "usr/evil"))
	r := newRepo(t)
	txn, _ := r.Begin()
	if _, _, err := txn.WriteTreeFromDir(context.Background(), src, rootOwned); !errors.Is(err, ErrBadName) {
		t.Fatalf("commit of an escaping symlink: %v", err)
	}
	txn.Close()
	opts := rootOwned
	opts.AllowEscapingSymlinks = true
	c := commitDir(t, r, src, opts)
	dest := filepath.Join(t.TempDir(), "co")
	if err := r.Checkout(context.Background(), c, dest, CheckoutOptions{}); !errors.Is(err, ErrBadName) {
		t.Fatalf("checkout: %v, want ErrBadName", err)
	}
	if _, err := os.Lstat(dest); !errors.Is(err, fs.ErrNotExist) {
		t.Error("refused checkout left files")
	}
	if err := r.Checkout(context.Background(), c, dest, CheckoutOptions{AllowEscapingSymlinks: true}); err != nil {
		t.Fatalf("checkout allowing escaping symlinks: %v", err)
	}
}

func FuzzParseObjects(f *testing.F) {
	r, err := Open("testdata/golden-repo")
	if err != nil {
		f.Fatal(err)
	}
	filepath.WalkDir(filepath.Join(r.Path(), "objects"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			f.Add(b)
		}
		return nil
	})
	if b, err := os.ReadFile(filepath.Join(r.Path(), "summary")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseCommit(b)
		ParseDirTree(b)
		ParseDirMeta(b)
		ParseSummary(b)
		ParseMetadata(b)
		if cr, err := OpenFilez(bytes.NewReader(b), Checksum{1}); err == nil {
			io.Copy(io.Discard, io.LimitReader(cr, 1<<20))
			cr.Close()
		}
	})
}

func FuzzTar(f *testing.F) {
	f.Add(makeTarForFuzz())
	// One repository for the whole run: each input runs in a transaction
	// that is never committed, so nothing accumulates.
	r, err := Create(filepath.Join(f.TempDir(), "repo"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		txn, err := r.Begin()
		if err != nil {
			t.Fatal(err)
		}
		defer txn.Close()
		tree, meta, err := txn.WriteTreeFromTar(context.Background(), bytes.NewReader(b), rootOwned)
		if err == nil && (!txn.HasObject(tree, ObjDirTree) || !txn.HasObject(meta, ObjDirMeta)) {
			t.Fatalf("accepted tarball but tree %s or dirmeta %s is not staged", tree, meta)
		}
		if err := txn.Close(); err != nil {
			t.Fatalf("close: %v", err) // staged objects left behind
		}
	})
}

func makeTarForFuzz() []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "a/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "a/b", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2})
	tw.Write([]byte("hi"))
	tw.WriteHeader(&tar.Header{Name: "a/c", Typeflag: tar.TypeLink, Linkname: "a/b"})
	tw.WriteHeader(&tar.Header{Name: "a/d", Typeflag: tar.TypeSymlink, Linkname: "b"})
	tw.Close()
	return buf.Bytes()
}
