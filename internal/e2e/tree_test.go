package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"sort"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// treeSpec says what makeRichTree adds besides the fixed entries.
type treeSpec struct {
	// bigSize is the size of usr/share/big.bin (0: no big file).
	bigSize int64
	// xattrs sets user.* extended attributes on some files and a
	// directory, when the file system allows it.
	xattrs bool
	// owners gives some entries other owners (only as root).
	owners bool
	// seed varies the contents of the generated files.
	seed uint64
}

// treeInfo reports what makeRichTree could do on this machine.
type treeInfo struct {
	xattrs    bool      // user xattrs were set
	owners    bool      // entries with other owners exist
	hardlinks [2]string // a hardlinked pair
	emptyDirs []string
	bigFile   string
}

// Names of the fixed entries that tests look at.
const (
	setuidFile   = "usr/bin/su"
	relSymlink   = "usr/lib/os-release"
	absSymlink   = "etc/localtime"
	danglingLink = "usr/share/dangling"
	emptyFile    = "usr/share/empty-file"
	emptyDir     = "var/empty"
	spanishFile  = "año/niño ñ.txt"
	japaneseFile = "日本語"
	hardlinkA    = "usr/lib/libmxos.so.1"
	hardlinkB    = "usr/lib/libmxos-hardlink.so.1"
)

// makeRichTree writes a tree exercising everything OSTree stores: regular
// files of several modes (0644, 0755, 0600, setuid 04755), an empty file,
// empty directories, nested directories, relative, absolute and dangling
// symlinks, non-ASCII names, a hardlinked pair, optionally user xattrs,
// other owners and a big pseudo-random file.
func makeRichTree(t testing.TB, dir string, spec treeSpec) treeInfo {
	t.Helper()
	info := treeInfo{hardlinks: [2]string{hardlinkA, hardlinkB}, emptyDirs: []string{emptyDir, "var/lib/private"}}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mkdir := func(rel string, mode uint32) {
		t.Helper()
		p := filepath.Join(dir, filepath.FromSlash(rel))
		must(os.MkdirAll(p, 0o755))
		must(os.Chmod(p, unixMode(mode)))
	}
	file := func(rel, content string, mode uint32) {
		t.Helper()
		p := filepath.Join(dir, filepath.FromSlash(rel))
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, []byte(content), 0o600))
		must(os.Chmod(p, unixMode(mode))) // not subject to the umask
	}
	link := func(rel, target string) {
		t.Helper()
		p := filepath.Join(dir, filepath.FromSlash(rel))
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.Symlink(target, p))
	}
	rng := rand.New(rand.NewPCG(spec.seed, 42))
	text := func(n int) string {
		const alpha = "abcdefghijklmnopqrstuvwxyz áéíóúñ\n"
		b := make([]rune, n)
		rs := []rune(alpha)
		for i := range b {
			b[i] = rs[rng.IntN(len(rs))]
		}
		return string(b)
	}

	must(os.MkdirAll(dir, 0o755))
	must(os.Chmod(dir, 0o755))
	mkdir("etc", 0o755)
	file("etc/os-release", "NAME=MxOS\nVERSION_ID=10\n"+text(200), 0o644)
	file("etc/shadow", "root:*:19000:0:99999:7:::\n", 0o600)
	file("etc/motd", text(3000), 0o644)
	file("usr/bin/tool", "#!/bin/sh\necho tool\n"+text(5000), 0o755)
	file(setuidFile, "\x7fELF pretend setuid binary\n"+text(100), 0o4755)
	file("usr/bin/sgid", "pretend setgid binary\n", 0o2755)
	file(emptyFile, "", 0o644)
	mkdir(emptyDir, 0o755)
	mkdir("var/lib/private", 0o700)
	mkdir("tmp", 0o1777)
	file("usr/share/doc/mxos/deep/er/and/deeper/README", text(700), 0o644)
	file("usr/share/doc/mxos/changelog", text(20000), 0o644)
	link("usr/bin/tool-link", "tool")
	link(relSymlink, "../../etc/os-release")
	link(absSymlink, "/usr/share/zoneinfo/America/Mexico_City")
	link(danglingLink, "does-not-exist")
	file(spanishFile, "¡Hola, niño! Año nuevo.\n", 0o644)
	file(japaneseFile, "日本語のファイル\n", 0o644)
	file("usr/share/i18n/Ñandú/ünïcödé ☃.txt", "snow\n", 0o644)
	file(hardlinkA, "\x7fELF pretend library\n"+text(4000), 0o755)
	must(os.Link(filepath.Join(dir, hardlinkA), filepath.Join(dir, filepath.FromSlash(hardlinkB))))
	// Many small files in one directory: dirtree with many entries.
	for i := range 200 {
		file(fmt.Sprintf("usr/share/locale/file-%03d.mo", i), text(rng.IntN(300)), 0o644)
	}
	// Incompressible data, so the .filez has stored deflate blocks.
	writeRandomFile(t, filepath.Join(dir, "usr/share/random.bin"), 256<<10, spec.seed+1)

	if spec.bigSize > 0 {
		info.bigFile = "usr/share/big.bin"
		writeRandomFile(t, filepath.Join(dir, filepath.FromSlash(info.bigFile)), spec.bigSize, spec.seed+2)
	}

	if spec.owners && os.Geteuid() == 0 {
		info.owners = true
		must(os.Chown(filepath.Join(dir, "etc/shadow"), 0, 42))
		must(os.Chown(filepath.Join(dir, "usr/share/doc/mxos"), 1234, 5678))
		must(os.Chown(filepath.Join(dir, "usr/share/doc/mxos/changelog"), 1234, 5678))
		must(os.Lchown(filepath.Join(dir, "usr/bin/tool-link"), 1234, 1234))
		// chown clears setuid: restore the mode afterwards.
		must(os.Chown(filepath.Join(dir, setuidFile), 0, 0))
		must(os.Chmod(filepath.Join(dir, setuidFile), unixMode(0o4755)))
		must(os.Chmod(filepath.Join(dir, "etc/shadow"), 0o600))
		must(os.Chmod(filepath.Join(dir, "usr/share/doc/mxos"), 0o755))
	}
	if spec.xattrs {
		info.xattrs = trySetXattrs(t, dir)
	}
	return info
}

// unixMode converts st_mode permission bits (with setuid 04000, setgid
// 02000, sticky 01000) to an os.FileMode, which keeps those bits elsewhere.
func unixMode(m uint32) os.FileMode {
	fm := os.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		fm |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		fm |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		fm |= os.ModeSticky
	}
	return fm
}

// trySetXattrs sets user xattrs on two files and a directory; it reports
// false when the file system does not support them.
func trySetXattrs(t testing.TB, dir string) bool {
	t.Helper()
	set := []struct{ rel, name, value string }{
		{"etc/os-release", "user.mxos.origin", "build-42"},
		{"etc/os-release", "user.abc", "sorted first"},
		{"usr/bin/tool", "user.mxos.caps", "\x00\x01binary\xff"},
		{"usr/share/doc", "user.mxos.dir", "directory xattr"},
	}
	for _, x := range set {
		err := unix.Lsetxattr(filepath.Join(dir, filepath.FromSlash(x.rel)), x.name, []byte(x.value), 0)
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM) {
			t.Logf("user xattrs unsupported on %s (%v): xattr coverage skipped", dir, err)
			for _, y := range set {
				_ = unix.Lremovexattr(filepath.Join(dir, filepath.FromSlash(y.rel)), y.name)
			}
			return false
		}
		if err != nil {
			t.Fatalf("setxattr %s: %v", x.rel, err)
		}
	}
	return true
}

// writeRandomFile writes size bytes of a seeded ChaCha8 stream: fast,
// reproducible and incompressible.
func writeRandomFile(t testing.TB, p string, size int64, seed uint64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := io.CopyN(w, rand.NewChaCha8(key), size); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// entry is what compareTrees looks at for one path.
type entry struct {
	mode     os.FileMode
	uid, gid uint32
	size     int64
	target   string
}

func scanTree(t testing.TB, root string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{mode: fi.Mode(), uid: st.Uid, gid: st.Gid}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			if e.target, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			e.size = fi.Size()
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatalf("scan %s: %v", root, err)
	}
	return out
}

// compareTrees checks that dst has exactly the entries of src with the
// same type, permission bits (setuid, setgid and sticky included), size,
// symlink target and, when owners is set, uid and gid. Without owners the
// checkout was made in user mode (ostree checkout -U), which drops setuid
// and setgid from files by design, so those two bits are not compared.
// The root's own mode is not compared (checkout creates it).
func compareTrees(t testing.TB, src, dst string, owners bool) {
	t.Helper()
	a, b := scanTree(t, src), scanTree(t, dst)
	var names []string
	for n := range a {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		ea := a[n]
		eb, ok := b[n]
		if !ok {
			t.Errorf("%s: missing from the checkout", n)
			continue
		}
		if n == "." {
			continue
		}
		ma, mb := ea.mode, eb.mode
		if !owners && ma.IsRegular() {
			ma &^= os.ModeSetuid | os.ModeSetgid
		}
		if ma != mb {
			t.Errorf("%s: mode %v in the source, %v in the checkout", n, ea.mode, eb.mode)
		}
		if ea.size != eb.size {
			t.Errorf("%s: size %d in the source, %d in the checkout", n, ea.size, eb.size)
		}
		if ea.target != eb.target {
			t.Errorf("%s: symlink target %q in the source, %q in the checkout", n, ea.target, eb.target)
		}
		if owners && (ea.uid != eb.uid || ea.gid != eb.gid) {
			t.Errorf("%s: owner %d:%d in the source, %d:%d in the checkout", n, ea.uid, ea.gid, eb.uid, eb.gid)
		}
	}
	for n := range b {
		if _, ok := a[n]; !ok {
			t.Errorf("%s: in the checkout but not in the source", n)
		}
	}
}

// treeObjects maps every path of a commit's tree to the checksum that
// names it: the content checksum for files, "tree/meta" for directories.
func treeObjects(t testing.TB, repo *ostree.Repo, tree, meta ostree.Checksum) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(p string, tree, meta ostree.Checksum)
	walk = func(p string, tree, meta ostree.Checksum) {
		out[p+"/"] = tree.String() + "/" + meta.String()
		dt, err := repo.ReadDirTree(tree)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, f := range dt.Files {
			out[path.Join(p, f.Name)] = f.Checksum.String()
		}
		for _, d := range dt.Dirs {
			walk(path.Join(p, d.Name), d.Tree, d.Meta)
		}
	}
	walk(".", tree, meta)
	return out
}

// compareObjectMaps reports every path whose checksum differs.
func compareObjectMaps(t testing.TB, want, got map[string]string, wantName, gotName string) {
	t.Helper()
	var names []string
	for n := range want {
		names = append(names, n)
	}
	for n := range got {
		if _, ok := want[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if want[n] != got[n] {
			t.Errorf("%s: %s has %q, %s has %q", n, wantName, want[n], gotName, got[n])
		}
	}
}
