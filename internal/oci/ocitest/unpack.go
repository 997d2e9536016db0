package ocitest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"golang.org/x/sys/unix"
)

// Node is what a tree holds at one path.
type Node struct {
	Type     byte   // 'd', 'f' or 'l'
	Mode     uint32 // permission, setuid, setgid and sticky bits
	UID, GID int
	Xattrs   map[string]string
	Data     string // SHA-256 of the content
	Link     string // symlink target
}

// ApplyLayers applies gzip tar layers in order, as an unpacker would, and
// returns the resulting tree. Hardlinks copy their target's node.
func ApplyLayers(t testing.TB, layers [][]byte) map[string]Node {
	t.Helper()
	tree := map[string]Node{}
	for i, l := range layers {
		zr, err := gzip.NewReader(bytes.NewReader(l))
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("layer %d: %v", i, err)
			}
			name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
			if strings.HasPrefix(filepath.Base(name), ".wh.") {
				t.Fatalf("layer %d: whiteout %s", i, h.Name)
			}
			n := Node{Mode: uint32(h.Mode & 0o7777), UID: h.Uid, GID: h.Gid}
			for k, v := range h.PAXRecords {
				if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
					if n.Xattrs == nil {
						n.Xattrs = map[string]string{}
					}
					n.Xattrs[x] = v
				}
			}
			switch h.Typeflag {
			case tar.TypeDir:
				n.Type = 'd'
			case tar.TypeReg:
				n.Type = 'f'
				sum := sha256.New()
				if _, err := io.Copy(sum, tr); err != nil {
					t.Fatal(err)
				}
				n.Data = hex.EncodeToString(sum.Sum(nil))
			case tar.TypeSymlink:
				n.Type, n.Link = 'l', h.Linkname
			case tar.TypeLink:
				target, ok := tree[h.Linkname]
				if !ok || target.Type != 'f' {
					t.Fatalf("layer %d: hardlink %s to missing %s", i, name, h.Linkname)
				}
				n = target
			default:
				t.Fatalf("layer %d: %s has type %c", i, name, h.Typeflag)
			}
			if dir := filepath.Dir(name); dir != "." {
				if p, ok := tree[dir]; !ok || p.Type != 'd' {
					t.Fatalf("layer %d: %s comes before its directory", i, name)
				}
			}
			tree[name] = n
		}
	}
	return tree
}

// ReadDir walks a directory on disk. Owners and xattrs are read only when
// withOwners is set (a checkout made as root).
func ReadDir(t testing.TB, root string, withOwners bool) map[string]Node {
	t.Helper()
	tree := map[string]Node{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		n := Node{Mode: st.Mode & 0o7777}
		if withOwners {
			n.UID, n.GID = int(st.Uid), int(st.Gid)
			n.Xattrs = xattrs(t, p)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			n.Type = 'd'
		case unix.S_IFLNK:
			n.Type, n.Mode = 'l', 0o777
			if n.Link, err = os.Readlink(p); err != nil {
				return err
			}
		case unix.S_IFREG:
			n.Type = 'f'
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(b)
			n.Data = hex.EncodeToString(s[:])
		default:
			return errors.New("unexpected file type at " + rel)
		}
		tree[filepath.ToSlash(rel)] = n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func xattrs(t testing.TB, p string) map[string]string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("xattrs of %s: %v", p, err)
	}
	var out map[string]string
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		val := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, val)
		if err != nil {
			t.Fatalf("xattr %s of %s: %v", name, p, err)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = string(val[:m])
	}
	return out
}
