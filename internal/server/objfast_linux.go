package server

import (
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// serveObject is the fast path for content-addressed objects, the bulk of
// every pull. It returns false, having written nothing, when the general
// path must handle the request instead (not an objects/XX/… path, missing
// file, symlink, not a regular file).
//
// Safety: the objects/XX directory is opened through os.Root like every
// other path, and the object is then opened relative to it with
// O_NOFOLLOW. Its name was validated as <62 hex>.<type>, so it has no
// slash, no "..", and cannot be a symlink: the open cannot leave the
// directory, which is exactly what os.Root would do for this last step.
//
// Speed: small objects asked for a second time stay in h.objs, in memory
// or open, so a repeated object costs no system call but the write, or one
// pread. The first request of an object (all of them in a pull, which asks
// for each object once) uses a raw descriptor and a pooled buffer: openat,
// fstat, pread, close, no allocation for the object and no cache entry.
func (h *repoHandler) serveObject(w http.ResponseWriter, r *http.Request, name string) bool {
	now := time.Now()
	if e := h.objs.get(name, now); e != nil {
		h.serveCached(w, r, name, e)
		return true
	}

	i, base, ok := splitObjectPath(name)
	if !ok {
		return false
	}
	d := h.objectDir(i, name[:len("objects/XX")])
	if d == nil {
		return false
	}
	fd, err := d.openat(base)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) && d.removed() {
			// objects/XX was deleted (and maybe recreated) since we opened
			// it; the general path resolves the name afresh.
			h.dropObjectDir(i, d)
		}
		return false
	}
	var st syscall.Stat_t
	if err := fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		_ = syscall.Close(fd)
		return false
	}
	size, modtime := st.Size, time.Unix(st.Mtim.Unix())

	if size > copyMax {
		f := os.NewFile(uintptr(fd), name)
		defer f.Close()
		if writeHeaders(w, r, kindImmutable, nameETag(name), size, modtime) {
			if r.Method == http.MethodHead {
				w.WriteHeader(http.StatusOK)
			} else {
				h.sendFile(w, name, f, size)
			}
		}
		return true
	}
	if !h.objs.seen(name) {
		// First request: nothing cached, no *os.File (whose constructor
		// costs an fcntl and an epoll_ctl on a non-blocking descriptor).
		h.serveOnce(w, r, name, fd, size, modtime)
		return true
	}
	// Second request: cache it, in memory if it fits (the raw descriptor
	// is then closed), else open.
	e := h.objs.newEntry(nil, name, size, modtime, now)
	if !h.objs.loadFD(e, fd) {
		e.f = os.NewFile(uintptr(fd), name)
	}
	if !h.objs.add(name, e) {
		defer h.objs.discard(e)
	}
	h.serveCached(w, r, name, e)
	return true
}

// serveOnce answers from the raw descriptor fd of a small object (size ≤
// copyMax) and closes it: openat, fstat, pread, close and the writes are
// all the system calls of the request.
func (h *repoHandler) serveOnce(w http.ResponseWriter, r *http.Request, name string, fd int, size int64, modtime time.Time) {
	defer func() { _ = syscall.Close(fd) }()
	if !writeHeaders(w, r, kindImmutable, nameETag(name), size, modtime) {
		return
	}
	if r.Method == http.MethodHead || size == 0 {
		w.WriteHeader(http.StatusOK)
		return
	}
	p := bufPool.Get().(*[]byte)
	defer bufPool.Put(p)
	b := (*p)[:size]
	if err := preadFull(fd, b); err != nil {
		h.log.Error("reading repository file failed", zap.String("path", name), zap.Error(err))
		writeStatus(w, http.StatusInternalServerError)
		return
	}
	writeBody(w, r, b)
}

// loadFD reads a fresh entry's bytes from the raw descriptor fd into
// memory if the budget allows, and then closes fd; false (fd still open,
// nothing reserved) otherwise. Call it before add.
func (c *objCache) loadFD(e *cachedObject, fd int) bool {
	if e.size > memObjectMax || !c.reserve(e.size) {
		return false
	}
	data := make([]byte, e.size)
	if err := preadFull(fd, data); err != nil {
		c.mem.Add(-e.size)
		return false
	}
	_ = syscall.Close(fd)
	e.data = data
	return true
}

// preadFull fills b from the start of fd.
func preadFull(fd int, b []byte) error {
	for off := 0; off < len(b); {
		n, err := syscall.Pread(fd, b[off:], int64(off))
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return err
		case n == 0:
			return io.ErrUnexpectedEOF
		}
		off += n
	}
	return nil
}

// serveCached answers from an open small object.
func (h *repoHandler) serveCached(w http.ResponseWriter, r *http.Request, name string, e *cachedObject) {
	hdr := w.Header()
	hdr["Etag"] = e.hdrETag
	hdr["Cache-Control"] = hdrImmutable
	switch evalPreconditions(r, e.etag, e.modtime) {
	case http.StatusNotModified:
		w.WriteHeader(http.StatusNotModified)
		return
	case http.StatusPreconditionFailed:
		writeStatus(w, http.StatusPreconditionFailed)
		return
	}
	hdr["Last-Modified"] = e.hdrLM
	hdr["Content-Length"] = e.hdrLen
	hdr["Content-Type"] = hdrOctetStream
	hdr["Accept-Ranges"] = hdrBytes
	if r.Method == http.MethodHead || e.size == 0 {
		w.WriteHeader(http.StatusOK)
		return
	}

	if e.f == nil {
		writeBody(w, r, e.data)
		return
	}
	p := bufPool.Get().(*[]byte)
	buf := smallBuf{p: p, b: (*p)[:e.size]}
	if err := h.readCached(name, e, buf.b); err != nil {
		buf.release()
		h.log.Error("reading repository file failed", zap.String("path", name), zap.Error(err))
		writeStatus(w, http.StatusInternalServerError)
		return
	}
	writeBody(w, r, buf.b)
	buf.release()
}

// readCached fills b with e's bytes.
func (h *repoHandler) readCached(name string, e *cachedObject, b []byte) error {
	if _, err := e.f.ReadAt(b, 0); err == nil {
		return nil
	}
	// Evicted and closed under us (os.ErrClosed): read a fresh copy.
	f, err := h.root.OpenFile(name, openFlags, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.ReadFull(f, b)
	return err
}

// objDir is an open objects/XX directory.
type objDir struct {
	f  *os.File
	rc syscall.RawConn // f's; Control keeps the descriptor alive while used
}

func (d *objDir) close() { _ = d.f.Close() }

// objectDir returns the cached handle on objects/XX (i is the value of XX),
// opening it on first use; nil if it cannot be opened (e.g. it does not
// exist yet).
func (h *repoHandler) objectDir(i int, dirName string) *objDir {
	if d := h.objDirs[i].Load(); d != nil {
		return d
	}
	f, err := h.root.Open(dirName)
	if err != nil {
		return nil
	}
	fi, err := f.Stat()
	var rc syscall.RawConn
	if err == nil && fi.IsDir() {
		rc, err = f.SyscallConn()
	}
	if err != nil || !fi.IsDir() {
		_ = f.Close()
		return nil
	}
	d := &objDir{f: f, rc: rc}
	if !h.objDirs[i].CompareAndSwap(nil, d) {
		_ = f.Close()
		return h.objDirs[i].Load()
	}
	return d
}

// dropObjectDir forgets a cached directory handle that no longer names
// objects/XX (the directory was removed, perhaps recreated). Closing is
// safe while other requests use it: RawConn.Control holds a reference.
func (h *repoHandler) dropObjectDir(i int, d *objDir) {
	if h.objDirs[i].CompareAndSwap(d, nil) {
		d.close()
	}
}

// openat opens base (a single path component) in d, read-only, without
// following symlinks.
func (d *objDir) openat(base string) (int, error) {
	fd, err := -1, error(nil)
	cerr := d.rc.Control(func(dfd uintptr) {
		for {
			fd, err = syscall.Openat(int(dfd), base, openFlags|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
			if err != syscall.EINTR {
				return
			}
		}
	})
	if cerr != nil { // closed by dropObjectDir
		return -1, cerr
	}
	return fd, err
}

// removed reports whether d's directory has been deleted.
func (d *objDir) removed() bool {
	var st syscall.Stat_t
	var err error
	cerr := d.rc.Control(func(dfd uintptr) { err = fstat(int(dfd), &st) })
	return cerr == nil && err == nil && st.Nlink == 0
}

func fstat(fd int, st *syscall.Stat_t) error {
	for {
		err := syscall.Fstat(fd, st)
		if err != syscall.EINTR {
			return err
		}
	}
}

// openFileLimit returns RLIMIT_NOFILE (Go raises the soft limit to the
// hard one at startup).
func openFileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Cur
}

// splitObjectPath splits "objects/XX/NAME" into the value of XX and NAME.
func splitObjectPath(name string) (int, string, bool) {
	const prefix = "objects/XX/"
	if len(name) <= len(prefix) || name[:8] != "objects/" || name[10] != '/' ||
		!isLowerHex(name[8:10]) || strings.IndexByte(name[11:], '/') >= 0 {
		return 0, "", false
	}
	return hexVal(name[8])<<4 | hexVal(name[9]), name[11:], true
}

func hexVal(c byte) int {
	if c <= '9' {
		return int(c - '0')
	}
	return int(c-'a') + 10
}
