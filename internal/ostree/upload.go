package ostree

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Upload sessions stage objects a remote client sends before they join the
// repository. A session is a directory tmp/uploads/<id>/ holding verified
// objects named <64 hex>.<ext>; it survives server restarts, so a client
// whose connection broke re-opens it by id and sends only what is not yet
// staged. Nothing in a session is visible to readers until Commit moves it
// into objects/ under the repository's write lock.
//
// Begin clears only tmp/staging-*: sessions outlive transactions and are
// removed by Commit or, once idle for UploadMaxAge, by CleanUploads.

// uploadsDir is where sessions live, relative to the repository.
const uploadsDir = "tmp/uploads"

// UploadMaxAge is how long a session may sit idle before CleanUploads
// removes it.
const UploadMaxAge = 24 * time.Hour

// uploadIDLen is the length of a session id: 16 random bytes in hex.
const uploadIDLen = 32

// ErrNoUpload: an upload session id is malformed or names no session.
var ErrNoUpload = errors.New("no such upload session")

// Upload is one upload session.
type Upload struct {
	repo *Repo
	id   string
	dir  string
}

// NewUpload creates an empty session.
func (r *Repo) NewUpload() (*Upload, error) {
	base := filepath.Join(r.path, filepath.FromSlash(uploadsDir))
	if err := mkdirAll(base, 0o755); err != nil {
		return nil, fmt.Errorf("new upload: %w", err)
	}
	var rnd [uploadIDLen / 2]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("new upload: %w", err)
	}
	id := hex.EncodeToString(rnd[:])
	dir := filepath.Join(base, id)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("new upload: %w", err)
	}
	return &Upload{repo: r, id: id, dir: dir}, nil
}

// validUploadID accepts exactly what NewUpload makes, so an id can never
// name anything but a direct child of tmp/uploads.
func validUploadID(id string) bool {
	if len(id) != uploadIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// OpenUpload re-opens a session by id.
func (r *Repo) OpenUpload(id string) (*Upload, error) {
	if !validUploadID(id) {
		return nil, fmt.Errorf("upload %q: %w", truncate(id), ErrNoUpload)
	}
	dir := filepath.Join(r.path, filepath.FromSlash(uploadsDir), id)
	st, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !st.IsDir()) {
		return nil, fmt.Errorf("upload %s: %w", id, ErrNoUpload)
	}
	if err != nil {
		return nil, fmt.Errorf("upload %s: %w", id, err)
	}
	return &Upload{repo: r, id: id, dir: dir}, nil
}

// ID names the session.
func (u *Upload) ID() string { return u.id }

func (u *Upload) file(c Checksum, t ObjectType) string {
	return filepath.Join(u.dir, c.String()+"."+t.Ext())
}

// Has reports whether the object is staged in the session.
func (u *Upload) Has(c Checksum, t ObjectType) bool {
	st, err := os.Lstat(u.file(c, t))
	return err == nil && st.Mode().IsRegular()
}

// checkMetadataObject checks that data parses as a metadata object of type
// typ: a malformed object must not be stored even under its right name.
func checkMetadataObject(typ ObjectType, data []byte) error {
	if limit := DeviceLimit(typ); limit > 0 && int64(len(data)) > limit {
		return fmt.Errorf("%w: a %s of %d bytes is larger than devices accept (%d bytes)", ErrTooLarge, typ, len(data), limit)
	}
	var err error
	switch typ {
	case ObjCommit:
		_, err = ParseCommit(data)
	case ObjDirTree:
		_, err = ParseDirTree(data)
	case ObjDirMeta:
		_, err = ParseDirMeta(data)
	default:
		err = fmt.Errorf("%w: %s is not a metadata object type", ErrBadName, typ)
	}
	return err
}

// Put verifies an object in archive form and stages it: a metadata object
// must hash to c and parse, a content object must decompress to content
// and a header hashing to c. At most limit bytes are read (metadata never
// more than MaxMetadataSize; limit <= 0 means that cap for metadata and no
// cap for content). A wrong object is refused with an error wrapping
// ErrCorrupt (or ErrTooLarge) and nothing is staged. An object already
// staged or stored is accepted without reading r.
//
// Each object is synced before it is named, so a staged object survives a
// crash whole: a resumed upload can trust Has.
func (u *Upload) Put(c Checksum, t ObjectType, r io.Reader, limit int64) error {
	if t != ObjFile && !t.IsMetadata() {
		return &ObjectError{c, t, fmt.Errorf("%w: cannot upload a %s object", ErrBadName, t)}
	}
	if u.Has(c, t) || u.repo.HasObject(c, t) {
		return nil
	}
	if t.IsMetadata() && (limit <= 0 || limit > MaxMetadataSize) {
		limit = MaxMetadataSize
	}
	f, err := os.CreateTemp(u.dir, ".part-")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("upload %s: %w", u.id, ErrNoUpload)
		}
		return fmt.Errorf("upload %s: %w", u.id, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	src := r
	var lr *io.LimitedReader
	if limit > 0 {
		lr = &io.LimitedReader{R: r, N: limit + 1}
		src = lr
	}
	tooLarge := func() bool { return lr != nil && lr.N <= 0 }
	if t.IsMetadata() {
		data, err := io.ReadAll(src)
		if err != nil {
			return &ObjectError{c, t, fmt.Errorf("receive: %w", err)}
		}
		if tooLarge() {
			return &ObjectError{c, t, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)}
		}
		if got := Checksum(sha256.Sum256(data)); got != c {
			return &ObjectError{c, t, fmt.Errorf("%w: bytes hash to %s", ErrCorrupt, got)}
		}
		if err := checkMetadataObject(t, data); err != nil {
			return &ObjectError{c, t, err}
		}
		if _, err := f.Write(data); err != nil {
			return fmt.Errorf("upload %s: %w", u.id, err)
		}
	} else {
		// One pass: what is decompressed and hashed is what is written.
		cr, err := OpenFilez(io.TeeReader(src, f), c)
		if err == nil {
			_, err = io.Copy(io.Discard, cr)
			cr.Close()
		}
		if tooLarge() {
			return &ObjectError{c, t, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)}
		}
		if err != nil {
			return &ObjectError{c, t, err}
		}
		// OpenFilez stops at the end of the object; anything after it is junk.
		var one [1]byte
		if n, _ := io.ReadFull(src, one[:]); n != 0 {
			return &ObjectError{c, t, fmt.Errorf("%w: data after the object", ErrCorrupt)}
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("upload %s: %w", u.id, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("upload %s: %w", u.id, err)
	}
	if err := os.Rename(tmp, u.file(c, t)); err != nil {
		return fmt.Errorf("upload %s: %w", u.id, err)
	}
	ok = true
	return nil
}

// parseStagedName splits "<64 hex>.<ext>"; temp files and strays fail.
func parseStagedName(name string) (Checksum, ObjectType, bool) {
	h, ext, found := strings.Cut(name, ".")
	if !found {
		return Checksum{}, 0, false
	}
	t, ok := objectTypeFromExt(ext)
	if !ok || (t != ObjFile && !t.IsMetadata()) {
		return Checksum{}, 0, false
	}
	c, err := ParseChecksum(h)
	if err != nil {
		return Checksum{}, 0, false
	}
	return c, t, true
}

// ParseObjectName parses an upload object name, "<64 hex>.<type>" with
// type commit, dirtree, dirmeta or filez.
func ParseObjectName(name string) (Checksum, ObjectType, error) {
	c, t, ok := parseStagedName(name)
	if !ok {
		return Checksum{}, 0, fmt.Errorf("%w: object name %q: want <64 hex>.commit, .dirtree, .dirmeta or .filez", ErrBadName, truncate(name))
	}
	return c, t, nil
}

// Commit moves every staged object into the repository under the write
// lock (one sync before the renames, one after, as Txn.Commit does) and
// removes the session. Objects the repository already has are dropped.
// The objects are visible afterwards but no ref names them yet; a ref is
// moved separately, after Repo.CheckComplete.
func (u *Upload) Commit() error {
	txn, err := u.repo.Begin()
	if err != nil {
		return fmt.Errorf("commit upload %s: %w", u.id, err)
	}
	defer txn.Close()
	ents, err := os.ReadDir(u.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("commit upload %s: %w", u.id, ErrNoUpload)
	}
	if err != nil {
		return fmt.Errorf("commit upload %s: %w", u.id, err)
	}
	// The three syncs of the file system go through different directories
	// of it (tmp/uploads, tmp, objects), so that the e2e crash-point test
	// can stop the server at each one by path: the session's own
	// directory has a random name.
	base := filepath.Join(u.repo.path, filepath.FromSlash(uploadsDir))
	if err := syncfs(base); err != nil {
		return fmt.Errorf("commit upload %s: sync: %w", u.id, err)
	}
	// Leaves first, commits last, and a commit only once its whole tree is
	// stored: stock `ostree fsck` checks every commit object, so none may
	// be visible with its tree incomplete, even after a crash.
	sort.SliceStable(ents, func(i, j int) bool {
		_, ti, _ := parseStagedName(ents[i].Name())
		_, tj, _ := parseStagedName(ents[j].Name())
		return visibilityOrder(ti) < visibilityOrder(tj)
	})
	made := map[string]bool{}
	moved := 0
	for _, e := range ents {
		c, t, ok := parseStagedName(e.Name())
		if !ok || !e.Type().IsRegular() || u.repo.HasObject(c, t) {
			continue
		}
		src, dst := filepath.Join(u.dir, e.Name()), u.repo.objectFile(c, t)
		if t == ObjCommit {
			if moved > 0 {
				if err := syncfs(filepath.Join(u.repo.path, "tmp")); err != nil { // the tree is durable before its commit
					return fmt.Errorf("commit upload %s: sync: %w", u.id, err)
				}
			}
			b, err := readLimited(src, MaxMetadataSize)
			if err != nil {
				return fmt.Errorf("commit upload %s: %w", u.id, err)
			}
			cm, err := ParseCommit(b)
			if err != nil {
				return fmt.Errorf("commit upload %s: %w", u.id, &ObjectError{c, t, err})
			}
			if err := u.repo.CheckTreeComplete(cm.RootTree, cm.RootMeta); err != nil {
				return fmt.Errorf("commit upload %s: commit %s has an incomplete tree: %w", u.id, c, err)
			}
		}
		if dir := filepath.Dir(dst); !made[dir] {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("commit upload %s: %w", u.id, err)
			}
			made[dir] = true
		}
		if err := os.Chmod(src, 0o644); err != nil {
			return fmt.Errorf("commit upload %s: %w", u.id, err)
		}
		if err := os.Rename(src, dst); err != nil {
			return fmt.Errorf("commit upload %s: %w", u.id, err)
		}
		moved++
	}
	if moved > 0 {
		if err := syncfs(filepath.Join(u.repo.path, "objects")); err != nil {
			return fmt.Errorf("commit upload %s: sync: %w", u.id, err)
		}
	}
	if err := os.RemoveAll(u.dir); err != nil {
		return fmt.Errorf("commit upload %s: %w", u.id, err)
	}
	return nil
}

// Abort removes the session and everything staged in it.
func (u *Upload) Abort() error {
	if err := os.RemoveAll(u.dir); err != nil {
		return fmt.Errorf("abort upload %s: %w", u.id, err)
	}
	return nil
}

// CleanUploads removes sessions idle (no object staged) for longer than
// UploadMaxAge before now, and returns how many it removed.
func (r *Repo) CleanUploads(now time.Time) (int, error) {
	base := filepath.Join(r.path, filepath.FromSlash(uploadsDir))
	ents, err := os.ReadDir(base)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("clean uploads: %w", err)
	}
	n := 0
	var errs []error
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		// A directory's mtime moves whenever an object is staged in it.
		if now.Sub(info.ModTime()) <= UploadMaxAge {
			continue
		}
		if err := os.RemoveAll(filepath.Join(base, e.Name())); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("clean uploads: %w", err)
	}
	return n, nil
}
