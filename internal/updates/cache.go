package updates

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/mxos-linux/mxos-update/internal/db"
)

// ttlCache keeps answers of the store that every check needs (the current
// rollout, releases) for a short time: a fleet checking thousands of times
// a second then costs one query per key per TTL instead of one per check.
// Writers that change those rows call Invalidate, so this process never
// serves a stale rollout state; other replicas see changes within the TTL.
//
// A shared cache must never turn one caller's trouble into everyone's:
//   - concurrent misses of a key share one load (singleflight), and that
//     load runs on a context no caller's cancellation or deadline ends
//     (bounded by loadTimeout instead), so a device that hangs up while
//     the cache refreshes fails alone;
//   - only definite answers are kept (a value, or db.ErrNotFound); any
//     other error goes to the callers of that load and is not cached;
//   - while a refresh fails, the last good value is served (and the next
//     caller tries again). Invalidate drops the last good values too, so a
//     halt can never be undone by a stale entry.
type ttlCache[K comparable, V any] struct {
	mu    sync.Mutex
	ttl   time.Duration
	m     map[K]cacheEntry[V]
	gen   uint64 // bumped by clear: loads begun before it neither store nor are joined
	group singleflight.Group
}

type cacheEntry[V any] struct {
	v       V
	err     error // nil or db.ErrNotFound (a definite answer)
	expires time.Time
}

// loadTimeout bounds a shared load, which no caller's context can cancel.
const loadTimeout = 10 * time.Second

func definite(err error) bool { return err == nil || errors.Is(err, db.ErrNotFound) }

func (c *ttlCache[K, V]) get(ctx context.Context, k K, now time.Time, load func(context.Context) (V, error)) (V, error) {
	if c.ttl <= 0 {
		return load(ctx)
	}
	c.mu.Lock()
	e, ok := c.m[k]
	gen := c.gen
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.v, e.err
	}
	ch := c.group.DoChan(fmt.Sprintf("%d\x00%v", gen, k), func() (any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
		defer cancel()
		v, err := load(lctx)
		if !definite(err) {
			return v, err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.gen == gen {
			if c.m == nil {
				c.m = map[K]cacheEntry[V]{}
			}
			if len(c.m) > 10000 {
				clear(c.m) // bounded: keys are channels, arches and versions
			}
			c.m[k] = cacheEntry[V]{v: v, err: err, expires: now.Add(c.ttl)}
		}
		return v, err
	})
	select {
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	case r := <-ch:
		if !definite(r.Err) && ok {
			return e.v, e.err // the refresh failed: keep serving the last good answer
		}
		v, _ := r.Val.(V)
		return v, r.Err
	}
}

func (c *ttlCache[K, V]) clear() {
	c.mu.Lock()
	clear(c.m)
	c.gen++
	c.mu.Unlock()
}
