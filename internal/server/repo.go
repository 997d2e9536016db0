package server

import (
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// repoPrefix is the URL prefix of the OSTree repository, so clients use
// `ostree remote add NAME http://HOST/repo`.
const repoPrefix = "/repo/"

// maxRepoPath bounds request paths; the longest real ones (delta parts,
// deep refs) are well under it.
const maxRepoPath = 1024

// fileKind says how a repository file is cached and labelled.
type fileKind uint8

const (
	// kindMutable: may be replaced in place (summary, summary.sig,
	// commitmeta, delta indexes and superblocks); revalidated on every use.
	kindMutable fileKind = iota
	// kindMutableText: like kindMutable, but text (config, refs).
	kindMutableText
	// kindImmutable: content-addressed (objects, delta parts); the name
	// determines the bytes, so it can be cached forever.
	kindImmutable
)

// copyMax is the largest body sent with pread and write instead of
// sendfile(2), and the largest object kept open in objCache (a descriptor
// shared by concurrent requests can only be read with pread). Tuned against
// nginx on 1–16 KiB objects over loopback: for small bodies sendfile buys
// nothing, since net/http writes the first 512 bytes with the headers before
// calling it, so it costs a read, a write and a sendfile.
const copyMax = 32 << 10

// openFlags: O_NONBLOCK keeps a FIFO planted in the repository from hanging
// the request (it changes nothing for regular files) and spares the fcntl
// calls package os otherwise makes on every open.
const openFlags = os.O_RDONLY | syscall.O_NONBLOCK

// repoHandler serves the archive-mode OSTree repository read-only.
type repoHandler struct {
	root  *os.Root
	log   *zap.Logger
	etags *etagCache

	// objDirs caches a handle on each objects/XX directory, opened through
	// root, for the fast path of serveObject.
	objDirs [256]atomic.Pointer[objDir]
	// objs keeps small objects open (see objCache).
	objs *objCache
}

// newRepoHandler serves root, keeping up to objMem bytes of small objects
// in memory (none if objMem ≤ 0).
func newRepoHandler(root *os.Root, log *zap.Logger, objMem int64) *repoHandler {
	return &repoHandler{root: root, log: log, etags: newETagCache(), objs: newObjCache(objCacheMax, objMem, objCacheTTL)}
}

func (h *repoHandler) close() error {
	h.objs.close()
	for i := range h.objDirs {
		if d := h.objDirs[i].Swap(nil); d != nil {
			d.close()
		}
	}
	return h.root.Close()
}

// ready reports whether the repository has been initialised.
func (h *repoHandler) ready() bool {
	fi, err := h.root.Stat("config")
	return err == nil && fi.Mode().IsRegular()
}

func (h *repoHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, repoPrefix)
	if !ok {
		writeStatus(w, http.StatusNotFound)
		return
	}
	kind, status := classifyRepoPath(name)
	if status != 0 {
		writeStatus(w, status)
		return
	}
	if kind == kindImmutable && len(r.Header["Range"]) == 0 && h.serveObject(w, r, name) {
		return
	}

	f, err := h.root.OpenFile(name, openFlags, 0)
	if err != nil {
		h.openFailed(w, name, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		h.log.Error("stat failed", zap.String("path", name), zap.Error(err))
		writeStatus(w, http.StatusInternalServerError)
		return
	}
	if !fi.Mode().IsRegular() { // directories are never listed
		writeStatus(w, http.StatusNotFound)
		return
	}
	var etag string
	if kind == kindImmutable {
		etag = nameETag(name)
	} else if etag, err = h.etags.get(name, f, fi); err != nil {
		h.log.Error("computing ETag failed", zap.String("path", name), zap.Error(err))
		writeStatus(w, http.StatusInternalServerError)
		return
	}
	size, modtime := fi.Size(), fi.ModTime()
	if !writeHeaders(w, r, kind, etag, size, modtime) {
		return
	}

	if r.Method == http.MethodGet && len(r.Header["Range"]) > 0 {
		// Rare (ostree never sends Range): let the standard library do
		// range parsing, If-Range and multipart. Our preconditions were
		// already evaluated with the same ETag and mtime, so its own checks
		// agree with ours.
		delete(w.Header(), "Content-Length")
		http.ServeContent(w, r, "", modtime, f)
		return
	}
	if r.Method == http.MethodHead || size == 0 {
		w.WriteHeader(http.StatusOK)
		return
	}
	if size <= copyMax {
		buf, err := readSmall(f, size)
		if err != nil {
			h.log.Error("reading repository file failed", zap.String("path", name), zap.Error(err))
			writeStatus(w, http.StatusInternalServerError)
			return
		}
		writeBody(w, r, buf.b)
		buf.release()
		return
	}
	h.sendFile(w, name, f, size)
}

// nameETag is the ETag of a content-addressed file: its name.
func nameETag(name string) string { return `"` + name + `"` }

// writeHeaders sets the caching and validation headers of a file and
// evaluates the request's preconditions. It returns false if it already
// answered (304 or 412); otherwise it has set Content-Length and the caller
// sends the body.
func writeHeaders(w http.ResponseWriter, r *http.Request, kind fileKind, etag string, size int64, modtime time.Time) bool {
	hdr := w.Header()
	// One allocation for the three per-file values instead of three.
	vals := new([3]string)
	vals[0] = etag
	hdr["Etag"] = vals[0:1:1]
	if kind == kindImmutable {
		hdr["Cache-Control"] = hdrImmutable
	} else {
		hdr["Cache-Control"] = hdrNoCache
	}
	switch evalPreconditions(r, etag, modtime) {
	case http.StatusNotModified:
		w.WriteHeader(http.StatusNotModified)
		return false
	case http.StatusPreconditionFailed:
		writeStatus(w, http.StatusPreconditionFailed)
		return false
	}

	var lm [len(http.TimeFormat)]byte
	vals[1] = string(modtime.UTC().AppendFormat(lm[:0], http.TimeFormat))
	hdr["Last-Modified"] = vals[1:2:2]
	vals[2] = strconv.FormatInt(size, 10)
	hdr["Content-Length"] = vals[2:3:3]
	if kind == kindMutableText {
		hdr["Content-Type"] = hdrTextPlain
	} else {
		hdr["Content-Type"] = hdrOctetStream
	}
	hdr["Accept-Ranges"] = hdrBytes
	return true
}

// bufPool holds copyMax-byte buffers for small bodies.
var bufPool = sync.Pool{New: func() any { b := make([]byte, copyMax); return &b }}

// smallBuf is a pooled buffer holding one small body.
type smallBuf struct {
	p *[]byte
	b []byte
}

func (s smallBuf) release() { bufPool.Put(s.p) }

// readSmall reads a file of size ≤ copyMax into a pooled buffer.
func readSmall(f *os.File, size int64) (smallBuf, error) {
	p := bufPool.Get().(*[]byte)
	b := (*p)[:size]
	if _, err := io.ReadFull(f, b); err != nil {
		bufPool.Put(p)
		return smallBuf{}, err
	}
	return smallBuf{p: p, b: b}, nil
}

// connKey is the request-context key of the connection's
// syscall.RawConn (see connContext).
type connKey struct{}

// corkMin is the body size above which a response may not fit net/http's
// 4 KiB connection buffer together with its headers (about 300 bytes for
// an object). net/http then writes it with two write(2) calls, each a
// separate loopback delivery and client wake-up; corking makes them one.
const corkMin = 4096 - 512

// writeBody sends a small body (headers already set). Once Write returns,
// b has been copied or written, so the caller may reuse it.
func writeBody(w http.ResponseWriter, r *http.Request, b []byte) {
	w.WriteHeader(http.StatusOK)
	if len(b) <= corkMin {
		_, _ = w.Write(b) // a failure means the client went away
		return
	}
	rc, _ := r.Context().Value(connKey{}).(syscall.RawConn)
	if rc == nil || !setCork(rc, true) {
		_, _ = w.Write(b)
		return
	}
	// Flush while corked: what net/http would flush after the handler
	// returns must be queued before the cork is cleared, or it would leave
	// as a second burst after it.
	if _, err := w.Write(b); err == nil {
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		} else {
			_ = http.NewResponseController(w).Flush()
		}
	}
	setCork(rc, false)
}

// sendFile sends f's size bytes (headers already set) with sendfile(2).
func (h *repoHandler) sendFile(w http.ResponseWriter, name string, f *os.File, size int64) {
	w.WriteHeader(http.StatusOK)
	// io.CopyN hands an io.LimitedReader over the *os.File to the
	// ResponseWriter's ReadFrom, which uses sendfile(2) on Linux. Keep any
	// wrapper of the ResponseWriter implementing io.ReaderFrom.
	if _, err := io.CopyN(w, f, size); err != nil {
		// Usually the client went away; nothing more can be sent.
		h.log.Debug("sending file failed", zap.String("path", name), zap.Error(err))
	}
}

// openFailed maps an open error to a response. Anything that means "no such
// file here" is a 404, including symlinks that leave the repository;
// resource exhaustion and I/O errors are 500, which ostree retries.
func (h *repoHandler) openFailed(w http.ResponseWriter, name string, err error) {
	switch {
	case errors.Is(err, fs.ErrNotExist),
		errors.Is(err, syscall.ENOTDIR),
		errors.Is(err, syscall.ENAMETOOLONG):
		writeStatus(w, http.StatusNotFound)
	case errors.Is(err, syscall.EMFILE),
		errors.Is(err, syscall.ENFILE),
		errors.Is(err, syscall.ENOMEM),
		errors.Is(err, syscall.EIO):
		h.log.Error("opening repository file failed", zap.String("path", name), zap.Error(err))
		writeStatus(w, http.StatusInternalServerError)
	default:
		// Permission problems, symlink loops and symlinks escaping the
		// repository: not servable, and worth an operator's attention.
		h.log.Warn("refusing repository file", zap.String("path", name), zap.Error(err))
		writeStatus(w, http.StatusNotFound)
	}
}

// writeStatus writes a short plain-text body for an error status, dropping
// any headers that described the file.
func writeStatus(w http.ResponseWriter, status int) {
	hdr := w.Header()
	for _, k := range [...]string{"Etag", "Last-Modified", "Content-Length", "Accept-Ranges"} {
		delete(hdr, k)
	}
	writeText(w, status, strings.ToLower(http.StatusText(status))+"\n")
}
