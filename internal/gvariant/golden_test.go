package gvariant

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/bits"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Type strings of the OSTree objects in testdata (see testdata/README.md).
const (
	commitType     = "(a{sv}aya(say)sstayay)"
	dirtreeType    = "(a(say)a(sayay))"
	dirmetaType    = "(uuua(ayay))"
	fileHeaderType = "(uuuusa(ayay))"
	filezType      = "(tuuuusa(ayay))"
	summaryType    = "(a(s(taya{sv}))a{sv})"
	superblockType = "(a{sv}tayay(a{sv}aya(say)sstayay)aya(uayttay)a(yaytt))"
	deltaPartType  = "(a(uuu)aa(ayay)ayay)"
)

// fixtureEnv reads the checksums make-fixtures.sh recorded.
func fixtureEnv(t testing.TB) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "fixtures.env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return env
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// filezHeader returns the (tuuuusa(ayay)) header of an archive content
// object: BE32 length, 4 zero bytes, header, then raw deflate data.
func filezHeader(t testing.TB, b []byte) []byte {
	t.Helper()
	if len(b) < 8 {
		t.Fatalf("filez too short: %d bytes", len(b))
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-8) || !bytes.Equal(b[4:8], []byte{0, 0, 0, 0}) {
		t.Fatalf("bad filez prefix % x", b[:8])
	}
	return b[8 : 8+n]
}

func be32(v any) uint32 { return bits.ReverseBytes32(v.(uint32)) }
func be64(v any) uint64 { return bits.ReverseBytes64(v.(uint64)) }

func lookup(t testing.TB, dict any, key string) Variant {
	t.Helper()
	for _, e := range dict.([]DictEntry) {
		if e.Key == key {
			return e.Value.(Variant)
		}
	}
	t.Fatalf("key %q not in %v", key, dict)
	return Variant{}
}

func hexOf(v any) string { return hex.EncodeToString(v.([]byte)) }

const (
	ts20240101 = 1704067200
	ts20240102 = ts20240101 + 86400
)

func TestGolden(t *testing.T) {
	env := fixtureEnv(t)
	commit1 := readFixture(t, "commit1.commit")
	commit2 := readFixture(t, "commit2.commit")

	cases := []struct {
		file   string
		typ    string
		header bool // a .filez: decode only the header
		check  func(t *testing.T, v []any, d []DictEntry)
	}{
		{file: "commit1.commit", typ: commitType, check: func(t *testing.T, v []any, _ []DictEntry) {
			if got := lookup(t, v[0], "version"); got.Type != "s" || got.Value != "1.0" {
				t.Errorf("version = %#v", got)
			}
			if got := lookup(t, v[0], "ostree.ref-binding"); got.Type != "as" || got.Value.([]any)[0] != "main" {
				t.Errorf("ref binding = %#v", got)
			}
			if len(v[1].([]byte)) != 0 || len(v[2].([]any)) != 0 {
				t.Errorf("parent %v / related %v not empty", v[1], v[2])
			}
			if v[3] != "subject" || v[4] != "body text" {
				t.Errorf("subject/body = %q/%q", v[3], v[4])
			}
			if got := be64(v[5]); got != ts20240101 {
				t.Errorf("timestamp = %d", got)
			}
			if hexOf(v[6]) != env["ROOT_DIRTREE"] || hexOf(v[7]) != env["ROOT_DIRMETA"] {
				t.Errorf("root = %s %s", hexOf(v[6]), hexOf(v[7]))
			}
		}},
		{file: "commit2.commit", typ: commitType, check: func(t *testing.T, v []any, _ []DictEntry) {
			if hexOf(v[1]) != env["COMMIT1"] {
				t.Errorf("parent = %s", hexOf(v[1]))
			}
			if v[3] != "second" || v[4] != "" || be64(v[5]) != ts20240102 {
				t.Errorf("subject %q body %q time %d", v[3], v[4], be64(v[5]))
			}
		}},
		{file: "commit1.commitmeta", typ: "a{sv}", check: func(t *testing.T, _ []any, d []DictEntry) {
			if got := lookup(t, d, "mxos.test"); got.Value != "value" {
				t.Errorf("mxos.test = %#v", got)
			}
			sigs := lookup(t, d, "ostree.gpgsigs")
			if sigs.Type != "aay" || len(sigs.Value.([]any)) != 1 {
				t.Errorf("gpgsigs = %#v", sigs)
			}
		}},
		{file: "root.dirtree", typ: dirtreeType, check: func(t *testing.T, v []any, _ []DictEntry) {
			var names []string
			for _, f := range v[0].([]any) {
				names = append(names, f.([]any)[0].(string))
			}
			if got := strings.Join(names, ","); got != "empty,hello.txt,link,run.sh" {
				t.Errorf("files = %s", got)
			}
			hello := v[0].([]any)[1].([]any)
			if hexOf(hello[1]) != env["HELLO_FILE"] {
				t.Errorf("hello.txt = %s", hexOf(hello[1]))
			}
			dirs := v[1].([]any)
			if len(dirs) != 1 || dirs[0].([]any)[0] != "sub" || hexOf(dirs[0].([]any)[1]) != env["SUB_DIRTREE"] {
				t.Errorf("dirs = %v", dirs)
			}
		}},
		{file: "sub.dirtree", typ: dirtreeType, check: func(t *testing.T, v []any, _ []DictEntry) {
			files := v[0].([]any)
			if len(files) != 2 || files[0].([]any)[0] != "attr.txt" || files[1].([]any)[0] != "año.txt" {
				t.Errorf("files = %v", files)
			}
		}},
		{file: "root.dirmeta", typ: dirmetaType, check: func(t *testing.T, v []any, _ []DictEntry) {
			if be32(v[0]) != 0 || be32(v[1]) != 0 || be32(v[2]) != 0o40755 || len(v[3].([]any)) != 0 {
				t.Errorf("dirmeta = %v", v)
			}
		}},
		{file: "hello.filez", typ: filezType, header: true, check: func(t *testing.T, v []any, _ []DictEntry) {
			if be64(v[0]) != 12 || be32(v[3]) != 0o100644 || v[4] != uint32(0) || v[5] != "" {
				t.Errorf("header = %v", v)
			}
		}},
		{file: "link.filez", typ: filezType, header: true, check: func(t *testing.T, v []any, _ []DictEntry) {
			if be64(v[0]) != 0 || be32(v[3]) != 0o120777 || v[5] != "hello.txt" {
				t.Errorf("header = %v", v)
			}
		}},
		{file: "xattr.filez", typ: filezType, header: true, check: func(t *testing.T, v []any, _ []DictEntry) {
			x := v[6].([]any)
			if len(x) != 2 {
				t.Fatalf("xattrs = %v", x)
			}
			// Sorted by name, names NUL-terminated, values raw.
			a, f := x[0].([]any), x[1].([]any)
			if string(a[0].([]byte)) != "user.abc\x00" || string(a[1].([]byte)) != "xyz\x00\x01" ||
				string(f[0].([]byte)) != "user.foo\x00" || string(f[1].([]byte)) != "bar" {
				t.Errorf("xattrs = %q", x)
			}
		}},
		{file: "summary", typ: summaryType, check: func(t *testing.T, v []any, _ []DictEntry) {
			refs := v[0].([]any)
			if len(refs) != 1 {
				t.Fatalf("refs = %v", refs)
			}
			ref := refs[0].([]any)
			info := ref[1].([]any)
			if ref[0] != "main" || hexOf(info[1]) != env["COMMIT2"] {
				t.Errorf("ref = %v", ref)
			}
			// The commit size is host (little) endian, unlike other integers.
			if info[0] != uint64(len(commit2)) {
				t.Errorf("commit size = %d, want %d", info[0], len(commit2))
			}
			if ts := lookup(t, info[2], "ostree.commit.timestamp"); be64(ts.Value) != ts20240102 {
				t.Errorf("commit timestamp = %v", ts)
			}
			if mode := lookup(t, v[1], "ostree.summary.mode"); mode.Value != "archive-z2" {
				t.Errorf("mode = %v", mode)
			}
			if tc := lookup(t, v[1], "ostree.summary.tombstone-commits"); tc.Value != false {
				t.Errorf("tombstone-commits = %v", tc)
			}
			deltas := lookup(t, v[1], "ostree.static-deltas").Value.([]DictEntry)
			for _, d := range deltas {
				if len(d.Value.(Variant).Value.([]byte)) != 32 {
					t.Errorf("delta %s digest = %v", d.Key, d.Value)
				}
			}
		}},
		{file: "summary.sig", typ: "a{sv}", check: func(t *testing.T, _ []any, d []DictEntry) {
			if sigs := lookup(t, d, "ostree.gpgsigs"); len(sigs.Value.([]any)) != 1 {
				t.Errorf("gpgsigs = %v", sigs)
			}
		}},
		{file: "delta.index", typ: "a{sv}", check: func(t *testing.T, _ []any, d []DictEntry) {
			deltas := lookup(t, d, "ostree.static-deltas").Value.([]DictEntry)
			want := env["COMMIT1"] + "-" + env["COMMIT2"]
			if len(deltas) != 1 || deltas[0].Key != want {
				t.Errorf("deltas = %v", deltas)
			}
		}},
		{file: "scratch.superblock", typ: superblockType, check: func(t *testing.T, v []any, _ []DictEntry) {
			if e := lookup(t, v[0], "ostree.endianness"); e != (Variant{"y", uint8('l')}) {
				t.Errorf("endianness = %v", e)
			}
			if len(v[2].([]byte)) != 0 || hexOf(v[3]) != env["COMMIT1"] {
				t.Errorf("from %x to %x", v[2], v[3])
			}
			// The superblock embeds the complete target commit.
			if b, err := Marshal(commitType, v[4]); err != nil || !bytes.Equal(b, commit1) {
				t.Errorf("embedded commit differs from commit1.commit: %v", err)
			}
			parts := v[6].([]any)
			if len(parts) != 1 {
				t.Fatalf("parts = %v", parts)
			}
			// Sizes in part headers are host endian (ostree.endianness 'l');
			// the uncompressed size counts object bytes, not the payload.
			if got := parts[0].([]any)[3].(uint64); got == 0 || got > 1<<20 {
				t.Errorf("uncompressed size %d", got)
			}
			if objs := parts[0].([]any)[4].([]byte); len(objs)%33 != 0 {
				t.Errorf("object list of %d bytes", len(objs))
			}
		}},
		{file: "inline.superblock", typ: superblockType, check: func(t *testing.T, v []any, _ []DictEntry) {
			if hexOf(v[2]) != env["COMMIT1"] || hexOf(v[3]) != env["COMMIT2"] {
				t.Errorf("from %x to %x", v[2], v[3])
			}
			if b, err := Marshal(commitType, v[4]); err != nil || !bytes.Equal(b, commit2) {
				t.Errorf("embedded commit differs from commit2.commit: %v", err)
			}
			var inline int
			for _, e := range v[0].([]DictEntry) {
				if strings.HasPrefix(e.Key.(string), "deltas/") && strings.HasSuffix(e.Key.(string), "/0") {
					inline++
					p := e.Value.(Variant)
					if p.Type != "(yay)" || p.Value.([]any)[0] != uint8('x') {
						t.Errorf("inline part = %s %v", p.Type, p.Value.([]any)[0])
					}
				}
			}
			if inline != 1 {
				t.Errorf("%d inline parts, want 1", inline)
			}
		}},
		{file: "scratch.part0", typ: deltaPartType, check: func(t *testing.T, v []any, _ []DictEntry) {
			modes := map[uint32]bool{}
			for _, m := range v[0].([]any) {
				modes[be32(m.([]any)[2])] = true
			}
			for _, want := range []uint32{0o100644, 0o100755, 0o120777} {
				if !modes[want] {
					t.Errorf("mode %o missing from %v", want, v[0])
				}
			}
			if len(v[3].([]byte)) == 0 {
				t.Error("no delta ops")
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			data := readFixture(t, tc.file)
			if tc.header {
				data = filezHeader(t, data)
			}
			val, err := Unmarshal(tc.typ, data)
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			tuple, _ := val.([]any)
			dict, _ := val.([]DictEntry)
			tc.check(t, tuple, dict)
			out, err := Marshal(tc.typ, val)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if !bytes.Equal(out, data) {
				t.Fatalf("Marshal does not reproduce %s:\n got %x\nwant %x", tc.file, out, data)
			}
		})
	}
}

// TestGoldenChecksums checks object names: metadata objects are named by the
// SHA-256 of their bytes, content objects by the SHA-256 of the length-prefixed
// (uuuusa(ayay)) header followed by the file content.
func TestGoldenChecksums(t *testing.T) {
	env := fixtureEnv(t)
	for file, want := range map[string]string{
		"commit1.commit": env["COMMIT1"],
		"commit2.commit": env["COMMIT2"],
		"root.dirtree":   env["ROOT_DIRTREE"],
		"sub.dirtree":    env["SUB_DIRTREE"],
		"root.dirmeta":   env["ROOT_DIRMETA"],
	} {
		sum := sha256.Sum256(readFixture(t, file))
		if got := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("sha256(%s) = %s, want %s", file, got, want)
		}
	}

	for _, c := range []struct {
		file, content, want string
	}{
		{"hello.filez", "hello world\n", env["HELLO_FILE"]},
		{"link.filez", "", env["LINK_FILE"]},
		{"xattr.filez", "attrs\n", env["XATTR_FILE"]},
	} {
		v, err := Unmarshal(filezType, filezHeader(t, readFixture(t, c.file)))
		if err != nil {
			t.Fatal(err)
		}
		h, err := Marshal(fileHeaderType, v.([]any)[1:]) // drop the size
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.New()
		var prefix [8]byte
		binary.BigEndian.PutUint32(prefix[:], uint32(len(h)))
		sum.Write(prefix[:])
		sum.Write(h)
		sum.Write([]byte(c.content))
		if got := hex.EncodeToString(sum.Sum(nil)); got != c.want {
			t.Errorf("content checksum of %s = %s, want %s", c.file, got, c.want)
		}
	}
}

// TestGoldenNotNormal flips one padding byte in real objects; libostree
// rejects such objects, and so must Unmarshal.
func TestGoldenNotNormal(t *testing.T) {
	commit := readFixture(t, "commit1.commit")
	// "version\0" "1.0\0" then a zero padding byte before the variant's type.
	i := bytes.Index(commit, []byte("1.0\x00\x00s"))
	if i < 0 {
		t.Fatalf("version value not found in % x", commit)
	}
	bad := bytes.Clone(commit)
	bad[i+4] = 1 // the last NUL is now the string's, leaving the type string "\x01s"
	if _, err := Unmarshal(commitType, bad); !errors.Is(err, ErrNotNormal) {
		t.Errorf("corrupted commit: %v, want ErrNotNormal", err)
	}

	summary := readFixture(t, "summary")
	// "main\0" is followed by 3 bytes of padding before the 8-aligned t.
	if !bytes.HasPrefix(summary, []byte("main\x00\x00\x00\x00")) {
		t.Fatalf("unexpected summary start % x", summary[:8])
	}
	bad = bytes.Clone(summary)
	bad[6] = 0xff
	_, err := Unmarshal(summaryType, bad)
	if err == nil || !strings.Contains(err.Error(), "padding") {
		t.Errorf("summary with a non-zero padding byte: %v", err)
	}

	// A trailing byte shifts the framing offset table.
	bad = append(bytes.Clone(commit), 0)
	if _, err := Unmarshal(commitType, bad); !errors.Is(err, ErrNotNormal) {
		t.Errorf("commit with a trailing byte: %v, want ErrNotNormal", err)
	}
}
