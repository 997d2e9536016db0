package ostree

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/mxos-linux/mxos-update/internal/gvariant"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// foreignRepo reads objects of any local OSTree repository: archive,
// bare or bare-user, as `ostree` writes them.
type foreignRepo struct {
	path string
	mode string
}

func openForeign(dir string) (*foreignRepo, error) {
	cfg, err := os.ReadFile(filepath.Join(dir, "config"))
	if err != nil {
		return nil, fmt.Errorf("open source repository %s: %w", dir, err)
	}
	mode := configValue(string(cfg), "core", "mode")
	switch mode {
	case "archive", "archive-z2", "bare", "bare-user", "bare-user-only":
	default:
		return nil, fmt.Errorf("open source repository %s: %w: mode %q", dir, ErrUnsupported, mode)
	}
	return &foreignRepo{path: dir, mode: mode}, nil
}

func (f *foreignRepo) archive() bool { return strings.HasPrefix(f.mode, "archive") }

func (f *foreignRepo) objPath(c Checksum, t ObjectType) string {
	h := c.String()
	ext := t.Ext()
	if t == ObjFile && !f.archive() {
		ext = "file"
	}
	return filepath.Join(f.path, "objects", h[:2], h[2:]+"."+ext)
}

// resolve accepts a checksum, a ref, or "remote:ref".
func (f *foreignRepo) resolve(ref string) (Checksum, error) {
	if c, err := ParseChecksum(ref); err == nil {
		return c, nil
	}
	p := filepath.Join(f.path, "refs", "heads", filepath.FromSlash(ref))
	if remote, name, ok := strings.Cut(ref, ":"); ok {
		if err := ValidateRef(name); err != nil {
			return Checksum{}, err
		}
		p = filepath.Join(f.path, "refs", "remotes", remote, filepath.FromSlash(name))
	} else if err := ValidateRef(ref); err != nil {
		return Checksum{}, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return Checksum{}, fmt.Errorf("ref %s in %s: %w", ref, f.path, err)
	}
	return ParseChecksum(string(bytes.TrimSpace(b)))
}

func (f *foreignRepo) readMetadata(c Checksum, t ObjectType) ([]byte, error) {
	b, err := readLimited(f.objPath(c, t), MaxMetadataSize)
	if err != nil {
		return nil, &ObjectError{c, t, err}
	}
	if sha256.Sum256(b) != c {
		return nil, &ObjectError{c, t, fmt.Errorf("%w: bytes do not match the checksum", ErrCorrupt)}
	}
	return b, nil
}

// ImportCommit copies a commit, its detached metadata and its whole tree
// from the repository at srcDir into this transaction, keeping every
// checksum. Each object is verified before it is staged. The commit's
// parents are not copied. Call Commit afterwards to make them visible.
func (t *Txn) ImportCommit(ctx context.Context, srcDir, ref string) (Checksum, error) {
	src, err := openForeign(srcDir)
	if err != nil {
		return Checksum{}, err
	}
	commit, err := src.resolve(ref)
	if err != nil {
		return Checksum{}, err
	}
	cb, err := src.readMetadata(commit, ObjCommit)
	if err != nil {
		return commit, fmt.Errorf("import: %w", err)
	}
	cm, err := ParseCommit(cb)
	if err != nil {
		return commit, fmt.Errorf("import: %w", &ObjectError{commit, ObjCommit, err})
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0) + 1)
	seen := map[Checksum]bool{}
	var walk func(tree, meta Checksum) error
	walk = func(tree, meta Checksum) error {
		if err := gctx.Err(); err != nil {
			return err
		}
		mb, err := src.readMetadata(meta, ObjDirMeta)
		if err != nil {
			return err
		}
		if _, err := t.WriteMetadata(ObjDirMeta, mb, meta); err != nil {
			return err
		}
		if seen[tree] {
			return nil
		}
		seen[tree] = true
		tb, err := src.readMetadata(tree, ObjDirTree)
		if err != nil {
			return err
		}
		dt, err := ParseDirTree(tb)
		if err != nil {
			return &ObjectError{tree, ObjDirTree, err}
		}
		for _, fe := range dt.Files {
			if seen[fe.Checksum] || t.HasObject(fe.Checksum, ObjFile) {
				continue
			}
			seen[fe.Checksum] = true
			g.Go(func() error { return t.importContent(src, fe.Checksum) })
		}
		for _, d := range dt.Dirs {
			if err := walk(d.Tree, d.Meta); err != nil {
				return err
			}
		}
		if _, err := t.WriteMetadata(ObjDirTree, tb, tree); err != nil {
			return err
		}
		return nil
	}
	werr := firstCause(walk(cm.RootTree, cm.RootMeta), g.Wait())
	if werr != nil {
		return commit, fmt.Errorf("import %s: %w", commit, werr)
	}
	if _, err := t.WriteMetadata(ObjCommit, cb, commit); err != nil {
		return commit, fmt.Errorf("import: %w", err)
	}
	if mb, err := readLimited(src.objPath(commit, ObjCommitMeta), MaxMetadataSize); err == nil {
		md, err := ParseMetadata(mb)
		if err != nil {
			return commit, fmt.Errorf("import: %w", &ObjectError{commit, ObjCommitMeta, err})
		}
		t.pendingMeta(commit, md)
	} else if !errors.Is(err, os.ErrNotExist) {
		return commit, fmt.Errorf("import: %w", err)
	}
	return commit, nil
}

func (t *Txn) importContent(src *foreignRepo, c Checksum) error {
	p := src.objPath(c, ObjFile)
	if src.archive() {
		f, err := os.Open(p)
		if err != nil {
			return &ObjectError{c, ObjFile, err}
		}
		defer f.Close()
		return t.WriteFilez(c, f)
	}
	st, err := os.Lstat(p)
	if err != nil {
		return &ObjectError{c, ObjFile, err}
	}
	sys := st.Sys().(*syscall.Stat_t)
	var h FileHeader
	var content io.Reader
	switch src.mode {
	case "bare":
		h = FileHeader{UID: sys.Uid, GID: sys.Gid, Mode: sys.Mode & (ModeTypeMask | 0o7777)}
		if h.Xattrs, err = readXattrs(p); err != nil {
			return err
		}
		if st.Mode()&os.ModeSymlink != 0 {
			if h.SymlinkTarget, err = os.Readlink(p); err != nil {
				return err
			}
		}
	default: // bare-user, bare-user-only: metadata lives in user.ostreemeta
		meta, err := getXattr(p, "user.ostreemeta")
		if err != nil && src.mode == "bare-user" {
			return &ObjectError{c, ObjFile, err}
		}
		if meta != nil {
			v, err := gvariant.Unmarshal(DirMetaType, meta)
			if err != nil {
				return &ObjectError{c, ObjFile, fmt.Errorf("%w: user.ostreemeta: %v", ErrCorrupt, err)}
			}
			tv := v.([]any)
			x, err := xattrsFromGV(tv[3])
			if err != nil {
				return &ObjectError{c, ObjFile, err}
			}
			h = FileHeader{UID: be32(tv[0].(uint32)), GID: be32(tv[1].(uint32)), Mode: be32(tv[2].(uint32)), Xattrs: x}
		} else { // bare-user-only without metadata: ownership is root
			h = FileHeader{Mode: sys.Mode & (ModeTypeMask | 0o7777)}
		}
		if h.IsSymlink() {
			b, err := readLimited(p, 64<<10)
			if err != nil {
				return err
			}
			// ostree keeps the target NUL-terminated in the file.
			if i := bytes.IndexByte(b, 0); i >= 0 {
				b = b[:i]
			}
			h.SymlinkTarget = string(b)
		}
	}
	var f *os.File
	if !h.IsSymlink() {
		h.Size = uint64(st.Size())
		if f, err = os.Open(p); err != nil {
			return err
		}
		defer f.Close()
		content = f
	}
	_, err = t.WriteContent(&h, content, c)
	return err
}

func getXattr(p, name string) ([]byte, error) {
	buf := make([]byte, 4096)
	for {
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// pendingMeta remembers detached metadata to write once the commit is
// visible (WriteCommitMeta needs the commit object in place).
func (t *Txn) pendingMeta(c Checksum, md Metadata) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.metas == nil {
		t.metas = map[Checksum]Metadata{}
	}
	t.metas[c] = md
}
