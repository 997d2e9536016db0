package ostree

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// CheckoutOptions tunes Checkout.
type CheckoutOptions struct {
	// Owners applies uid/gid (needs root); otherwise files belong to the
	// caller.
	Owners bool
	// Xattrs applies extended attributes.
	Xattrs bool
	// AllowEscapingSymlinks writes relative symlinks that point above the
	// checkout root; they are refused by default.
	AllowEscapingSymlinks bool
}

// Checkout writes the tree of commit to dest, which must not exist. The
// tree is written to a temporary sibling directory and renamed to dest only
// when complete and verified, so a failure leaves nothing at dest. All
// writes go through an os.Root: no name or symlink in the tree can make
// us write outside it.
func (r *Repo) Checkout(ctx context.Context, commit Checksum, dest string, opts CheckoutOptions) error {
	cm, err := r.ReadCommit(commit)
	if err != nil {
		return fmt.Errorf("checkout: %w", err)
	}
	if _, err := os.Lstat(dest); err == nil {
		return fmt.Errorf("checkout: %s already exists", dest)
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	tmp := dest + ".tmp-" + hex.EncodeToString(rnd[:])
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fmt.Errorf("checkout: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			makeWritable(tmp)
			os.RemoveAll(tmp)
		}
	}()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return fmt.Errorf("checkout: %w", err)
	}
	defer root.Close()
	c := &checkouter{repo: r, root: root, opts: opts, ctx: ctx, rootPath: tmp}
	if err := c.dir(".", cm.RootTree, cm.RootMeta); err != nil {
		return fmt.Errorf("checkout %s: %w", commit, err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		return fmt.Errorf("checkout: %w", err)
	}
	ok = true
	return nil
}

type checkouter struct {
	repo     *Repo
	root     *os.Root
	opts     CheckoutOptions
	ctx      context.Context
	rootPath string
}

// FileMode turns an OSTree st_mode into an os.FileMode: permissions plus
// setuid, setgid and sticky bits.
func FileMode(mode uint32) os.FileMode {
	m := os.FileMode(mode & 0o777)
	if mode&unix.S_ISUID != 0 {
		m |= os.ModeSetuid
	}
	if mode&unix.S_ISGID != 0 {
		m |= os.ModeSetgid
	}
	if mode&unix.S_ISVTX != 0 {
		m |= os.ModeSticky
	}
	return m
}

func (c *checkouter) dir(rel string, tree, meta Checksum) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	dm, err := c.repo.ReadDirMeta(meta)
	if err != nil {
		return err
	}
	dt, err := c.repo.ReadDirTree(tree)
	if err != nil {
		return err
	}
	if rel != "." {
		if err := c.root.Mkdir(rel, 0o700); err != nil {
			return err
		}
	}
	for _, f := range dt.Files {
		if err := c.file(path.Join(rel, f.Name), rel, f.Checksum); err != nil {
			return err
		}
	}
	for _, d := range dt.Dirs {
		if err := c.dir(path.Join(rel, d.Name), d.Tree, d.Meta); err != nil {
			return err
		}
	}
	// Permissions last, so read-only directories can be filled first.
	if c.opts.Owners {
		if err := c.root.Lchown(rel, int(dm.UID), int(dm.GID)); err != nil {
			return err
		}
	}
	if c.opts.Xattrs {
		if err := c.setXattrs(rel, dm.Xattrs); err != nil {
			return err
		}
	}
	return c.root.Chmod(rel, FileMode(dm.Mode))
}

func (c *checkouter) file(rel, dir string, sum Checksum) error {
	cr, err := c.repo.OpenContent(sum)
	if err != nil {
		return err
	}
	defer cr.Close()
	h := cr.Header
	if h.IsSymlink() {
		if !c.opts.AllowEscapingSymlinks && SymlinkEscapes(dir, h.SymlinkTarget) {
			return fmt.Errorf("%w: symlink %s -> %q points outside the tree", ErrBadName, rel, truncate(h.SymlinkTarget))
		}
		if err := c.root.Symlink(h.SymlinkTarget, rel); err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, cr); err != nil { // verifies the checksum
			return err
		}
	} else {
		f, err := c.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, cr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
	}
	if c.opts.Owners {
		if err := c.root.Lchown(rel, int(h.UID), int(h.GID)); err != nil {
			return err
		}
	}
	if c.opts.Xattrs {
		if err := c.setXattrs(rel, h.Xattrs); err != nil {
			return err
		}
	}
	if h.IsSymlink() {
		return nil
	}
	return c.root.Chmod(rel, FileMode(h.Mode))
}

func (c *checkouter) setXattrs(rel string, x []Xattr) error {
	// Every directory on the way was created by this checkout, so the path
	// holds no symlink; Lsetxattr does not follow the last component.
	p := filepath.Join(c.rootPath, filepath.FromSlash(rel))
	for _, a := range x {
		if err := unix.Lsetxattr(p, a.Name, a.Value, 0); err != nil {
			return fmt.Errorf("xattr %s on %s: %w", a.Name, rel, err)
		}
	}
	return nil
}

// makeWritable lets RemoveAll delete a partial checkout with 0555 dirs.
func makeWritable(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
}
