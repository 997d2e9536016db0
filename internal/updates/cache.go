package updates

import (
	"sync"
	"time"
)

// ttlCache keeps answers of the store that every check needs (the current
// rollout, releases) for a short time: a fleet checking thousands of times
// a second then costs one query per key per TTL instead of one per check.
// Writers that change those rows call Invalidate, so this process never
// serves a stale rollout state; other replicas see changes within the TTL.
type ttlCache[K comparable, V any] struct {
	mu  sync.Mutex
	ttl time.Duration
	m   map[K]cacheEntry[V]
}

type cacheEntry[V any] struct {
	v       V
	err     error
	expires time.Time
}

func (c *ttlCache[K, V]) get(k K, now time.Time, load func() (V, error)) (V, error) {
	if c.ttl <= 0 {
		return load()
	}
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.v, e.err
	}
	v, err := load()
	c.mu.Lock()
	if c.m == nil {
		c.m = map[K]cacheEntry[V]{}
	}
	if len(c.m) > 10000 {
		clear(c.m) // bounded: keys are channels, arches and versions
	}
	c.m[k] = cacheEntry[V]{v: v, err: err, expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return v, err
}

func (c *ttlCache[K, V]) clear() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}
