package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// WriteOption changes where WriteFile puts its temporary file or how it
// installs it.
type WriteOption func(*writeOptions)

type writeOptions struct {
	tempDir   string // directory for a randomly named temporary file
	tempPath  string // exact temporary path
	noClobber bool
}

// TempDir makes WriteFile create its temporary file in dir (it must be on
// the same file system as the destination), so that whoever owns dir can
// clear what a crash left there.
func TempDir(dir string) WriteOption { return func(o *writeOptions) { o.tempDir = dir } }

// TempPath makes WriteFile use exactly path as its temporary file
// (truncated if present), so that opening the owner's directory after a
// crash can remove it by name.
func TempPath(path string) WriteOption { return func(o *writeOptions) { o.tempPath = path } }

// NoClobber makes WriteFile fail with fs.ErrExist instead of replacing an
// existing file: the synced temporary file is hard-linked into place,
// which, unlike rename, fails when the name is taken (on file systems
// without hard links it is renamed after a fresh existence check).
func NoClobber() WriteOption { return func(o *writeOptions) { o.noClobber = true } }

// WriteFile is the one durable write of this code base: data goes to a
// temporary file, which is fsynced, given perm (exactly, not subject to
// the umask), renamed over path (or linked, with NoClobber), and then the
// directory holding path is fsynced, so that after a crash or a power cut
// path holds the old content or the new, never a mix or nothing. Missing
// parent directories are made with MkdirAll, which syncs them too.
func WriteFile(path string, data []byte, perm fs.FileMode, opts ...WriteOption) (err error) {
	var o writeOptions
	for _, opt := range opts {
		opt(&o)
	}
	dir := filepath.Dir(path)
	if err := MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var f *os.File
	switch {
	case o.tempPath != "":
		f, err = os.OpenFile(o.tempPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	default:
		td := o.tempDir
		if td == "" {
			td = dir
		}
		f, err = os.CreateTemp(td, ".tmp-"+filepath.Base(path)+"-")
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	installed := false
	defer func() {
		if f != nil {
			f.Close()
		}
		if !installed || o.noClobber {
			os.Remove(tmp)
		}
	}()
	// Chmod on the descriptor is not subject to the umask, and comes
	// before the data so that a secret is never more open than perm.
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if o.noClobber {
		if err := os.Link(tmp, path); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("write %s: %w", path, fs.ErrExist)
			}
			// A file system without hard links: rename after a fresh
			// existence check.
			if _, serr := os.Lstat(path); serr == nil {
				return fmt.Errorf("write %s: %w", path, fs.ErrExist)
			}
			if err := os.Rename(tmp, path); err != nil {
				return fmt.Errorf("write %s: %w", path, err)
			}
		}
	} else if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	installed = true
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Rename renames from to to and fsyncs the directories of both, making
// the move durable. The caller must have synced what from holds.
func Rename(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return err
	}
	if err := SyncDir(filepath.Dir(to)); err != nil {
		return err
	}
	if filepath.Dir(from) != filepath.Dir(to) {
		return SyncDir(filepath.Dir(from))
	}
	return nil
}

// MkdirAll is os.MkdirAll made durable: the directory of every directory
// it creates is fsynced, so a file later written and synced in path does
// not vanish with its parent on a power cut. When path already exists
// nothing is synced.
func MkdirAll(path string, perm fs.FileMode) error {
	if fi, err := os.Stat(path); err == nil {
		if fi.IsDir() {
			return nil
		}
		return &fs.PathError{Op: "mkdir", Path: path, Err: unix.ENOTDIR}
	}
	// The missing directories, deepest first.
	var missing []string
	for p := filepath.Clean(path); ; {
		if _, err := os.Lstat(p); err == nil {
			break
		}
		missing = append(missing, p)
		up := filepath.Dir(p)
		if up == p {
			break
		}
		p = up
	}
	if err := os.MkdirAll(path, perm); err != nil {
		return err
	}
	for _, d := range missing {
		if err := SyncDir(filepath.Dir(d)); err != nil {
			return err
		}
	}
	return nil
}

// SyncDir fsyncs a directory, making the renames, creations and removals
// in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// Syncfs flushes the whole file system holding dir: one call instead of an
// fsync per file, as libostree does at the end of a transaction.
func Syncfs(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}
