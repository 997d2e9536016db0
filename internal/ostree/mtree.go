package ostree

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"runtime"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
)

// CommitOptions tunes how a tree is read into the repository.
type CommitOptions struct {
	// OwnerUID and OwnerGID, when set, replace every file's owner
	// (ostree commit --owner-uid/--owner-gid).
	OwnerUID, OwnerGID *uint32
	// NoXattrs drops extended attributes (ostree commit --no-xattrs).
	NoXattrs bool
	// SkipSpecial leaves out device nodes, FIFOs and sockets, which OSTree
	// cannot store; without it they are an error.
	SkipSpecial bool
	// AllowEscapingSymlinks accepts relative symlinks that point above the
	// tree root. They are refused by default, since tools on the host that
	// follow them would leave the deployment.
	AllowEscapingSymlinks bool
	// Progress, when set, is called after each file is stored, from any
	// goroutine, with the running totals.
	Progress func(files int64, bytes int64)
}

// mtree is a directory being built in memory; files are hashed by workers
// and the dirtree objects are written bottom-up once all are known.
//
// A directory walk (WriteTreeFromDir) writes each directory as soon as it
// and its files are done and keeps only its checksums, so what it holds
// in memory is the path being walked and the few files in flight, not the
// whole tree. A tar stream may add to any directory until its end, so its
// tree is written at the end.
type mtree struct {
	meta  DirMeta
	files map[string]*fileSlot
	dirs  map[string]*mtree
	// pending counts this directory's files still being stored, and
	// hardlinks to files another directory's worker is still storing.
	pending atomic.Int64
	// written is set once the dirtree and dirmeta are stored as tree and
	// metaSum; files, dirs and meta are then dropped.
	written       bool
	tree, metaSum Checksum
}

type fileSlot struct {
	sum  Checksum    // written by one worker before the group's Wait returns
	done atomic.Bool // set by that worker after sum
}

// linkWait is a hardlink placed in dir to a file still being stored.
type linkWait struct {
	slot *fileSlot
	dir  *mtree
}

func newMtree(meta DirMeta) *mtree {
	return &mtree{meta: meta, files: map[string]*fileSlot{}, dirs: map[string]*mtree{}}
}

// builder turns a stream of tree entries into stored objects.
type builder struct {
	txn   *Txn
	opts  CommitOptions
	root  *mtree
	g     *errgroup.Group
	ctx   context.Context
	files atomic.Int64
	bytes atomic.Int64
	// inflight bounds the memory held by buffered file contents.
	inflight chan struct{}
	// walked are directories whose walk has ended, oldest first, waiting
	// for their files to be stored (streaming walks only).
	walked []*mtree
	// links are pending hardlinks (streaming walks only).
	links []linkWait
	// maxWalked is the longest walked has been.
	maxWalked int
}

const (
	inflightUnit = 1 << 20 // one token per MiB buffered
	maxInflight  = 256     // MiB of buffered content at most
	maxBuffered  = 32 << 20
)

func newBuilder(ctx context.Context, txn *Txn, opts CommitOptions, rootMeta DirMeta) *builder {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0) + 1)
	b := &builder{txn: txn, opts: opts, g: g, ctx: gctx, inflight: make(chan struct{}, maxInflight)}
	b.root = newMtree(b.fixMeta(rootMeta))
	return b
}

func (b *builder) fixMeta(m DirMeta) DirMeta {
	if b.opts.OwnerUID != nil {
		m.UID = *b.opts.OwnerUID
	}
	if b.opts.OwnerGID != nil {
		m.GID = *b.opts.OwnerGID
	}
	if b.opts.NoXattrs {
		m.Xattrs = nil
	}
	return m
}

func (b *builder) fixHeader(h *FileHeader) {
	if b.opts.OwnerUID != nil {
		h.UID = *b.opts.OwnerUID
	}
	if b.opts.OwnerGID != nil {
		h.GID = *b.opts.OwnerGID
	}
	if b.opts.NoXattrs {
		h.Xattrs = nil
	}
}

// cleanPath validates a slash-separated path inside the tree and returns its
// components; "" or "." is the root.
func cleanPath(p string) ([]string, error) {
	p = strings.TrimPrefix(p, "./")
	p = strings.TrimRight(p, "/")
	if p == "" || p == "." {
		return nil, nil
	}
	if strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("%w: absolute path %q", ErrBadName, truncate(p))
	}
	parts := strings.Split(p, "/")
	out := parts[:0]
	for _, part := range parts {
		if part == "." || part == "" {
			continue
		}
		if part == ".." {
			return nil, fmt.Errorf("%w: path %q leaves the tree", ErrBadName, truncate(p))
		}
		if err := ValidateFilename(part); err != nil {
			return nil, fmt.Errorf("path %q: %w", truncate(p), err)
		}
		out = append(out, part)
	}
	return out, nil
}

// parent returns the directory holding the last component of parts,
// creating missing ones with defaultMeta.
func (b *builder) parent(parts []string) (*mtree, error) {
	n := b.root
	for i, name := range parts[:len(parts)-1] {
		child, ok := n.dirs[name]
		if !ok {
			if _, isFile := n.files[name]; isFile {
				return nil, fmt.Errorf("%w: %q is a file, not a directory", ErrBadName, strings.Join(parts[:i+1], "/"))
			}
			child = newMtree(b.fixMeta(DirMeta{Mode: ModeDir | 0o755}))
			n.dirs[name] = child
		}
		n = child
	}
	return n, nil
}

// addDir records a directory and its metadata, and returns it.
func (b *builder) addDir(p string, meta DirMeta) (*mtree, error) {
	parts, err := cleanPath(p)
	if err != nil {
		return nil, err
	}
	meta = b.fixMeta(meta)
	if len(parts) == 0 {
		b.root.meta = meta
		return b.root, nil
	}
	par, err := b.parent(parts)
	if err != nil {
		return nil, err
	}
	name := parts[len(parts)-1]
	delete(par.files, name) // a later tar entry replaces an earlier one
	if d, ok := par.dirs[name]; ok {
		if d.written {
			return nil, fmt.Errorf("%w: %q: directory already written", ErrBadName, p)
		}
		d.meta = meta
		return d, nil
	}
	d := newMtree(meta)
	par.dirs[name] = d
	return d, nil
}

// place puts a file slot at p, replacing an earlier file of that name,
// and returns the directory holding it.
func (b *builder) place(p string, slot *fileSlot) (*mtree, error) {
	parts, err := cleanPath(p)
	if err != nil {
		return nil, err
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("%w: the tree root must be a directory", ErrBadName)
	}
	par, err := b.parent(parts)
	if err != nil {
		return nil, err
	}
	name := parts[len(parts)-1]
	if _, ok := par.dirs[name]; ok {
		return nil, fmt.Errorf("%w: %q is both a directory and a file", ErrBadName, p)
	}
	if par.written {
		return nil, fmt.Errorf("%w: %q: directory already written", ErrBadName, p)
	}
	par.files[name] = slot
	return par, nil
}

// placeLink places a hardlink to slot at p: if the file is still being
// stored, the directory waits for it before being written.
func (b *builder) placeLink(p string, slot *fileSlot) error {
	dir, err := b.place(p, slot)
	if err != nil {
		return err
	}
	if !slot.done.Load() {
		dir.pending.Add(1)
		b.links = append(b.links, linkWait{slot, dir})
	}
	return nil
}

// dirWalked queues a directory whose walk has ended and writes those
// queued directories that are complete, oldest first: a directory is
// queued after its subdirectories, so they are written before it.
func (b *builder) dirWalked(n *mtree) error {
	b.walked = append(b.walked, n)
	b.maxWalked = max(b.maxWalked, len(b.walked))
	return b.writeReady()
}

// writeReady writes the queued directories whose files are all stored.
func (b *builder) writeReady() error {
	if len(b.links) > 0 {
		kept := b.links[:0]
		for _, l := range b.links {
			if l.slot.done.Load() {
				l.dir.pending.Add(-1)
			} else {
				kept = append(kept, l)
			}
		}
		clear(b.links[len(kept):])
		b.links = kept
	}
	i := 0
	for ; i < len(b.walked); i++ {
		n := b.walked[i]
		if n.pending.Load() != 0 {
			break
		}
		if err := b.writeDir(n); err != nil {
			return err
		}
	}
	clear(b.walked[:i])
	b.walked = b.walked[i:]
	return nil
}

// writeDir stores n (its subdirectories are written already) and drops
// what it held.
func (b *builder) writeDir(n *mtree) error {
	tree, meta, err := b.writeTree(n)
	if err != nil {
		return err
	}
	n.tree, n.metaSum, n.written = tree, meta, true
	n.files, n.dirs, n.meta = nil, nil, DirMeta{}
	return nil
}

// addSymlink stores a symlink object synchronously (it has no content).
func (b *builder) addSymlink(p string, h FileHeader) (*fileSlot, error) {
	parts, err := cleanPath(p)
	if err != nil {
		return nil, err
	}
	if !b.opts.AllowEscapingSymlinks && len(parts) > 0 && SymlinkEscapes(path.Join(parts[:len(parts)-1]...), h.SymlinkTarget) {
		return nil, fmt.Errorf("%w: symlink %q -> %q points outside the tree", ErrBadName, p, truncate(h.SymlinkTarget))
	}
	b.fixHeader(&h)
	h.Mode = ModeSymlink | 0o777
	h.Size = 0
	c, err := b.txn.WriteContent(&h, nil, Checksum{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	slot := &fileSlot{sum: c}
	slot.done.Store(true)
	b.files.Add(1)
	_, err = b.place(p, slot)
	return slot, err
}

// addRegular schedules hashing and storing of a regular file. open is
// called up to twice: once to hash, and once more to compress only when
// the object is not stored yet, which makes re-publishing a mostly
// unchanged tree cheap.
// after, when set, runs once the worker is done with open.
func (b *builder) addRegular(p string, h FileHeader, open func() (io.ReadCloser, error), after func()) (*fileSlot, error) {
	b.fixHeader(&h)
	slot := &fileSlot{}
	dir, err := b.place(p, slot)
	if err != nil {
		return nil, err
	}
	if err := b.ctx.Err(); err != nil {
		return nil, err
	}
	dir.pending.Add(1)
	b.g.Go(func() error {
		if after != nil {
			defer after()
		}
		c, err := b.storeRegular(&h, open)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		slot.sum = c
		slot.done.Store(true)
		dir.pending.Add(-1)
		b.progress(int64(h.Size))
		return nil
	})
	return slot, nil
}

// addBuffered is addRegular for content already in memory (tar entries):
// it waits for buffer budget, so a huge tarball never sits in memory whole.
func (b *builder) addBuffered(p string, h FileHeader, r io.Reader) (*fileSlot, error) {
	if h.Size > maxBuffered {
		// Too big to buffer: hash and compress in one pass, in line.
		b.fixHeader(&h)
		c, err := b.txn.WriteContent(&h, r, Checksum{})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		slot := &fileSlot{sum: c}
		slot.done.Store(true)
		b.progress(int64(h.Size))
		_, err = b.place(p, slot)
		return slot, err
	}
	tokens := int(h.Size/inflightUnit) + 1
	for i := 0; i < tokens; i++ {
		select {
		case b.inflight <- struct{}{}:
		case <-b.ctx.Done():
			return nil, b.ctx.Err()
		}
	}
	data := make([]byte, h.Size)
	if _, err := io.ReadFull(r, data); err != nil {
		b.release(tokens)
		return nil, fmt.Errorf("%s: reading: %w", p, err)
	}
	open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
	slot, err := b.addRegular(p, h, open, func() { b.release(tokens) })
	if err != nil {
		b.release(tokens)
		return nil, err
	}
	return slot, nil
}

func (b *builder) release(n int) {
	for i := 0; i < n; i++ {
		<-b.inflight
	}
}

func (b *builder) progress(size int64) {
	f := b.files.Add(1)
	n := b.bytes.Add(size)
	if b.opts.Progress != nil {
		b.opts.Progress(f, n)
	}
}

func (b *builder) storeRegular(h *FileHeader, open func() (io.ReadCloser, error)) (Checksum, error) {
	rc, err := open()
	if err != nil {
		return Checksum{}, err
	}
	c, err := ContentChecksum(h, rc)
	rc.Close()
	if err != nil {
		return c, err
	}
	if b.txn.HasObject(c, ObjFile) {
		return c, nil
	}
	rc, err = open()
	if err != nil {
		return c, err
	}
	defer rc.Close()
	// A file that changes under us fails the want check instead of being
	// stored under a name it does not hash to.
	if _, err := b.txn.WriteContent(h, rc, c); err != nil {
		return c, err
	}
	return c, nil
}

// finish waits for every file and writes the dirtree and dirmeta objects.
func (b *builder) finish() (tree, meta Checksum, err error) {
	if err := b.g.Wait(); err != nil {
		return tree, meta, err
	}
	return b.writeTree(b.root)
}

func (b *builder) writeTree(n *mtree) (tree, meta Checksum, err error) {
	dt := &DirTree{}
	for name, slot := range n.files {
		dt.Files = append(dt.Files, TreeFile{Name: name, Checksum: slot.sum})
	}
	for name, child := range n.dirs {
		ct, cm := child.tree, child.metaSum
		if !child.written {
			if ct, cm, err = b.writeTree(child); err != nil {
				return tree, meta, err
			}
		}
		dt.Dirs = append(dt.Dirs, TreeDir{Name: name, Tree: ct, Meta: cm})
	}
	tb, err := dt.Marshal()
	if err != nil {
		return tree, meta, err
	}
	if tree, err = b.txn.WriteMetadata(ObjDirTree, tb, Checksum{}); err != nil {
		return tree, meta, err
	}
	mb, err := n.meta.Marshal()
	if err != nil {
		return tree, meta, err
	}
	meta, err = b.txn.WriteMetadata(ObjDirMeta, mb, Checksum{})
	return tree, meta, err
}

// firstCause picks the error worth reporting when a walk and its worker
// group both fail: a failed worker cancels the walk, so the walk's
// "context canceled" would hide the real cause.
func firstCause(walkErr, groupErr error) error {
	if walkErr == nil {
		return groupErr
	}
	if groupErr != nil && errors.Is(walkErr, context.Canceled) {
		return groupErr
	}
	return walkErr
}
