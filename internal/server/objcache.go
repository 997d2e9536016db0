package server

import (
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
)

// objCache keeps small content-addressed objects open, like nginx's
// open_file_cache: a hit costs one pread instead of openat, fstat, pread
// and close, which is most of the system calls of a request.
//
// Only immutable objects are cached. Their bytes are fixed by their name,
// so a cached descriptor always serves the right content; the atomic
// replacement rule (one open per request) matters only for files that
// change, which never come here. Descriptors are *os.File, whose reference
// counting makes eviction safe while another request is reading: the
// reader either finishes or gets os.ErrClosed and falls back to a fresh
// open.
type objCache struct {
	m    sync.Map // name → *cachedObject
	n    atomic.Int64
	max  int64
	ttl  time.Duration
	stop chan struct{}
	done chan struct{}
}

// cachedObject is an open object and its precomputed response headers.
// The header slices are shared by all responses; len == cap, so a later
// Header.Add copies instead of writing into them.
type cachedObject struct {
	f       *os.File
	size    int64
	modtime time.Time
	expires int64 // UnixNano
	etag    string
	hdrETag []string
	hdrLM   []string
	hdrLen  []string
}

// newObjCache returns a cache of at most max descriptors (further bounded
// by RLIMIT_NOFILE) kept for ttl.
func newObjCache(max int64, ttl time.Duration) *objCache {
	c := &objCache{max: max, ttl: ttl, stop: make(chan struct{}), done: make(chan struct{})}
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
// whether e is now owned by the cache (the caller closes it otherwise).
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
		_ = old.(*cachedObject).f.Close()
	} else {
		c.n.Add(1)
	}
	return true
}

// remove drops e if it is still the entry for name.
func (c *objCache) remove(name string, e *cachedObject) {
	if c.m.CompareAndDelete(name, e) {
		c.n.Add(-1)
		_ = e.f.Close()
	}
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
