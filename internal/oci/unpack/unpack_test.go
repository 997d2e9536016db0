package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/mxos-linux/mxos-update/internal/testtool"
	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// ent is one tar entry of a test layer.
type ent struct {
	name string
	typ  byte
	body string
	link string
	mode int64
	uid  int
	pax  map[string]string
}

func file(name, body string) ent { return ent{name: name, typ: tar.TypeReg, body: body, mode: 0o644} }
func dir(name string) ent        { return ent{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) ent {
	return ent{name: name, typ: tar.TypeSymlink, link: target, mode: 0o777}
}
func hardlink(name, target string) ent { return ent{name: name, typ: tar.TypeLink, link: target} }

func tarOf(t testing.TB, ents []ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, Uid: e.uid, Gid: e.uid,
			Size: int64(len(e.body)), PAXRecords: e.pax, Format: tar.FormatPAX}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			io.WriteString(tw, e.body)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// layer compresses a tar stream for mediaType and describes it.
func layer(t testing.TB, mediaType string, tarball []byte) ([]byte, v1.Descriptor, digest.Digest) {
	t.Helper()
	var blob bytes.Buffer
	switch mediaType {
	case v1.MediaTypeImageLayer:
		blob.Write(tarball)
	case v1.MediaTypeImageLayerGzip:
		zw := gzip.NewWriter(&blob)
		zw.Write(tarball)
		zw.Close()
	case v1.MediaTypeImageLayerZstd:
		zw, _ := zstd.NewWriter(&blob)
		zw.Write(tarball)
		zw.Close()
	default:
		blob.Write(tarball)
	}
	b := blob.Bytes()
	return b, v1.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}, digest.FromBytes(tarball)
}

// applyAll unpacks layers (each a list of entries, gzip) into a fresh
// dest inside a fresh parent that also holds a sentinel file; it checks
// nothing outside dest changed, whatever the outcome.
func applyAll(t *testing.T, opts Options, layers ...[]ent) (string, Stats, error) {
	t.Helper()
	parent := t.TempDir()
	dest := filepath.Join(parent, "dest")
	os.Mkdir(dest, 0o700)
	sentinel := filepath.Join(parent, "sentinel")
	os.WriteFile(sentinel, []byte("untouched"), 0o644)
	u, err := New(dest, opts)
	if err != nil {
		t.Fatal(err)
	}
	var st Stats
	for _, ents := range layers {
		blob, desc, diffID := layer(t, v1.MediaTypeImageLayerGzip, tarOf(t, ents))
		if err = u.Apply(context.Background(), bytes.NewReader(blob), desc, diffID); err != nil {
			break
		}
	}
	if err == nil {
		st, err = u.Finish()
	} else {
		u.Close()
	}
	ents, _ := os.ReadDir(parent)
	if len(ents) != 2 {
		t.Errorf("something was written next to the destination: %v", ents)
	}
	if b, _ := os.ReadFile(sentinel); string(b) != "untouched" {
		t.Errorf("sentinel outside the destination changed: %q", b)
	}
	return dest, st, err
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

func TestHostileLayers(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "outside")
	os.Mkdir(outside, 0o755)
	cases := []struct {
		name   string
		layers [][]ent
		want   error
	}{
		{"dotdot", [][]ent{{file("../evil", "x")}}, ErrUnsafe},
		{"dotdot inside", [][]ent{{file("a/../../evil", "x")}}, ErrUnsafe},
		{"absolute", [][]ent{{file("/etc/evil", "x")}}, ErrUnsafe},
		{"empty name", [][]ent{{file("", "x")}}, ErrUnsafe},
		{"root is a file", [][]ent{{file(".", "x")}}, ErrUnsafe},
		{"write through symlink, same layer", [][]ent{{symlink("s", outside), file("s/evil", "x")}}, ErrUnsafe},
		{"write through symlink planted earlier", [][]ent{{symlink("s", outside)}, {file("s/evil", "x")}}, ErrUnsafe},
		{"write through in-root symlink", [][]ent{{dir("d"), symlink("s", "d")}, {file("s/x", "x")}}, ErrUnsafe},
		{"dir through symlink planted earlier", [][]ent{{symlink("s", outside)}, {dir("s/sub")}}, ErrUnsafe},
		{"relative symlink climbing out", [][]ent{{dir("a"), symlink("a/s", "../../etc/passwd")}}, ErrUnsafe},
		{"relative symlink climbing out at top", [][]ent{{symlink("s", "..")}}, ErrUnsafe},
		{"hardlink outside", [][]ent{{hardlink("h", "../outside/x")}}, ErrUnsafe},
		{"hardlink absolute", [][]ent{{hardlink("h", "/etc/passwd")}}, ErrUnsafe},
		{"hardlink to nothing", [][]ent{{hardlink("h", "missing")}}, ErrUnsafe},
		{"hardlink to directory", [][]ent{{dir("d"), hardlink("h", "d")}}, ErrUnsafe},
		{"hardlink to symlink", [][]ent{{symlink("s", "/etc/passwd"), hardlink("h", "s")}}, ErrUnsafe},
		{"hardlink through symlink", [][]ent{{symlink("s", outside)}, {hardlink("h", "s/x")}}, ErrUnsafe},
		{"hardlink to itself", [][]ent{{file("f", "x"), hardlink("f", "f")}}, ErrUnsafe},
		{"whiteout through symlink", [][]ent{{symlink("s", outside)}, {file("s/.wh.x", "")}}, ErrUnsafe},
		{"opaque through symlink", [][]ent{{symlink("s", outside)}, {file("s/.wh..wh..opq", "")}}, ErrUnsafe},
		{"file under a file", [][]ent{{file("f", "x"), file("f/g", "y")}}, ErrUnsafe},
		{"char device", [][]ent{{{name: "dev/null", typ: tar.TypeChar, mode: 0o666}}}, ErrSpecial},
		{"block device", [][]ent{{{name: "sda", typ: tar.TypeBlock, mode: 0o660}}}, ErrSpecial},
		{"fifo", [][]ent{{{name: "p", typ: tar.TypeFifo, mode: 0o644}}}, ErrSpecial},
		{"aufs special whiteout", [][]ent{{file(".wh..wh.plnk", "")}}, ErrUnsupported},
		{"unknown type", [][]ent{{{name: "x", typ: 'Z'}}}, ErrUnsupported},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before, _ := os.ReadDir(outside)
			_, _, err := applyAll(t, Options{}, c.layers...)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			after, _ := os.ReadDir(outside)
			if len(after) != len(before) {
				t.Fatalf("a file appeared outside the root: %v", after)
			}
		})
	}
}

func TestSymlinkReplacedNotFollowed(t *testing.T) {
	target := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(target, []byte("old"), 0o644)
	dest, _, err := applyAll(t, Options{}, []ent{symlink("s", target)}, []ent{file("s", "new")})
	if err != nil {
		t.Fatal(err)
	}
	if readFile(t, target) != "old" {
		t.Fatal("the symlink's target was written")
	}
	if readFile(t, filepath.Join(dest, "s")) != "new" {
		t.Fatal("the symlink was not replaced by the file")
	}
}

func TestHardlinks(t *testing.T) {
	dest, st, err := applyAll(t, Options{},
		[]ent{file("a/f", "one"), hardlink("a/h", "a/f")},
		[]ent{hardlink("b", "./a/f"), file("a/f", "two")})
	if err != nil {
		t.Fatal(err)
	}
	var s1, s2 syscall.Stat_t
	syscall.Stat(filepath.Join(dest, "a/h"), &s1)
	syscall.Stat(filepath.Join(dest, "b"), &s2)
	if s1.Ino != s2.Ino {
		t.Error("a hardlink to a file of an earlier layer is not the same inode")
	}
	// Replacing a linked file must not write through the other names.
	if got := readFile(t, filepath.Join(dest, "a/h")); got != "one" {
		t.Errorf("a/h = %q after a/f was replaced", got)
	}
	if got := readFile(t, filepath.Join(dest, "a/f")); got != "two" {
		t.Errorf("a/f = %q", got)
	}
	if st.Hardlinks != 2 || st.Files != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestWhiteouts(t *testing.T) {
	dest, st, err := applyAll(t, Options{},
		[]ent{file("a/x", "x"), file("a/y", "y"), file("d/old1", "1"), file("d/sub/old2", "2"), file("gone/deep/f", "f"), file("keep", "k")},
		[]ent{
			file("a/.wh.x", ""),
			file("a/z", "z"), file("a/.wh.z", ""), // same layer: not hidden
			file("d/new-before", "n"), file("d/.wh..wh..opq", ""), file("d/new-after", "n"),
			file(".wh.gone", ""),
			file(".wh.never-existed", ""),
			file("no/such/dir/.wh.x", ""),
		})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{
		"a/x": false, "a/y": true, "a/z": true, "a/.wh.x": false,
		"d/old1": false, "d/sub": false, "d/new-before": true, "d/new-after": true, "d/.wh..wh..opq": false,
		"gone": false, "keep": true, "no": false,
	} {
		if exists(filepath.Join(dest, p)) != want {
			t.Errorf("%s exists = %v, want %v", p, !want, want)
		}
	}
	if st.Whiteouts != 6 {
		t.Errorf("whiteouts %d", st.Whiteouts)
	}
}

func TestReplaceTypesAcrossLayers(t *testing.T) {
	_, _, err := applyAll(t, Options{},
		[]ent{file("fd", "file"), file("df/inner", "x"), symlink("ls", "/x")},
		[]ent{file("fd/now-a-dir", "y"), file("df", "now a file"), dir("ls")})
	if !errors.Is(err, ErrUnsafe) {
		// A file where a directory is needed as a parent is refused, as
		// a later layer must replace it explicitly.
		t.Fatalf("parent that is a file: %v", err)
	}
	dest, _, err := applyAll(t, Options{},
		[]ent{file("fd", "file"), file("df/inner", "x"), symlink("ls", "/x")},
		[]ent{dir("fd"), file("fd/now-a-dir", "y"), file("df", "now a file"), dir("ls")})
	if err != nil {
		t.Fatal(err)
	}
	if readFile(t, filepath.Join(dest, "fd/now-a-dir")) != "y" || readFile(t, filepath.Join(dest, "df")) != "now a file" {
		t.Error("replacement content wrong")
	}
	if fi, _ := os.Lstat(filepath.Join(dest, "ls")); !fi.IsDir() {
		t.Error("symlink not replaced by a directory")
	}
}

func TestSetIDPolicy(t *testing.T) {
	ents := []ent{
		{name: "su", typ: tar.TypeReg, body: "su", mode: 0o4755},
		{name: "wall", typ: tar.TypeReg, body: "w", mode: 0o2755},
		{name: "user-suid", typ: tar.TypeReg, body: "u", mode: 0o4755, uid: 1000},
		{name: "shared", typ: tar.TypeDir, mode: 0o2775},
		{name: "tmp", typ: tar.TypeDir, mode: 0o1777},
	}
	for _, keep := range []bool{false, true} {
		dest, st, err := applyAll(t, Options{KeepSetID: keep}, ents)
		if err != nil {
			t.Fatal(err)
		}
		mode := func(p string) os.FileMode { fi, _ := os.Lstat(filepath.Join(dest, p)); return fi.Mode() }
		if got := mode("su")&os.ModeSetuid != 0; got != keep {
			t.Errorf("keep=%v: su setuid = %v", keep, got)
		}
		if got := mode("wall")&os.ModeSetgid != 0; got != keep {
			t.Errorf("keep=%v: wall setgid = %v", keep, got)
		}
		if mode("user-suid")&os.ModeSetuid != 0 {
			t.Errorf("keep=%v: setuid kept on a file not owned by root", keep)
		}
		if mode("su").Perm() != 0o755 {
			t.Errorf("permission bits lost: %v", mode("su"))
		}
		if mode("shared")&os.ModeSetgid == 0 || mode("tmp")&os.ModeSticky == 0 || mode("tmp").Perm() != 0o777 {
			t.Errorf("directory bits lost: %v %v", mode("shared"), mode("tmp"))
		}
		if wantNotes := map[bool]int{false: 3, true: 1}[keep]; len(st.Notes) != wantNotes {
			t.Errorf("keep=%v: notes %q", keep, st.Notes)
		}
	}
}

func TestOwnersAndXattrs(t *testing.T) {
	testtool.RequireRoot(t, "ownership and trusted attributes")
	caps := string([]byte{1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	ents := []ent{
		{name: "d", typ: tar.TypeDir, mode: 0o750, uid: 7, pax: map[string]string{"SCHILY.xattr.user.d": "dv"}},
		{name: "d/f", typ: tar.TypeReg, body: "f", mode: 0o640, uid: 8, pax: map[string]string{"SCHILY.xattr.user.mx": "v", "SCHILY.xattr.trusted.mx": "t"}},
		{name: "ping", typ: tar.TypeReg, body: "p", mode: 0o755, pax: map[string]string{"SCHILY.xattr.security.capability": caps}},
		{name: "s", typ: tar.TypeSymlink, link: "d/f", uid: 9, pax: map[string]string{"SCHILY.xattr.trusted.l": "l"}},
	}
	for _, keep := range []bool{false, true} {
		dest, _, err := applyAll(t, Options{KeepSetID: keep}, ents)
		if err != nil {
			t.Fatal(err)
		}
		owner := func(p string) uint32 {
			var st syscall.Stat_t
			syscall.Lstat(filepath.Join(dest, p), &st)
			return st.Uid
		}
		if owner("d") != 7 || owner("d/f") != 8 || owner("s") != 9 {
			t.Errorf("owners %d %d %d", owner("d"), owner("d/f"), owner("s"))
		}
		get := func(p, k string) string {
			buf := make([]byte, 256)
			n, err := unix.Lgetxattr(filepath.Join(dest, p), k, buf)
			if err != nil {
				return ""
			}
			return string(buf[:n])
		}
		if get("d/f", "user.mx") != "v" || get("d/f", "trusted.mx") != "t" || get("d", "user.d") != "dv" || get("s", "trusted.l") != "l" {
			t.Errorf("attributes not applied")
		}
		if got := get("ping", "security.capability") != ""; got != keep {
			t.Errorf("keep=%v: file capabilities kept = %v", keep, got)
		}
	}
}

func TestDirectoryModesAppliedLast(t *testing.T) {
	dest, _, err := applyAll(t, Options{},
		[]ent{{name: "./", typ: tar.TypeDir, mode: 0o711}, {name: "ro", typ: tar.TypeDir, mode: 0o555}, file("ro/f", "x")},
		[]ent{file("ro/g", "y"), file("implicit/parent/f", "z")})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{".": 0o711, "ro": 0o555, "implicit": 0o755, "implicit/parent": 0o755} {
		fi, _ := os.Lstat(filepath.Join(dest, p))
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
}

func TestSkipSpecial(t *testing.T) {
	dest, st, err := applyAll(t, Options{SkipSpecial: true}, []ent{{name: "dev/null", typ: tar.TypeChar, mode: 0o666}, file("f", "x")})
	if err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(dest, "dev/null")) || len(st.Notes) != 1 || !strings.Contains(st.Notes[0], "dev/null") {
		t.Errorf("special file not skipped with a note: %q", st.Notes)
	}
}

func TestCompressionAndDigests(t *testing.T) {
	tarball := tarOf(t, []ent{file("etc/os-release", "NAME=MxOS\n")})
	for _, mt := range []string{v1.MediaTypeImageLayer, v1.MediaTypeImageLayerGzip, v1.MediaTypeImageLayerZstd, "application/vnd.docker.image.rootfs.diff.tar.gzip"} {
		blob, desc, diffID := layer(t, mt, tarball)
		if mt == "application/vnd.docker.image.rootfs.diff.tar.gzip" {
			blob, desc, diffID = layer(t, v1.MediaTypeImageLayerGzip, tarball)
			desc.MediaType = mt
		}
		bad := append([]byte(nil), blob...)
		bad[len(bad)/2] ^= 0xff
		other := digest.FromString("other")
		cases := []struct {
			name   string
			blob   []byte
			desc   v1.Descriptor
			diffID digest.Digest
			want   error
		}{
			{"ok", blob, desc, diffID, nil},
			{"wrong digest", blob, v1.Descriptor{MediaType: mt, Digest: other, Size: desc.Size}, diffID, ErrDigest},
			{"wrong diff_id", blob, desc, other, ErrDigest},
			{"wrong size", blob, v1.Descriptor{MediaType: mt, Digest: desc.Digest, Size: desc.Size - 1}, diffID, ErrDigest},
			{"trailing bytes", append(append([]byte(nil), blob...), "junk"...), desc, diffID, ErrDigest},
			{"flipped byte", bad, desc, diffID, nil}, // any error will do
			{"bad media type", blob, v1.Descriptor{MediaType: "application/x-rar", Digest: desc.Digest, Size: desc.Size}, diffID, ErrUnsupported},
			{"bad digest syntax", blob, v1.Descriptor{MediaType: mt, Digest: "sha256:xyz", Size: desc.Size}, diffID, ErrUnsupported},
		}
		for _, c := range cases {
			t.Run(mt+"/"+c.name, func(t *testing.T) {
				dest := t.TempDir()
				u, _ := New(dest, Options{})
				defer u.Close()
				err := u.Apply(context.Background(), bytes.NewReader(c.blob), c.desc, c.diffID)
				switch {
				case c.name == "flipped byte":
					if err == nil {
						t.Fatal("a corrupted blob was accepted")
					}
				case c.want == nil && err != nil:
					t.Fatal(err)
				case c.want != nil && !errors.Is(err, c.want):
					t.Fatalf("got %v, want %v", err, c.want)
				}
				if c.want == nil && c.name == "ok" && readFile(t, filepath.Join(dest, "etc/os-release")) != "NAME=MxOS\n" {
					t.Fatal("content wrong")
				}
			})
		}
	}
}

func TestDecompressionBomb(t *testing.T) {
	big := strings.Repeat("\x00", 8<<20)
	tarball := tarOf(t, []ent{file("a", big), file("b", big)})
	for _, mt := range []string{v1.MediaTypeImageLayerGzip, v1.MediaTypeImageLayerZstd} {
		blob, desc, diffID := layer(t, mt, tarball)
		if len(blob) > 1<<20 {
			t.Fatalf("test blob not small: %d", len(blob))
		}
		u, _ := New(t.TempDir(), Options{MaxBytes: 10 << 20})
		err := u.Apply(context.Background(), bytes.NewReader(blob), desc, diffID)
		u.Close()
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%s: %v", mt, err)
		}
	}
	// The budget spans layers.
	small := tarOf(t, []ent{file("a", strings.Repeat("x", 600<<10))})
	u, _ := New(t.TempDir(), Options{MaxBytes: 1 << 20})
	defer u.Close()
	blob, desc, diffID := layer(t, v1.MediaTypeImageLayerGzip, small)
	if err := u.Apply(context.Background(), bytes.NewReader(blob), desc, diffID); err != nil {
		t.Fatal(err)
	}
	if err := u.Apply(context.Background(), bytes.NewReader(blob), desc, diffID); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("second layer over the total budget: %v", err)
	}
}

func TestEntryLimit(t *testing.T) {
	var ents []ent
	for i := 0; i < 20; i++ {
		ents = append(ents, file(strings.Repeat("f", i+1), "x"))
	}
	if _, _, err := applyAll(t, Options{MaxEntries: 10}, ents); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v", err)
	}
}

func TestCancel(t *testing.T) {
	blob, desc, diffID := layer(t, v1.MediaTypeImageLayerGzip, tarOf(t, []ent{file("a", "x")}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	u, _ := New(t.TempDir(), Options{})
	defer u.Close()
	if err := u.Apply(ctx, bytes.NewReader(blob), desc, diffID); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}
