package object

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/mxos-linux/mxos-update/internal/storage"
)

// Dir names inside a directory store (CheckKey keeps keys away from them).
const (
	dirTmp  = reservedPrefix + "tmp"
	dirLock = reservedPrefix + "lock"
)

// staleTmp is how old a temporary file must be before NewDir removes it.
const staleTmp = time.Hour

// Dir is a Store on a local directory: the default, and the model the
// S3 backend follows. Keys are paths below the directory, opened through
// an os.Root so that no key and no symbolic link planted in the
// directory reaches outside it. Writes are durable (temporary file in
// .mxos-tmp, fsync, rename, directory fsync); conditional writes check and
// rename under a lock that is both a mutex and an flock(2) on .mxos-lock,
// so two processes on one machine cannot interleave either.
type Dir struct {
	dir  string
	root *os.Root
	mu   sync.Mutex
	lock *os.File
}

var _ Store = (*Dir)(nil)

// NewDir opens (creating if needed) a directory store and removes
// temporary files a crash left behind.
func NewDir(dir string) (*Dir, error) {
	if err := storage.MkdirAll(filepath.Join(dir, dirTmp), 0o755); err != nil {
		return nil, fmt.Errorf("object store %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", dir, err)
	}
	lock, err := root.OpenFile(dirLock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("object store %s: %w", dir, err)
	}
	if ents, err := os.ReadDir(filepath.Join(dir, dirTmp)); err == nil {
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTmp {
				_ = root.Remove(path.Join(dirTmp, e.Name()))
			}
		}
	}
	return &Dir{dir: dir, root: root, lock: lock}, nil
}

// Close releases the directory.
func (s *Dir) Close() error {
	s.lock.Close()
	return s.root.Close()
}

// Path is the file of key, for callers that hand files to the kernel
// (sendfile) or to tools. It checks the key, not that the file exists.
func (s *Dir) Path(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	return filepath.Join(s.dir, filepath.FromSlash(key)), nil
}

func dirInfo(key string, fi fs.FileInfo) Info {
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	// A replacement is a new file (new inode), and a rewrite in place
	// never happens, so inode, size and time tell versions apart.
	return Info{
		Key:     key,
		Size:    fi.Size(),
		ModTime: fi.ModTime(),
		ETag:    fmt.Sprintf(`"%x-%x-%x"`, ino, fi.Size(), fi.ModTime().UnixNano()),
	}
}

func notFound(op, key string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return fmt.Errorf("%s %s: %w", op, key, ErrNotFound)
	}
	return fmt.Errorf("%s %s: %w", op, key, err)
}

// dirReader is an open file with its Info.
type dirReader struct {
	*os.File
	info Info
}

func (r *dirReader) Info() Info { return r.info }

// OSFile returns the open file itself, so a server can hand it to
// http.ServeContent and the kernel's sendfile.
func (r *dirReader) OSFile() *os.File { return r.File }

// Get implements Store.
func (s *Dir) Get(ctx context.Context, key string) (Reader, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	f, err := s.root.Open(key)
	if err != nil {
		return nil, notFound("get", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	return &dirReader{File: f, info: dirInfo(key, fi)}, nil
}

// Stat implements Store.
func (s *Dir) Stat(ctx context.Context, key string) (Info, error) {
	if err := CheckKey(key); err != nil {
		return Info{}, err
	}
	fi, err := s.root.Lstat(key)
	if err != nil {
		return Info{}, notFound("stat", key, err)
	}
	if !fi.Mode().IsRegular() {
		return Info{}, fmt.Errorf("stat %s: %w", key, ErrNotFound)
	}
	return dirInfo(key, fi), nil
}

// tempFile creates a temporary file in .mxos-tmp.
func (s *Dir) tempFile() (*os.File, string, error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, dirTmp), "put-")
	if err != nil {
		return nil, "", err
	}
	return f, path.Join(dirTmp, filepath.Base(f.Name())), nil
}

// Put implements Store.
func (s *Dir) Put(ctx context.Context, key string, r io.Reader, size int64, c Condition) (Info, error) {
	if err := CheckKey(key); err != nil {
		return Info{}, err
	}
	return s.put(ctx, key, r, size, func(string) (bool, error) {
		cur, err := s.Stat(ctx, key)
		exists := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return false, err
		}
		switch {
		case c.IfNoneMatch && exists:
			return false, fmt.Errorf("put %s: %w (it exists)", key, ErrPrecondition)
		case c.IfMatch != "" && (!exists || cur.ETag != c.IfMatch):
			return false, fmt.Errorf("put %s: %w", key, ErrPrecondition)
		}
		return true, nil
	}, nil)
}

// PutVerified implements Store.
func (s *Dir) PutVerified(ctx context.Context, key string, d digest.Digest, size int64, r io.Reader) (Info, error) {
	if err := CheckKey(key); err != nil {
		return Info{}, err
	}
	if err := storage.Validate(d); err != nil {
		return Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	return s.put(ctx, key, r, size, func(string) (bool, error) {
		_, err := s.Stat(ctx, key)
		if err == nil {
			return false, nil // already there: keep it
		}
		if errors.Is(err, ErrNotFound) {
			return true, nil
		}
		return false, err
	}, &d)
}

// put writes r to a temporary file (hashing it when d is given), syncs
// it, and then, under the lock, asks check whether to install it.
func (s *Dir) put(ctx context.Context, key string, r io.Reader, size int64, check func(string) (bool, error), d *digest.Digest) (Info, error) {
	f, tmp, err := s.tempFile()
	if err != nil {
		return Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	defer func() {
		if f != nil {
			f.Close()
		}
		_ = s.root.Remove(tmp)
	}()
	if err := copyChecked(ctx, f, r, size, d); err != nil {
		return Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	if err := s.mkdirAll(path.Dir(key)); err != nil {
		return Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	unlock, err := s.lockAll()
	if err != nil {
		return Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	defer unlock()
	install, err := check(key)
	if err != nil {
		return Info{}, err
	}
	if install {
		if err := s.root.Rename(tmp, key); err != nil {
			return Info{}, notFound("put", key, err)
		}
		if err := s.syncDir(path.Dir(key)); err != nil {
			return Info{}, fmt.Errorf("put %s: %w", key, err)
		}
	}
	return s.Stat(ctx, key)
}

// copyChecked copies r to w, checking the length against size (-1: any)
// and, when d is given, the digest.
func copyChecked(ctx context.Context, w io.Writer, r io.Reader, size int64, d *digest.Digest) error {
	src := r
	if size >= 0 {
		// One byte more than expected is enough to detect a longer body.
		src = io.LimitReader(r, size+1)
	}
	dst := w
	var h hash.Hash
	if d != nil {
		h = storage.NewHash(*d)
		dst = io.MultiWriter(w, h)
	}
	n, err := io.Copy(dst, ctxReader{ctx, src})
	if err != nil {
		return err
	}
	if size >= 0 && n != size {
		return fmt.Errorf("%w: got %d bytes, want %d", storage.ErrSizeMismatch, n, size)
	}
	if d != nil {
		if got := digest.NewDigest(d.Algorithm(), h); got != *d {
			return fmt.Errorf("%w (got %s)", storage.ErrDigestMismatch, got)
		}
	}
	return nil
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// lockAll takes the store's mutex and its flock.
func (s *Dir) lockAll() (func(), error) {
	s.mu.Lock()
	if err := unix.Flock(int(s.lock.Fd()), unix.LOCK_EX); err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("lock: %w", err)
	}
	return func() {
		_ = unix.Flock(int(s.lock.Fd()), unix.LOCK_UN)
		s.mu.Unlock()
	}, nil
}

// mkdirAll makes the directories of a key durably (each new directory's
// parent is synced).
func (s *Dir) mkdirAll(dir string) error {
	if dir == "." {
		return nil
	}
	if fi, err := s.root.Stat(dir); err == nil {
		if fi.IsDir() {
			return nil
		}
		return fmt.Errorf("%s: %w", dir, unix.ENOTDIR)
	}
	if err := s.mkdirAll(path.Dir(dir)); err != nil {
		return err
	}
	if err := s.root.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return s.syncDir(path.Dir(dir))
}

func (s *Dir) syncDir(dir string) error {
	d, err := s.root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Touch implements Store.
func (s *Dir) Touch(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	now := time.Now()
	if err := s.root.Chtimes(key, now, now); err != nil {
		return notFound("touch", key, err)
	}
	return nil
}

// Delete implements Store.
func (s *Dir) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	fi, err := s.root.Lstat(key)
	if err != nil {
		return notFound("delete", key, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("delete %s: %w", key, ErrNotFound)
	}
	if err := s.root.Remove(key); err != nil {
		return notFound("delete", key, err)
	}
	return s.syncDir(path.Dir(key))
}

// List implements Store. It walks only the directory the prefix names.
func (s *Dir) List(ctx context.Context, prefix string, fn func(Info) error) error {
	if err := checkPrefix(prefix); err != nil {
		return err
	}
	start := "."
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = prefix[:i]
	}
	fsys := s.root.FS()
	err := fs.WalkDir(fsys, start, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if e.IsDir() {
			if p != "." && p != start && (strings.HasPrefix(p, reservedPrefix) ||
				!strings.HasPrefix(p+"/", prefix) && !strings.HasPrefix(prefix, p+"/")) {
				return fs.SkipDir
			}
			return nil
		}
		if !e.Type().IsRegular() || !strings.HasPrefix(p, prefix) || checkKey(p) != nil {
			return nil
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		return fn(dirInfo(p, fi))
	})
	if err != nil {
		return fmt.Errorf("list %q: %w", prefix, err)
	}
	return nil
}
