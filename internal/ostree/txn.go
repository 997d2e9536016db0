package ostree

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Txn is a write transaction. It holds the repository's exclusive write lock
// (an flock on repo/.lock, released by the kernel if the process dies) from
// Begin to Close. Objects are staged under tmp/ and become visible only in
// Commit; refs, detached metadata and the summary are written afterwards
// through the same Txn. Object writes may run from many goroutines.
type Txn struct {
	repo  *Repo
	lock  *os.File
	stage string

	mu sync.Mutex
	// staged counts objects staged since the last Commit. The staging
	// directory itself is the list of them (<checksum>.<type>): keeping no
	// per-object state in memory bounds a publish's memory independently
	// of the number of files in the tree.
	staged int64
	metas  map[Checksum]Metadata
	closed bool
}

// Begin takes the write lock, waiting for another writer to finish, and
// clears what crashed writers left in tmp/.
func (r *Repo) Begin() (*Txn, error) {
	lf, err := os.OpenFile(filepath.Join(r.path, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock repository: %w", err)
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		lf.Close()
		return nil, fmt.Errorf("lock repository: %w", err)
	}
	tmp := filepath.Join(r.path, "tmp")
	if err := r.recoverLocked(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("begin transaction: %w", err)
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		lf.Close()
		return nil, err
	}
	stage := filepath.Join(tmp, "staging-"+hex.EncodeToString(rnd[:]))
	if err := os.Mkdir(stage, 0o755); err != nil {
		lf.Close()
		return nil, fmt.Errorf("begin transaction: %w", err)
	}
	return &Txn{repo: r, lock: lf, stage: stage}, nil
}

// recoverLocked, with the write lock held (so no other writer is alive),
// removes the staging directories of crashed writers (objects, and static
// deltas being made) and finishes a
// summary swap a crash cut short: until then clients may see a summary
// with the wrong signature.
func (r *Repo) recoverLocked() error {
	tmp := filepath.Join(r.path, "tmp")
	if err := mkdirAll(tmp, 0o755); err != nil {
		return err
	}
	if ents, err := os.ReadDir(tmp); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "staging-") || strings.HasPrefix(e.Name(), "delta-") { // delta/generate.go
				os.RemoveAll(filepath.Join(tmp, e.Name()))
			}
		}
	}
	return r.finishSummary()
}

// Recover does at once what the next Begin would do after a crash
// (staging directories removed, an interrupted summary swap finished),
// without waiting for the write lock: when another process holds it, that
// writer is alive and finishes its own work, and Recover returns false.
// Servers call it when they start, so a crash between the summary's two
// renames is not served until the next publish.
func (r *Repo) Recover() (bool, error) {
	lf, err := os.OpenFile(filepath.Join(r.path, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return false, fmt.Errorf("recover repository: %w", err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return false, nil
		}
		return false, fmt.Errorf("recover repository: %w", err)
	}
	if err := r.recoverLocked(); err != nil {
		return false, fmt.Errorf("recover repository: %w", err)
	}
	return true, nil
}

// Repo returns the repository the transaction writes to.
func (t *Txn) Repo() *Repo { return t.repo }

// HasObject reports whether the object is stored or staged.
func (t *Txn) HasObject(c Checksum, typ ObjectType) bool {
	if _, err := os.Lstat(t.stagedPath(c, typ)); err == nil {
		return true
	}
	return t.repo.HasObject(c, typ)
}

// stagedPath is where an object waits for Commit.
func (t *Txn) stagedPath(c Checksum, typ ObjectType) string {
	return filepath.Join(t.stage, c.String()+"."+typ.Ext())
}

func (t *Txn) tempFile() (*os.File, error) {
	return os.CreateTemp(t.stage, "obj-")
}

func (t *Txn) addStaged(c Checksum, typ ObjectType, tmp string) error {
	// Two writers of the same object rename the same bytes to one name.
	if err := os.Rename(tmp, t.stagedPath(c, typ)); err != nil {
		os.Remove(tmp)
		return err
	}
	t.mu.Lock()
	t.staged++
	t.mu.Unlock()
	return nil
}

// WriteMetadata stores a dirtree, dirmeta or commit. If want is non-zero the
// bytes must hash to it. The bytes must parse as the object type, so a
// malformed object cannot be stored even under its correct checksum.
func (t *Txn) WriteMetadata(typ ObjectType, data []byte, want Checksum) (Checksum, error) {
	c := Checksum(sha256.Sum256(data))
	if !want.IsZero() && c != want {
		return c, &ObjectError{want, typ, fmt.Errorf("%w: bytes hash to %s", ErrCorrupt, c)}
	}
	if err := checkMetadataObject(typ, data); err != nil {
		return c, &ObjectError{c, typ, err}
	}
	if t.HasObject(c, typ) {
		return c, nil
	}
	f, err := t.tempFile()
	if err != nil {
		return c, err
	}
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(f.Name())
		return c, fmt.Errorf("write %s: %w", typ, werr)
	}
	return c, t.addStaged(c, typ, f.Name())
}

// WriteContent compresses and stores a file given its header and content
// (nil for symlinks). The checksum is computed while writing; when want is
// non-zero a mismatch discards the object.
func (t *Txn) WriteContent(h *FileHeader, content io.Reader, want Checksum) (Checksum, error) {
	if err := h.validate(); err != nil {
		return Checksum{}, err
	}
	if !want.IsZero() && t.HasObject(want, ObjFile) {
		return want, nil
	}
	f, err := t.tempFile()
	if err != nil {
		return Checksum{}, err
	}
	c, werr := writeFilez(f, h, content)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil && !want.IsZero() && c != want {
		werr = &ObjectError{want, ObjFile, fmt.Errorf("%w: content hashes to %s", ErrCorrupt, c)}
	}
	if werr != nil {
		os.Remove(f.Name())
		return c, werr
	}
	return c, t.addStaged(c, ObjFile, f.Name())
}

// WriteFilez stores an archive content object received as is (from another
// archive repository or a client upload). It is decompressed and checked
// against want before it is staged; the bytes kept are the ones received.
func (t *Txn) WriteFilez(want Checksum, raw io.Reader) error {
	if t.HasObject(want, ObjFile) {
		return nil
	}
	f, err := t.tempFile()
	if err != nil {
		return err
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if _, err := io.Copy(f, raw); err != nil {
		return fail(fmt.Errorf("receive %s: %w", want, err))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(err)
	}
	cr, err := OpenFilez(f, want)
	if err != nil {
		return fail(&ObjectError{want, ObjFile, err})
	}
	_, err = io.Copy(io.Discard, cr)
	cr.Close()
	if err != nil {
		return fail(&ObjectError{want, ObjFile, err})
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	return t.addStaged(want, ObjFile, f.Name())
}

// Commit makes every staged object visible: one sync of the file system,
// then a rename per object into objects/, then another sync so that refs
// written afterwards never point at objects a power loss could lose.
func (t *Txn) Commit() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.staged == 0 && len(t.metas) == 0 {
		return nil
	}
	// The two syncs name different directories of the same file system
	// (tmp/, then objects/) so that the e2e crash-point test can stop
	// the process at either one by path.
	if err := syncfs(filepath.Join(t.repo.path, "tmp")); err != nil {
		return fmt.Errorf("commit transaction: sync: %w", err)
	}
	// Objects become visible leaves first and commits last, so a crash in
	// this loop never leaves a commit whose tree is incomplete: stock
	// `ostree fsck` checks every commit object, referenced or not. One
	// pass over the staging directory per rank, reading it in batches.
	made := map[string]bool{}
	for rank := range 3 {
		if err := t.publishStaged(rank, made); err != nil {
			return fmt.Errorf("commit transaction: %w", err)
		}
	}
	t.staged = 0
	for c, md := range t.metas {
		if err := t.WriteCommitMeta(c, md); err != nil {
			return fmt.Errorf("commit transaction: %w", err)
		}
	}
	t.metas = nil
	if err := syncfs(filepath.Join(t.repo.path, "objects")); err != nil {
		return fmt.Errorf("commit transaction: sync: %w", err)
	}
	return nil
}

// publishStaged renames the staged objects of visibility rank into
// objects/, creating their objects/XX directories (recorded in made). It
// reads the staging directory again until a pass finds none, since entries
// renamed away during a read may make it skip others on some file systems.
func (t *Txn) publishStaged(rank int, made map[string]bool) error {
	for {
		d, err := os.Open(t.stage)
		if err != nil {
			return err
		}
		moved := 0
		for {
			ents, rerr := d.ReadDir(1024)
			for _, e := range ents {
				c, typ, ok := parseStagedName(e.Name())
				if !ok || visibilityOrder(typ) != rank {
					continue // temporary files of failed writes, other ranks
				}
				p := filepath.Join(t.stage, e.Name())
				dst := t.repo.objectFile(c, typ)
				if dir := filepath.Dir(dst); !made[dir] {
					// Not synced one by one: the syncfs after the renames
					// covers them.
					if err := os.MkdirAll(dir, 0o755); err != nil {
						d.Close()
						return err
					}
					made[dir] = true
				}
				if err := os.Chmod(p, 0o644); err != nil {
					d.Close()
					return err
				}
				if err := os.Rename(p, dst); err != nil {
					d.Close()
					return err
				}
				moved++
			}
			if errors.Is(rerr, io.EOF) {
				break
			}
			if rerr != nil {
				d.Close()
				return rerr
			}
		}
		d.Close()
		if moved == 0 {
			return nil
		}
	}
}

// visibilityOrder ranks object types for Commit: content and dirmeta,
// then dirtree, then commit.
func visibilityOrder(t ObjectType) int {
	switch t {
	case ObjFile, ObjDirMeta:
		return 0
	case ObjDirTree:
		return 1
	}
	return 2
}

// Close drops whatever was not committed and releases the write lock.
func (t *Txn) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	err := os.RemoveAll(t.stage)
	t.lock.Close() // releases the flock
	return err
}

// SetRef points ref at commit after checking that every object the commit
// reaches is stored (Commit must have run). A ref never names an incomplete
// commit.
func (t *Txn) SetRef(ref string, commit Checksum) error {
	if err := ValidateRef(ref); err != nil {
		return err
	}
	if err := t.repo.CheckComplete(commit); err != nil {
		return fmt.Errorf("set ref %s: %w", ref, err)
	}
	p := filepath.Join(t.repo.path, "refs", "heads", filepath.FromSlash(ref))
	if err := mkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("set ref %s: %w", ref, err)
	}
	if err := writeFileAtomic(t.stage, p, []byte(commit.String()+"\n"), 0o644); err != nil {
		return fmt.Errorf("set ref %s: %w", ref, err)
	}
	return nil
}

// DeleteRef removes a ref.
func (t *Txn) DeleteRef(ref string) error {
	if err := ValidateRef(ref); err != nil {
		return err
	}
	p := filepath.Join(t.repo.path, "refs", "heads", filepath.FromSlash(ref))
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete ref %s: %w", ref, err)
	}
	return syncDir(filepath.Dir(p))
}

// WriteCommitMeta replaces the detached metadata of a stored commit.
func (t *Txn) WriteCommitMeta(commit Checksum, md Metadata) error {
	if !t.repo.HasObject(commit, ObjCommit) {
		return &ObjectError{commit, ObjCommit, ErrNotFound}
	}
	b, err := MarshalMetadata(md)
	if err != nil {
		return fmt.Errorf("commitmeta of %s: %w", commit, err)
	}
	p := t.repo.objectFile(commit, ObjCommitMeta)
	if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, b) {
		return nil
	}
	return writeFileAtomic(t.stage, p, b, 0o644)
}
