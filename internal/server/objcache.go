package server

import (
	"hash/maphash"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Open-object cache limits.
const (
	// objCacheMax bounds the number of cached descriptors; the actual
	// bound is also at most a quarter of RLIMIT_NOFILE.
	objCacheMax = 16384
	// objCacheTTL bounds how long a descriptor is reused. After an object
	// is deleted from the repository (prune), it is served and its disk
	// space held for at most about twice this long.
	objCacheTTL = 60 * time.Second
	// memObjectMax is the largest object whose bytes the cache keeps in
	// memory (up to Config.ObjectMemory in all) instead of an open
	// descriptor: a hit then costs no system call before the write.
	memObjectMax = 16 << 10
	// doorSlots is the size of the admission filter (see objCache.seen):
	// 8 bytes each, 512 KiB in all.
	doorSlots = 1 << 16
)

// doorSeed hashes object names for the admission filter.
var doorSeed = maphash.MakeSeed()

// objCache keeps small content-addressed objects open, like nginx's
// open_file_cache: a hit costs one pread instead of openat, fstat, pread
// and close, which is most of the system calls of a request. Objects of at
// most memObjectMax bytes keep their bytes instead, within a total of
// memMax bytes, so a hit costs no pread either.
//
// Admission: an object enters the cache on its second request, not its
// first (a "doorkeeper", as in TinyLFU). A pull asks for each object once,
// and a fleet asks for the objects of a release many times: caching on
// the first request would spend an allocation, a copy and a cache slot on
// every object of every pull, evicting the objects that are asked for
// again. The filter is a fixed table of name hashes; a collision only
// delays an admission by one request.
//
// Only immutable objects are cached. Their bytes are fixed by their name,
// so a cached descriptor always serves the right content; the atomic
// replacement rule (one open per request) matters only for files that
// change, which never come here. Descriptors are *os.File, whose reference
// counting makes eviction safe while another request is reading: the
// reader either finishes or gets os.ErrClosed and falls back to a fresh
// open. Bytes in memory are never written after the entry is published,
// so responses may share them; eviction only releases their accounting.
type objCache struct {
	door   [doorSlots]atomic.Uint64 // see seen
	m      sync.Map                 // name → *cachedObject
	n      atomic.Int64
	max    int64
	mem    atomic.Int64 // bytes reserved by entries holding data
	memMax int64        // ≤ 0: no object bytes in memory
	ttl    time.Duration
	stop   chan struct{}
	done   chan struct{}
}

// cachedObject is an object, open or in memory, and its precomputed
// response headers. The header slices are shared by all responses;
// len == cap, so a later Header.Add copies instead of writing into them.
type cachedObject struct {
	f       *os.File // nil when data holds the bytes
	data    []byte   // the object's bytes when f is nil; read-only
	size    int64
	modtime time.Time
	expires int64 // UnixNano
	etag    string
	hdrETag []string
	hdrLM   []string
	hdrLen  []string
}

// newObjCache returns a cache of at most max entries (further bounded by
// RLIMIT_NOFILE) holding at most memMax bytes of objects, kept for ttl.
func newObjCache(max, memMax int64, ttl time.Duration) *objCache {
	c := &objCache{max: max, memMax: memMax, ttl: ttl, stop: make(chan struct{}), done: make(chan struct{})}
	if n := openFileLimit(); n > 0 && n/4 < uint64(c.max) {
		c.max = int64(n / 4)
	}
	go c.sweep()
	return c
}

func (c *objCache) newEntry(f *os.File, name string, size int64, modtime time.Time, now time.Time) *cachedObject {
	etag := nameETag(name)
	return &cachedObject{
		f:       f,
		size:    size,
		modtime: modtime,
		expires: now.Add(c.ttl).UnixNano(),
		etag:    etag,
		hdrETag: []string{etag},
		hdrLM:   []string{modtime.UTC().Format(http.TimeFormat)},
		hdrLen:  []string{strconv.FormatInt(size, 10)},
	}
}

// load moves a fresh entry's bytes into memory if the budget allows, and
// closes its descriptor then. Call it before add: published entries are
// read concurrently.
func (c *objCache) load(e *cachedObject) {
	if e.f == nil || e.size > memObjectMax || !c.reserve(e.size) {
		return
	}
	data := make([]byte, e.size)
	if _, err := e.f.ReadAt(data, 0); err != nil {
		// Keep the descriptor; serving reports the error if it persists.
		c.mem.Add(-e.size)
		return
	}
	_ = e.f.Close()
	e.f, e.data = nil, data
}

// reserve charges n bytes to the memory budget, evicting other entries'
// bytes if needed; false if they do not fit. The CAS keeps the total
// within memMax however many requests reserve at once.
func (c *objCache) reserve(n int64) bool {
	if c.memMax <= 0 || n > c.memMax {
		return false
	}
	for evicted := false; ; {
		cur := c.mem.Load()
		if cur+n <= c.memMax {
			if c.mem.CompareAndSwap(cur, cur+n) {
				return true
			}
			continue
		}
		if evicted {
			return false
		}
		c.evictMem(n)
		evicted = true
	}
}

// evictMem drops in-memory entries, in map order, until about n bytes or
// 1/64 of the budget, whichever is more, are free.
func (c *objCache) evictMem(n int64) {
	want := max(n, c.memMax/64)
	c.m.Range(func(key, v any) bool {
		if e := v.(*cachedObject); e.f == nil && c.remove(key.(string), e) {
			want -= e.size
		}
		return want > 0
	})
}

// seen records a request for name and reports whether it was (probably)
// requested before: the second request of an object admits it.
func (c *objCache) seen(name string) bool {
	h := maphash.String(doorSeed, name) | 1 // never 0, the empty slot
	slot := &c.door[h%doorSlots]
	if slot.Load() == h {
		return true
	}
	slot.Store(h)
	return false
}

// get returns the live entry for name, or nil.
func (c *objCache) get(name string, now time.Time) *cachedObject {
	v, ok := c.m.Load(name)
	if !ok {
		return nil
	}
	e := v.(*cachedObject)
	if now.UnixNano() > e.expires {
		c.remove(name, e)
		return nil
	}
	return e
}

// add caches e under name, unless the cache is full or closed. It returns
// whether e is now owned by the cache (the caller discards it otherwise).
func (c *objCache) add(name string, e *cachedObject) bool {
	select {
	case <-c.stop:
		return false
	default:
	}
	if c.n.Load() >= c.max {
		c.evictSome()
		if c.n.Load() >= c.max {
			return false
		}
	}
	if old, loaded := c.m.Swap(name, e); loaded {
		c.discard(old.(*cachedObject))
	} else {
		c.n.Add(1)
	}
	return true
}

// discard releases an entry that is not (or no longer) in the cache: it
// closes the descriptor or returns the bytes to the budget. Requests still
// holding e may keep using its data.
func (c *objCache) discard(e *cachedObject) {
	if e.f != nil {
		_ = e.f.Close()
	} else if e.data != nil {
		c.mem.Add(-int64(len(e.data)))
	}
}

// remove drops e if it is still the entry for name, and reports whether
// it did.
func (c *objCache) remove(name string, e *cachedObject) bool {
	if !c.m.CompareAndDelete(name, e) {
		return false
	}
	c.n.Add(-1)
	c.discard(e)
	return true
}

// evictSome drops about 1/64 of the entries, in map order, which is
// arbitrary: cheap, and good enough for a cache of immutable files.
func (c *objCache) evictSome() {
	k := c.max/64 + 1
	c.m.Range(func(key, v any) bool {
		c.remove(key.(string), v.(*cachedObject))
		k--
		return k > 0
	})
}

// sweep closes expired entries, so deleted objects release their disk
// space even if nobody asks for them again.
func (c *objCache) sweep() {
	defer close(c.done)
	t := time.NewTicker(c.ttl)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			c.m.Range(func(key, v any) bool {
				if e := v.(*cachedObject); now.UnixNano() > e.expires {
					c.remove(key.(string), e)
				}
				return true
			})
		}
	}
}

// close stops the sweeper and closes every cached descriptor.
func (c *objCache) close() {
	close(c.stop)
	<-c.done
	c.m.Range(func(key, v any) bool {
		c.remove(key.(string), v.(*cachedObject))
		return true
	})
}
