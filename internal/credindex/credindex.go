// Package credindex keeps the device credentials a server authorizes in
// memory, so that a device's check reads no token row: for every live
// device token bound to a device (an id of 32 lowercase hex digits, a
// machine-id), the SHA-256 of the token, the device and the expiry.
//
// The database stays the authority. The index is loaded by one scan
// (Load) and follows every change made anywhere through the token change
// feed (db.TokenChangesSince: the store adds a token's hash to the feed
// in the same transaction that revokes it or cuts its life). Sync reads
// the feed and drops every token in it; the server runs it every second
// (so a revocation made by another process applies within a second, as
// before the index) and at once after its own revocations and rotations
// (so those apply to the very next request). A token the index does not
// hold is read from the database by the caller, who adds it (Add) if it
// is a live bound device token. An Add that raced with a Sync that
// dropped the same token is refused, so a revocation can never be undone
// by a read that started before it.
//
// Sync reads the feed from a minute before its previous run (by the
// writers' clocks), so a transaction that committed late, or a writer
// whose clock is up to a minute behind, is still seen; dropping a token
// twice costs one extra read. Until the index is loaded, and whenever a
// Sync fails, Get finds nothing, and callers read the database: a missed
// change can never be served from memory. The feed keeps an hour of
// changes (pruned by Sync every ten minutes).
//
// Memory: 56 bytes per credential (32-byte hash, 16-byte packed device
// id, 8-byte expiry) in one array sorted by hash, made by Load and
// searched by bisection, which the garbage collector does not scan;
// credentials added after the load go to a map beside it (also without
// pointers). Dropped credentials of the array are marked, not removed;
// when an eighth of the index is marked or added (credential rotation
// does both), the server loads it again (Stale, Load) while the old one
// keeps answering.
package credindex

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"math"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/mxos-linux/mxos-update/internal/changefeed"
	"github.com/mxos-linux/mxos-update/internal/db"
)

// The token feed is read and pruned on the cache-change feed's timing
// (internal/changefeed): Sync reads from Lookback before its previous
// run, the feed keeps a change for Retention, Sync prunes every
// PruneEvery.
const (
	Lookback   = changefeed.Lookback
	Retention  = changefeed.Retention
	PruneEvery = changefeed.PruneEvery
)

// rec is an indexed credential.
type rec struct {
	dev     [16]byte
	expires int64 // Unix microseconds; 0: never; dropped: a dropped entry of base
}

// dropped marks an entry of base whose token was dropped.
const dropped = math.MinInt64

// entry is a credential of the array made by Load.
type entry struct {
	key [32]byte
	rec
}

// Credential is what the index knows of a token.
type Credential struct {
	DeviceID  string
	ExpiresAt time.Time // zero: never
}

// Index is the in-memory credential index. The zero value is empty and
// not ready; it is safe for concurrent use. A nil *Index is never ready
// (Get finds nothing, Add and Sync do nothing).
type Index struct {
	Store *db.Store
	Now   func() time.Time

	mu     sync.RWMutex
	base   []entry          // sorted by key
	extra  map[[32]byte]rec // added after Load
	ready  bool             // loaded, and the last Sync succeeded
	gen    uint64
	recent map[[32]byte]drop // tokens dropped within the last 2 × Lookback

	nDropped int  // dropped entries of base
	loading  bool // a Load is scanning: recent is not pruned

	loadMu    sync.Mutex // one Load at a time
	syncMu    sync.Mutex // one Sync at a time
	lastSync  time.Time  // start of the last successful Sync (our clock)
	lastPrune time.Time
	closed    bool           // Close was called: no more prunes (under syncMu)
	pruning   sync.WaitGroup // the prune Sync started, if running
}

// drop is when a token was dropped: in which generation, at what time.
type drop struct {
	gen uint64
	at  time.Time
}

func (x *Index) now() time.Time {
	if x.Now != nil {
		return x.Now()
	}
	return time.Now()
}

func key(hash []byte) ([32]byte, bool) {
	var k [32]byte
	if len(hash) != len(k) {
		return k, false
	}
	copy(k[:], hash)
	return k, true
}

// Get returns the credential whose token hashes to hash, if the index
// holds it and is ready. The caller still judges the expiry.
func (x *Index) Get(hash []byte) (Credential, bool) {
	if x == nil {
		return Credential{}, false
	}
	k, ok := key(hash)
	if !ok {
		return Credential{}, false
	}
	x.mu.RLock()
	r, ok := x.getLocked(k)
	ready := x.ready
	x.mu.RUnlock()
	if !ok || !ready {
		return Credential{}, false
	}
	c := Credential{DeviceID: hex.EncodeToString(r.dev[:])}
	if r.expires != 0 {
		c.ExpiresAt = time.UnixMicro(r.expires).UTC()
	}
	return c, true
}

// find returns the index of k in base, or -1.
func (x *Index) find(k [32]byte) int {
	i, ok := slices.BinarySearchFunc(x.base, k, func(e entry, k [32]byte) int { return bytes.Compare(e.key[:], k[:]) })
	if !ok {
		return -1
	}
	return i
}

func (x *Index) getLocked(k [32]byte) (rec, bool) {
	if i := x.find(k); i >= 0 && x.base[i].expires != dropped {
		return x.base[i].rec, true
	}
	r, ok := x.extra[k]
	return r, ok
}

// Ticket is taken before reading a token from the database and given to
// Add with what was read.
type Ticket struct {
	gen uint64
	at  time.Time
}

// Begin returns the ticket for a read that starts now.
func (x *Index) Begin() Ticket {
	if x == nil {
		return Ticket{}
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	return Ticket{gen: x.gen, at: x.now()}
}

// Add indexes a live device token read from the database under ticket t.
// Tokens bound to ids that are not 32 lowercase hex digits are not
// indexed; nor is a token dropped since the read began, nor anything
// while the index is not ready.
func (x *Index) Add(t Ticket, hash []byte, c Credential) {
	if x == nil {
		return
	}
	k, ok := key(hash)
	dev, isHex := db.PackHexID(c.DeviceID)
	if !ok || !isHex {
		return
	}
	r := rec{dev: dev}
	if !c.ExpiresAt.IsZero() {
		r.expires = c.ExpiresAt.UnixMicro()
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.ready || x.now().Sub(t.at) > Lookback {
		return
	}
	if d, ok := x.recent[k]; ok && d.gen > t.gen {
		return
	}
	if i := x.find(k); i >= 0 {
		x.base[i].rec = r
		return
	}
	if x.extra == nil {
		x.extra = map[[32]byte]rec{}
	}
	x.extra[k] = r
}

// Len is the number of indexed credentials.
func (x *Index) Len() int {
	if x == nil {
		return 0
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := len(x.extra)
	for i := range x.base {
		if x.base[i].expires != dropped {
			n++
		}
	}
	return n
}

// Ready reports whether Get answers from memory.
func (x *Index) Ready() bool {
	if x == nil {
		return false
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.ready
}

// Load reads every live bound device credential into the index and
// makes it ready; run again, it compacts the index (see Stale) while the
// old one keeps answering and Syncs go on. Changes made while it scans
// are dropped again from the new array when it is swapped in (if a Sync
// or Drop saw them) or by the Syncs after it.
func (x *Index) Load(ctx context.Context) error {
	x.loadMu.Lock() // one Load at a time; Syncs go on while it scans
	defer x.loadMu.Unlock()
	x.mu.Lock()
	x.loading = true // keep every drop from now on in recent
	x.mu.Unlock()
	defer func() {
		x.mu.Lock()
		x.loading = false
		x.mu.Unlock()
	}()
	start := x.now()
	t := x.Begin()
	// Not sized by a count first: counting live tokens is a scan of its
	// own, slower than this one.
	var base []entry
	err := x.Store.ScanDeviceCredentials(ctx, start, func(c db.DeviceCredential) error {
		k, ok := key(c.Hash)
		dev, isHex := db.PackHexID(c.DeviceID)
		if !ok || !isHex {
			return nil
		}
		e := entry{key: k, rec: rec{dev: dev}}
		if !c.ExpiresAt.IsZero() {
			e.expires = c.ExpiresAt.UnixMicro()
		}
		base = append(base, e)
		return nil
	})
	if err != nil {
		return fmt.Errorf("loading device credentials: %w", err)
	}
	slices.SortFunc(base, func(a, b entry) int { return bytes.Compare(a.key[:], b.key[:]) })
	base = slices.Clip(slices.Clone(base)) // exactly its size: the appends' spare room goes
	// The scan's garbage (its rows, the grown array) is given back now,
	// not over the next minutes.
	debug.FreeOSMemory()
	x.syncMu.Lock()
	defer x.syncMu.Unlock()
	x.mu.Lock()
	// Swap in the new array, then drop again what every Sync (or Drop)
	// since the scan began dropped: the scan may have read it before.
	x.base, x.extra, x.nDropped = base, nil, 0
	for k, d := range x.recent {
		if d.gen > t.gen {
			x.dropKeyLocked(k)
		}
	}
	x.ready = true
	x.mu.Unlock()
	if start.After(x.lastSync) {
		x.lastSync = start
	}
	return nil
}

func (x *Index) dropKeyLocked(k [32]byte) {
	if i := x.find(k); i >= 0 && x.base[i].expires != dropped {
		x.base[i].expires = dropped
		x.nDropped++
	}
	delete(x.extra, k)
}

// Stale reports whether a Load would make the index much smaller: an
// eighth of it is dropped entries of the array or credentials added
// after the load (credential rotation turns one into the other, so
// without a reload the index would grow with every rotation).
func (x *Index) Stale() bool {
	if x == nil {
		return false
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.ready && x.nDropped+len(x.extra) > max(1024, len(x.base)/8)
}

// Sync drops every token the feed names since a minute before the last
// successful Sync (or Load). If it fails, the index stops answering until
// a Sync succeeds. Sync before Load does nothing.
func (x *Index) Sync(ctx context.Context) error {
	if x == nil {
		return nil
	}
	x.syncMu.Lock()
	defer x.syncMu.Unlock()
	if x.lastSync.IsZero() {
		return nil
	}
	start := x.now()
	hashes, err := x.Store.TokenChangesSince(ctx, x.lastSync.Add(-Lookback))
	x.mu.Lock()
	defer x.mu.Unlock()
	if err != nil {
		x.ready = false
		return fmt.Errorf("reading token changes: %w", err)
	}
	x.dropLocked(hashes, start)
	x.ready = true
	x.lastSync = start
	if !x.closed && start.Sub(x.lastPrune) >= PruneEvery {
		x.lastPrune = start
		x.pruning.Add(1)
		go func() {
			defer x.pruning.Done()
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			_ = x.Store.PruneTokenChanges(pctx, start.Add(-Retention))
		}()
	}
	return nil
}

// Close stops Sync from starting prunes and waits for one under way, so
// the Store can be closed after it (as changefeed.Follower.Close). Get and
// Sync still work after it.
func (x *Index) Close() {
	if x == nil {
		return
	}
	x.syncMu.Lock()
	x.closed = true
	x.syncMu.Unlock()
	x.pruning.Wait()
}

// Drop drops the tokens with these hashes at once: the caller changed
// them (revoked one, cut its life), whatever its clock says.
func (x *Index) Drop(hashes ...[]byte) {
	if x == nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.dropLocked(hashes, x.now())
}

// DropDevice drops every credential of device id (a walk of the whole
// index: for an admin's revocation, not for requests).
func (x *Index) DropDevice(id string) {
	dev, ok := db.PackHexID(id)
	if x == nil || !ok {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	var hashes [][]byte
	for i := range x.base {
		if x.base[i].dev == dev && x.base[i].expires != dropped {
			hashes = append(hashes, x.base[i].key[:])
		}
	}
	for k, r := range x.extra {
		if r.dev == dev {
			hashes = append(hashes, bytes.Clone(k[:]))
		}
	}
	x.dropLocked(hashes, x.now())
}

func (x *Index) dropLocked(hashes [][]byte, now time.Time) {
	x.gen++
	if x.recent == nil {
		x.recent = map[[32]byte]drop{}
	}
	for k, d := range x.recent {
		if !x.loading && now.Sub(d.at) > 2*Lookback {
			delete(x.recent, k)
		}
	}
	for _, h := range hashes {
		if k, ok := key(h); ok {
			x.dropKeyLocked(k)
			x.recent[k] = drop{gen: x.gen, at: now}
		}
	}
}
