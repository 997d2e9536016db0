package ostree

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// WriteTreeFromDir stores the directory dir and everything below it, and
// returns the root dirtree and dirmeta checksums. Symlinks are stored, not
// followed; hardlinked files are read once.
func (t *Txn) WriteTreeFromDir(ctx context.Context, dir string, opts CommitOptions) (tree, meta Checksum, err error) {
	tree, meta, _, err = t.writeTreeFromDir(ctx, dir, opts)
	return tree, meta, err
}

// writeTreeFromDir is WriteTreeFromDir; it also returns the most
// directories held in memory at once, waiting to be written (for tests).
func (t *Txn) writeTreeFromDir(ctx context.Context, dir string, opts CommitOptions) (tree, meta Checksum, held int, err error) {
	st, err := os.Lstat(dir)
	if err != nil {
		return tree, meta, 0, fmt.Errorf("commit %s: %w", dir, err)
	}
	if !st.IsDir() {
		return tree, meta, 0, fmt.Errorf("commit %s: not a directory", dir)
	}
	rootMeta, err := dirMetaOf(dir, st, opts.NoXattrs)
	if err != nil {
		return tree, meta, 0, err
	}
	b := newBuilder(ctx, t, opts, rootMeta)
	inodes := map[[2]uint64]*fileSlot{}
	if err := b.walkDir(dir, "", inodes); err != nil {
		return tree, meta, b.maxWalked, firstCause(err, b.g.Wait())
	}
	tree, meta, err = b.finish()
	return tree, meta, b.maxWalked, err
}

func (b *builder) walkDir(root, rel string, inodes map[[2]uint64]*fileSlot) error {
	full := filepath.Join(root, filepath.FromSlash(rel))
	ents, err := os.ReadDir(full)
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	for _, e := range ents {
		if err := b.ctx.Err(); err != nil {
			return err
		}
		name := e.Name()
		p := path.Join(rel, name)
		if err := ValidateFilename(name); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		fp := filepath.Join(full, name)
		st, err := os.Lstat(fp)
		if err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		sys, _ := st.Sys().(*syscall.Stat_t)
		if sys == nil {
			return fmt.Errorf("commit %s: no stat information", p)
		}
		switch st.Mode().Type() {
		case os.ModeDir:
			m, err := dirMetaOf(fp, st, b.opts.NoXattrs)
			if err != nil {
				return err
			}
			d, err := b.addDir(p, m)
			if err != nil {
				return err
			}
			if err := b.walkDir(root, p, inodes); err != nil {
				return err
			}
			if err := b.dirWalked(d); err != nil {
				return err
			}
		case os.ModeSymlink:
			target, err := os.Readlink(fp)
			if err != nil {
				return fmt.Errorf("commit: %w", err)
			}
			h := FileHeader{UID: sys.Uid, GID: sys.Gid, SymlinkTarget: target}
			if !b.opts.NoXattrs {
				if h.Xattrs, err = readXattrs(fp); err != nil {
					return err
				}
			}
			if _, err := b.addSymlink(p, h); err != nil {
				return err
			}
		case 0:
			key := [2]uint64{uint64(sys.Dev), sys.Ino}
			if slot, ok := inodes[key]; ok && sys.Nlink > 1 {
				if err := b.placeLink(p, slot); err != nil {
					return err
				}
				continue
			}
			h := FileHeader{UID: sys.Uid, GID: sys.Gid, Mode: ModeRegular | uint32(sys.Mode&0o7777), Size: uint64(st.Size())}
			if !b.opts.NoXattrs {
				if h.Xattrs, err = readXattrs(fp); err != nil {
					return err
				}
			}
			open := func() (io.ReadCloser, error) { return os.Open(fp) }
			slot, err := b.addRegular(p, h, open, nil)
			if err != nil {
				return err
			}
			if sys.Nlink > 1 {
				inodes[key] = slot
			}
		default:
			if b.opts.SkipSpecial {
				continue
			}
			return &SpecialFileError{Path: p, Kind: typeName(st.Mode())}
		}
	}
	return nil
}

func typeName(m os.FileMode) string {
	switch {
	case m&os.ModeDevice != 0:
		return "device node"
	case m&os.ModeNamedPipe != 0:
		return "FIFO"
	case m&os.ModeSocket != 0:
		return "socket"
	}
	return "special file"
}

func dirMetaOf(p string, st os.FileInfo, noXattrs bool) (DirMeta, error) {
	sys := st.Sys().(*syscall.Stat_t)
	m := DirMeta{UID: sys.Uid, GID: sys.Gid, Mode: ModeDir | uint32(sys.Mode&0o7777)}
	if !noXattrs {
		x, err := readXattrs(p)
		if err != nil {
			return m, err
		}
		m.Xattrs = x
	}
	return m, nil
}

// readXattrs lists a file's extended attributes without following symlinks.
func readXattrs(p string) ([]Xattr, error) {
	buf := make([]byte, 1024)
	var n int
	var err error
	for {
		n, err = unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		break
	}
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("xattrs of %s: %w", p, err)
	}
	var out []Xattr
	for _, name := range bytes.Split(buf[:n], []byte{0}) {
		if len(name) == 0 {
			continue
		}
		val := make([]byte, 256)
		for {
			m, err := unix.Lgetxattr(p, string(name), val)
			if errors.Is(err, unix.ERANGE) {
				val = make([]byte, len(val)*4)
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("xattr %s of %s: %w", name, p, err)
			}
			val = val[:m]
			break
		}
		out = append(out, Xattr{Name: string(name), Value: val})
	}
	sortXattrs(out)
	return out, nil
}

// WriteTreeFromTar stores the tree in a tar stream, plain, gzip or zstd
// compressed (detected from the first bytes). Paths with "..", absolute
// paths, hardlinks that leave the tree or name something not seen before,
// and (unless allowed) symlinks escaping the tree are refused.
func (t *Txn) WriteTreeFromTar(ctx context.Context, r io.Reader, opts CommitOptions) (tree, meta Checksum, err error) {
	dr, closeFn, err := decompressTar(r)
	if err != nil {
		return tree, meta, err
	}
	defer closeFn()
	b := newBuilder(ctx, t, opts, DirMeta{Mode: ModeDir | 0o755})
	if err := b.readTar(tar.NewReader(dr)); err != nil {
		return tree, meta, firstCause(err, b.g.Wait())
	}
	return b.finish()
}

func decompressTar(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, _ := br.Peek(4)
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("tarball: gzip: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxMemory(256<<20), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("tarball: zstd: %w", err)
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}

func (b *builder) readTar(tr *tar.Reader) error {
	regular := map[string]*fileSlot{}
	for {
		if err := b.ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tarball: %w", err)
		}
		name := hdr.Name
		parts, err := cleanPath(name)
		if err != nil {
			return fmt.Errorf("tarball: %w", err)
		}
		p := strings.Join(parts, "/")
		x := tarXattrs(hdr)
		perm := uint32(hdr.Mode) & 0o7777
		uid, gid := uint32(hdr.Uid), uint32(hdr.Gid)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if _, err := b.addDir(p, DirMeta{UID: uid, GID: gid, Mode: ModeDir | perm, Xattrs: x}); err != nil {
				return fmt.Errorf("tarball: %w", err)
			}
		case tar.TypeReg: // the reader maps the old TypeRegA to TypeReg
			if hdr.Size < 0 {
				return fmt.Errorf("tarball: %s: negative size", p)
			}
			h := FileHeader{UID: uid, GID: gid, Mode: ModeRegular | perm, Size: uint64(hdr.Size), Xattrs: x}
			slot, err := b.addBuffered(p, h, tr)
			if err != nil {
				return fmt.Errorf("tarball: %w", err)
			}
			regular[p] = slot
		case tar.TypeSymlink:
			if hdr.Linkname == "" {
				return fmt.Errorf("tarball: %s: symlink without a target", p)
			}
			if _, err := b.addSymlink(p, FileHeader{UID: uid, GID: gid, SymlinkTarget: hdr.Linkname, Xattrs: x}); err != nil {
				return fmt.Errorf("tarball: %w", err)
			}
			delete(regular, p)
		case tar.TypeLink:
			if strings.HasPrefix(hdr.Linkname, "/") {
				return fmt.Errorf("tarball: %w: hardlink %s -> %q is absolute", ErrBadName, p, truncate(hdr.Linkname))
			}
			tparts, err := cleanPath(hdr.Linkname)
			if err != nil {
				return fmt.Errorf("tarball: hardlink %s: %w", p, err)
			}
			slot, ok := regular[strings.Join(tparts, "/")]
			if !ok {
				return fmt.Errorf("tarball: %w: hardlink %s -> %q names no earlier regular file", ErrBadName, p, truncate(hdr.Linkname))
			}
			if _, err := b.place(p, slot); err != nil {
				return fmt.Errorf("tarball: %w", err)
			}
			regular[p] = slot
		case tar.TypeXGlobalHeader:
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			if b.opts.SkipSpecial {
				continue
			}
			return fmt.Errorf("tarball: %w", &SpecialFileError{Path: p, Kind: "device node or FIFO"})
		default:
			return fmt.Errorf("tarball: %w: %s has entry type %q", ErrUnsupported, p, hdr.Typeflag)
		}
	}
}

// tarXattrs reads PAX "SCHILY.xattr." records, the form GNU tar and
// libarchive write.
func tarXattrs(hdr *tar.Header) []Xattr {
	var out []Xattr
	for k, v := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && name != "" {
			out = append(out, Xattr{Name: name, Value: []byte(v)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// SpecialFileError is a device node, FIFO or socket in a source, which
// OSTree cannot store (CommitOptions.SkipSpecial leaves them out). It
// wraps ErrUnsupported.
type SpecialFileError struct {
	Path string // in the tree
	Kind string // "device node", "FIFO", "socket", "device node or FIFO"
}

func (e *SpecialFileError) Error() string {
	return fmt.Sprintf("%v: %s is a %s; OSTree stores only files, directories and symlinks", ErrUnsupported, e.Path, e.Kind)
}

func (e *SpecialFileError) Unwrap() error { return ErrUnsupported }
