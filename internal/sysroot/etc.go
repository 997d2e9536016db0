package sysroot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

const specialBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// copyRegular copies the regular file src to the new file rel inside root,
// keeping its mode (and owner if owners).
func copyRegular(root *os.Root, rel, src string, owners bool) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil && owners {
		if sys, ok := st.Sys().(*unix.Stat_t); ok {
			err = out.Chown(int(sys.Uid), int(sys.Gid))
		}
	}
	if err == nil {
		err = out.Chmod(st.Mode() & specialBits)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// copyEntry copies one entry (not a directory's children) from the path p
// to rel inside root. Directories are created writable; their final mode
// is recorded in modes (keyed by rel) and applied when the deployment is
// complete. Devices, fifos and sockets have no place in /etc and are
// skipped.
func copyEntry(root *os.Root, rel, p string, st fs.FileInfo, owners bool, modes map[string]os.FileMode) error {
	var uid, gid = -1, -1
	if sys, ok := st.Sys().(*unix.Stat_t); ok && owners {
		uid, gid = int(sys.Uid), int(sys.Gid)
	}
	switch {
	case st.IsDir():
		if err := root.Mkdir(rel, 0o700); err != nil {
			return err
		}
		modes[rel] = st.Mode() & specialBits
	case st.Mode()&fs.ModeSymlink != 0:
		t, err := os.Readlink(p)
		if err != nil {
			return err
		}
		if err := root.Symlink(t, rel); err != nil {
			return err
		}
	case st.Mode().IsRegular():
		return copyRegular(root, rel, p, owners)
	default:
		return nil
	}
	if uid >= 0 {
		return root.Lchown(rel, uid, gid)
	}
	return nil
}

// setupEtc builds etc/ from usr/etc and merges the current deployment's
// local changes into it (rules in the package doc).
func (b *builder) setupEtc() error {
	if b.hasEtc && b.hasUsrEtc {
		return fmt.Errorf("%w: tree has both etc and usr/etc", ErrBadTree)
	}
	if !b.hasUsrEtc {
		return nil
	}
	usrEtc := filepath.Join(b.rootPath, "usr", "etc")
	if err := b.root.Mkdir("etc", 0o700); err != nil {
		return err
	}
	etc, err := b.root.OpenRoot("etc")
	if err != nil {
		return err
	}
	defer etc.Close()
	// usr/etc's directories are still writable: take their final modes
	// from the commit.
	b.etcModes = map[string]os.FileMode{".": b.modeOf["usr/etc"]}
	err = filepath.WalkDir(usrEtc, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(usrEtc, p)
		if err != nil || rel == "." {
			return err
		}
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if err := copyEntry(etc, rel, p, st, b.owners, b.etcModes); err != nil {
			return err
		}
		if st.IsDir() {
			b.etcModes[rel] = b.modeOf[filepath.ToSlash(filepath.Join("usr/etc", rel))]
		}
		return nil
	})
	if err != nil {
		return err
	}
	cur, err := b.s.Current()
	if err == nil {
		err = b.mergeEtc(etc, filepath.Join(cur.Path, "etc"), filepath.Join(cur.Path, "usr", "etc"))
	} else if errors.Is(err, ErrNoDeployment) {
		err = nil
	}
	if err != nil {
		return err
	}
	for rel, m := range b.etcModes {
		st, err := etc.Lstat(rel)
		if err != nil || !st.IsDir() {
			continue // replaced or deleted by the merge
		}
		b.dirModes = append(b.dirModes, dirMode{filepath.Join("etc", rel), m})
	}
	return nil
}

// differs reports whether two lstat'ed entries differ in type, mode bits,
// symlink target or content.
func differs(a, b string, sa, sb fs.FileInfo) (bool, error) {
	if sa.Mode().Type() != sb.Mode().Type() || sa.Mode()&specialBits != sb.Mode()&specialBits {
		return true, nil
	}
	switch {
	case sa.Mode()&fs.ModeSymlink != 0:
		ta, err := os.Readlink(a)
		if err != nil {
			return false, err
		}
		tb, err := os.Readlink(b)
		if err != nil {
			return false, err
		}
		return ta != tb, nil
	case sa.Mode().IsRegular():
		if sa.Size() != sb.Size() {
			return true, nil
		}
		if os.SameFile(sa, sb) {
			return false, nil
		}
		return filesDiffer(a, b)
	}
	return false, nil
}

func filesDiffer(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return true, nil
		}
		if ea == io.EOF || ea == io.ErrUnexpectedEOF {
			return eb != io.EOF && eb != io.ErrUnexpectedEOF, nil
		}
		if ea != nil {
			return false, ea
		}
		if eb != nil {
			return false, eb
		}
	}
}

// mergeEtc applies to the new etc (etc) the differences between the
// current deployment's etc (local) and usr/etc (oldDef).
func (b *builder) mergeEtc(etc *os.Root, local, oldDef string) error {
	if _, err := os.Lstat(local); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // no local etc at all: keep the new defaults
		}
		return err
	}
	// Deleted locally: present in the old defaults, missing from local etc.
	err := filepath.WalkDir(oldDef, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == oldDef && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		rel, err := filepath.Rel(oldDef, p)
		if err != nil || rel == "." {
			return err
		}
		_, err = os.Lstat(filepath.Join(local, rel))
		if errors.Is(err, fs.ErrNotExist) {
			if err := etc.RemoveAll(rel); err != nil {
				return fmt.Errorf("remove %s: %w", rel, err)
			}
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	// Added or modified locally.
	return filepath.WalkDir(local, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(local, p)
		if err != nil {
			return err
		}
		lst, err := os.Lstat(p)
		if err != nil {
			return err
		}
		changed := true
		if ost, err := os.Lstat(filepath.Join(oldDef, rel)); err == nil {
			if changed, err = differs(p, filepath.Join(oldDef, rel), lst, ost); err != nil {
				return err
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		nst, nerr := etc.Lstat(rel)
		if nerr != nil && !errors.Is(nerr, fs.ErrNotExist) {
			return nerr
		}
		if lst.IsDir() {
			switch {
			case !changed && nerr == nil && !nst.IsDir():
				return fs.SkipDir // upstream replaced an untouched directory
			case nerr == nil && nst.IsDir():
				if changed {
					b.etcModes[rel] = lst.Mode() & specialBits
				}
				return nil
			case !changed:
				return nil // removed upstream; changed children recreate it
			}
		} else if !changed {
			return nil
		}
		if rel == "." {
			return nil
		}
		if nerr == nil {
			if err := etc.RemoveAll(rel); err != nil {
				return err
			}
		}
		if err := etc.MkdirAll(filepath.Dir(rel), 0o755); err != nil {
			return err
		}
		return copyEntry(etc, rel, p, lst, b.owners, b.etcModes)
	})
}
