package sysroot

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/storage"
)

// Deploy checks commit out of repo as a new deployment (not yet the
// default; see Switch). Regular files are hardlinked from the object cache
// (filled from repo as needed), etc/ is built from usr/etc and merged with
// the current deployment's local changes (see the package doc). A commit
// marked bad is refused with ErrBadCommit.
func (s *Sysroot) Deploy(ctx context.Context, repo *ostree.Repo, commit ostree.Checksum, origin Origin) (Deployment, error) {
	unlock, err := s.lock()
	if err != nil {
		return Deployment{}, err
	}
	defer unlock()
	st, err := s.loadState()
	if err != nil {
		return Deployment{}, err
	}
	if _, bad := st.Bad[commit.String()]; bad {
		return Deployment{}, fmt.Errorf("deploy %s: %w", commit, ErrBadCommit)
	}
	cm, err := repo.ReadCommit(commit)
	if err != nil {
		return Deployment{}, fmt.Errorf("deploy %s: %w", commit, err)
	}
	serial, err := s.nextSerial(commit)
	if err != nil {
		return Deployment{}, fmt.Errorf("deploy %s: %w", commit, err)
	}
	name := commit.String() + "." + strconv.Itoa(serial)
	final := filepath.Join(s.deployDir(), name)
	tmp := final + ".tmp-" + randSuffix()
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return Deployment{}, fmt.Errorf("deploy %s: %w", commit, err)
	}
	ok := false
	defer func() {
		if !ok {
			removeTree(tmp)
			os.Remove(final + ".origin")
		}
	}()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return Deployment{}, fmt.Errorf("deploy %s: %w", commit, err)
	}
	defer root.Close()
	b := &builder{s: s, repo: repo, ctx: ctx, root: root, rootPath: tmp, owners: os.Geteuid() == 0}
	if err := b.dir(".", cm.RootTree, cm.RootMeta, false); err != nil {
		return Deployment{}, fmt.Errorf("deploy %s: %w", commit, err)
	}
	if err := b.setupEtc(); err != nil {
		return Deployment{}, fmt.Errorf("deploy %s: /etc: %w", commit, err)
	}
	// Directory modes last, deepest first, so read-only dirs could be filled.
	for i := len(b.dirModes) - 1; i >= 0; i-- {
		dm := b.dirModes[i]
		if err := root.Chmod(dm.rel, dm.mode); err != nil {
			return Deployment{}, fmt.Errorf("deploy %s: %w", commit, err)
		}
	}
	if err := syncFS(tmp); err != nil {
		return Deployment{}, fmt.Errorf("deploy %s: sync: %w", commit, err)
	}
	origin.Commit = commit.String()
	if origin.Created.IsZero() {
		origin.Created = s.Now().UTC()
	}
	ob, err := json.MarshalIndent(origin, "", "  ")
	if err != nil {
		return Deployment{}, fmt.Errorf("deploy %s: %w", commit, err)
	}
	if err := WriteFileAtomic(final+".origin", append(ob, '\n')); err != nil {
		return Deployment{}, fmt.Errorf("deploy %s: origin: %w", commit, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return Deployment{}, fmt.Errorf("deploy %s: %w", commit, err)
	}
	ok = true
	if err := storage.SyncDir(s.deployDir()); err != nil {
		return Deployment{}, fmt.Errorf("deploy %s: %w", commit, err)
	}
	return Deployment{Name: name, Commit: commit, Serial: serial, Path: final, Origin: origin}, nil
}

func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

func (s *Sysroot) nextSerial(commit ostree.Checksum) (int, error) {
	ents, err := os.ReadDir(s.deployDir())
	if err != nil {
		return 0, err
	}
	next := 0
	for _, e := range ents {
		if c, n, ok := parseName(e.Name()); ok && c == commit && n >= next {
			next = n + 1
		}
	}
	return next, nil
}

type dirMode struct {
	rel  string
	mode os.FileMode
}

type builder struct {
	s         *Sysroot
	repo      *ostree.Repo
	ctx       context.Context
	root      *os.Root
	rootPath  string
	owners    bool
	dirModes  []dirMode
	hasEtc    bool // top-level etc in the commit
	hasUsrEtc bool
	etcModes  map[string]os.FileMode // final modes of dirs under etc/
	modeOf    map[string]os.FileMode // final modes of the commit's dirs
}

func (b *builder) dir(rel string, tree, meta ostree.Checksum, copyFiles bool) error {
	if err := b.ctx.Err(); err != nil {
		return err
	}
	dm, err := b.repo.ReadDirMeta(meta)
	if err != nil {
		return err
	}
	dt, err := b.repo.ReadDirTree(tree)
	if err != nil {
		return err
	}
	if rel != "." {
		if err := b.root.Mkdir(rel, 0o700); err != nil {
			return err
		}
	}
	for _, f := range dt.Files {
		if err := ostree.ValidateFilename(f.Name); err != nil { // parsers already refuse; belt and braces
			return fmt.Errorf("%w: %v", ErrBadTree, err)
		}
		if err := b.file(path.Join(rel, f.Name), rel, f.Checksum, copyFiles); err != nil {
			return err
		}
	}
	for _, d := range dt.Dirs {
		if err := ostree.ValidateFilename(d.Name); err != nil {
			return fmt.Errorf("%w: %v", ErrBadTree, err)
		}
		sub := path.Join(rel, d.Name)
		cp := copyFiles
		switch sub {
		case "etc":
			b.hasEtc, cp = true, true
		case "usr/etc":
			b.hasUsrEtc = true
		}
		if err := b.dir(sub, d.Tree, d.Meta, cp); err != nil {
			return err
		}
	}
	if b.owners {
		if err := b.root.Lchown(rel, int(dm.UID), int(dm.GID)); err != nil {
			return err
		}
	}
	if b.owners {
		if err := b.setXattrs(rel, dm.Xattrs); err != nil {
			return err
		}
	}
	b.dirModes = append(b.dirModes, dirMode{rel, ostree.FileMode(dm.Mode)})
	if b.modeOf == nil {
		b.modeOf = map[string]os.FileMode{}
	}
	b.modeOf[rel] = ostree.FileMode(dm.Mode)
	return nil
}

func (b *builder) setXattrs(rel string, x []ostree.Xattr) error {
	// Every directory on the way was created by this deployment, so the
	// path holds no symlink; Lsetxattr does not follow the last component.
	p := filepath.Join(b.rootPath, filepath.FromSlash(rel))
	for _, a := range x {
		if err := unix.Lsetxattr(p, a.Name, a.Value, 0); err != nil {
			return fmt.Errorf("xattr %s on %s: %w", a.Name, rel, err)
		}
	}
	return nil
}

func (b *builder) cachePath(sum ostree.Checksum) string {
	h := sum.String()
	return filepath.Join(b.s.cacheDir(), h[:2], h[2:])
}

func (b *builder) file(rel, dir string, sum ostree.Checksum, copyFile bool) error {
	if err := b.ctx.Err(); err != nil {
		return err
	}
	cache := b.cachePath(sum)
	dst := filepath.Join(b.rootPath, filepath.FromSlash(rel))
	if st, err := os.Lstat(cache); err == nil && st.Mode().IsRegular() {
		if copyFile {
			return copyRegular(b.root, rel, cache, b.owners)
		}
		return os.Link(cache, dst)
	}
	cr, err := b.repo.OpenContent(sum)
	if err != nil {
		return err
	}
	defer cr.Close()
	h := cr.Header
	if h.IsSymlink() {
		if ostree.SymlinkEscapes(dir, h.SymlinkTarget) {
			return fmt.Errorf("%w: symlink %s -> %q points outside the deployment", ErrBadTree, rel, h.SymlinkTarget)
		}
		if _, err := io.Copy(io.Discard, cr); err != nil { // verifies the checksum
			return fmt.Errorf("%s: %w", rel, err)
		}
		if err := b.root.Symlink(h.SymlinkTarget, rel); err != nil {
			return err
		}
		if b.owners {
			if err := b.root.Lchown(rel, int(h.UID), int(h.GID)); err != nil {
				return err
			}
			return b.setXattrs(rel, h.Xattrs)
		}
		return nil
	}
	if err := b.fillCache(cache, cr); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	if copyFile {
		return copyRegular(b.root, rel, cache, b.owners)
	}
	return os.Link(cache, dst)
}

// fillCache writes the verified content of cr to the cache path through a
// synced temporary file, with the object's mode, owner and xattrs.
func (b *builder) fillCache(cache string, cr *ostree.ContentReader) error {
	dir := filepath.Dir(cache)
	if err := storage.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".tmp-"+randSuffix())
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	h := cr.Header
	_, err = io.Copy(f, cr)
	if err == nil && b.owners {
		err = f.Chown(int(h.UID), int(h.GID))
		for _, a := range h.Xattrs {
			if err == nil {
				err = unix.Fsetxattr(int(f.Fd()), a.Name, a.Value, 0)
			}
		}
	}
	if err == nil {
		err = f.Chmod(ostree.FileMode(h.Mode))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, cache)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return storage.SyncDir(dir)
}
