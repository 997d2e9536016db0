package updates

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/db"
)

// deviceIndex is what a check needs of every registered device, in
// memory, so that a device's first check in an hour reads no device row:
// a hash of the state last written (arch, channel, booted commit,
// version), when it was last seen (to the second), and its group.
//
// It is loaded once by a scan of the devices table (LoadIndex) and kept
// current by this process's own writes: checks, and the change
// notifications of the admin API (ForgetDevice after a group change).
// Groups an admin sets through another replica arrive with ForgetDevice
// too, from the cache change feed (the server reads it every second);
// RefreshGroups (every minute) catches the rest.
//
// Memory: a device whose id is 32 hex digits (a machine-id, what the
// updater sends) is a 16-byte key and a 16-byte value in a map without
// pointers, which the garbage collector never scans; other ids keep their
// string. A device in a group adds an entry to the (usually far smaller)
// group map. Group names are interned.
type deviceIndex struct {
	mu     sync.RWMutex
	loaded bool
	hex    map[[16]byte]devRec
	other  map[string]devRec
	group  map[string]uint32 // device id → interned group (only grouped devices)
	names  []string          // interned group names; names[0] is ""
	nameID map[string]uint32
	// While a load or a group refresh scans the table, the ids whose
	// group this process changed meanwhile; their live values win.
	scanning int
	touched  map[string]struct{}
}

// devRec is a device as last written by (or loaded into) this process.
type devRec struct {
	state uint64 // stateHash of arch, channel, booted commit, version
	seen  int64  // last seen, Unix seconds
}

var stateSeed = maphash.MakeSeed()

// stateHash summarises what a check writes besides the times and group:
// equal hashes mean the stored row needs only a last-seen update. (A
// collision, 2^-64, would only delay that device's write by up to a
// second: the queued write carries the whole row.)
func stateHash(arch, channel, commit, version string) uint64 {
	var h maphash.Hash
	h.SetSeed(stateSeed)
	for _, s := range [...]string{arch, channel, commit, version} {
		h.WriteString(s)
		h.WriteByte(0)
	}
	return h.Sum64()
}

func (x *deviceIndex) initLocked() {
	if x.hex == nil {
		x.hex = map[[16]byte]devRec{}
		x.other = map[string]devRec{}
		x.group = map[string]uint32{}
		x.names = []string{""}
		x.nameID = map[string]uint32{"": 0}
	}
}

// get returns the device's record and group name.
func (x *deviceIndex) get(id string) (devRec, string, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var r devRec
	var ok bool
	if k, isHex := db.PackHexID(id); isHex {
		r, ok = x.hex[k]
	} else {
		r, ok = x.other[id]
	}
	if !ok {
		return r, "", false
	}
	return r, x.names[x.group[id]], true
}

func (x *deviceIndex) isLoaded() bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.loaded
}

func (x *deviceIndex) internLocked(g string) uint32 {
	if n, ok := x.nameID[g]; ok {
		return n
	}
	n := uint32(len(x.names))
	x.names = append(x.names, g)
	x.nameID[g] = n
	return n
}

func (x *deviceIndex) putRecLocked(id string, r devRec) {
	if k, isHex := db.PackHexID(id); isHex {
		x.hex[k] = r
	} else {
		x.other[id] = r
	}
}

func (x *deviceIndex) setGroupLocked(id, g string) {
	if g == "" {
		delete(x.group, id)
	} else {
		x.group[id] = x.internLocked(g)
	}
	if x.scanning > 0 {
		x.touched[id] = struct{}{}
	}
}

// put records what this process wrote (or read) for a device. group is
// the stored group; keepGroup leaves the indexed group as it is.
func (x *deviceIndex) put(id string, r devRec, group string, keepGroup bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.initLocked()
	x.putRecLocked(id, r)
	if !keepGroup {
		x.setGroupLocked(id, group)
	} else if x.scanning > 0 {
		x.touched[id] = struct{}{}
	}
}

// remove drops a device (it no longer exists).
func (x *deviceIndex) remove(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.initLocked()
	if k, isHex := db.PackHexID(id); isHex {
		delete(x.hex, k)
	} else {
		delete(x.other, id)
	}
	x.setGroupLocked(id, "")
}

// beginScan and endScan bracket a scan of the table: ids written by this
// process meanwhile are in touched, and keep their live values.
func (x *deviceIndex) beginScan() {
	x.mu.Lock()
	x.initLocked()
	if x.scanning == 0 {
		x.touched = map[string]struct{}{}
	}
	x.scanning++
	x.mu.Unlock()
}

func (x *deviceIndex) endScanLocked() {
	x.scanning--
	if x.scanning == 0 {
		x.touched = nil
	}
}

// LoadIndex reads every device into the in-memory index; until it has
// finished, checks read their device's row. It is safe to call while
// checks run: what they write meanwhile is kept over what the scan read.
func (s *Service) LoadIndex(ctx context.Context) error {
	x := &s.index
	x.beginScan()
	// Sized once: growing a map of a million entries doubles it a few
	// times and leaves the old tables as garbage.
	n, err := s.Store.CountDevices(ctx, db.DeviceFilter{})
	if err != nil {
		x.mu.Lock()
		x.endScanLocked()
		x.mu.Unlock()
		return fmt.Errorf("loading the device index: %w", err)
	}
	var (
		hexRecs   = make(map[[16]byte]devRec, n+n/64)
		otherRecs = map[string]devRec{}
		groups    = map[string]string{}
	)
	err = s.Store.ScanDevices(ctx, func(d db.Device) error {
		r := devRec{state: stateHash(d.Arch, d.Channel, d.BootedCommit, d.Version), seen: d.LastSeen.Unix()}
		if k, ok := db.PackHexID(d.ID); ok {
			hexRecs[k] = r
		} else {
			otherRecs[d.ID] = r
		}
		if d.Group != "" {
			groups[d.ID] = d.Group
		}
		return nil
	})
	x.mu.Lock()
	defer x.mu.Unlock()
	defer x.endScanLocked()
	if err != nil {
		return fmt.Errorf("loading the device index: %w", err)
	}
	// What checks and notifications wrote during the scan is newer.
	for k, r := range x.hex {
		hexRecs[k] = r
	}
	for id, r := range x.other {
		otherRecs[id] = r
	}
	live := x.group
	x.hex, x.other, x.group = hexRecs, otherRecs, make(map[string]uint32, len(groups))
	for id, g := range groups {
		if _, ok := x.touched[id]; !ok {
			x.group[id] = x.internLocked(g)
		}
	}
	for id := range x.touched {
		if n, ok := live[id]; ok {
			x.group[id] = n
		}
	}
	x.loaded = true
	return nil
}

// RefreshGroups re-reads the groups of all devices, so that groups set
// through another replica apply here (the server calls it every minute).
// Groups this process changed during the scan keep their live value.
func (s *Service) RefreshGroups(ctx context.Context) error {
	x := &s.index
	if !x.isLoaded() {
		return nil
	}
	x.beginScan()
	groups := map[string]string{}
	err := s.Store.GroupedDevices(ctx, func(id, g string) error {
		groups[id] = g
		return nil
	})
	x.mu.Lock()
	defer x.mu.Unlock()
	defer x.endScanLocked()
	if err != nil {
		return fmt.Errorf("refreshing device groups: %w", err)
	}
	live := x.group
	x.group = make(map[string]uint32, len(groups))
	used := map[string]uint32{"": 0}
	names := []string{""}
	intern := func(g string) uint32 {
		if n, ok := used[g]; ok {
			return n
		}
		n := uint32(len(names))
		names = append(names, g)
		used[g] = n
		return n
	}
	for id, g := range groups {
		if _, ok := x.touched[id]; !ok {
			x.group[id] = intern(g)
		}
	}
	for id := range x.touched {
		if n, ok := live[id]; ok {
			x.group[id] = intern(x.names[n])
		}
	}
	// Re-interning drops names no device uses any more.
	x.names, x.nameID = names, used
	return nil
}

// IndexReady reports whether the device index is loaded (checks then
// read no device rows).
func (s *Service) IndexReady() bool { return s.index.isLoaded() }

// IndexedDevices is the number of devices in the index.
func (s *Service) IndexedDevices() int {
	s.index.mu.RLock()
	defer s.index.mu.RUnlock()
	return len(s.index.hex) + len(s.index.other)
}

// lookupDevice returns what the service knows of a device: from the index
// once it is loaded, else (and for a device the index does not hold: a
// new device, or one first seen by another replica) from its row, which
// then joins the index. known is false for an unregistered device.
func (s *Service) lookupDevice(ctx context.Context, id string) (rec devRec, group string, known bool, err error) {
	loaded := s.index.isLoaded()
	if loaded {
		if rec, group, known = s.index.get(id); known {
			return rec, group, true, nil
		}
	}
	d, err := s.Store.GetDevice(ctx, id)
	if isNotFound(err) {
		return devRec{}, "", false, nil
	}
	if err != nil {
		return devRec{}, "", false, err
	}
	rec = devRec{state: stateHash(d.Arch, d.Channel, d.BootedCommit, d.Version), seen: d.LastSeen.Unix()}
	if loaded {
		s.index.put(id, rec, d.Group, false)
	}
	return rec, d.Group, true, nil
}

// ForgetDevice re-reads one device into the index after an admin changed
// it (its group): the next check obeys the change.
func (s *Service) ForgetDevice(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	d, err := s.Store.GetDevice(ctx, id)
	switch {
	case err == nil:
		s.index.put(id, devRec{state: stateHash(d.Arch, d.Channel, d.BootedCommit, d.Version), seen: d.LastSeen.Unix()}, d.Group, false)
	case isNotFound(err):
		s.index.remove(id)
	default:
		// The row could not be read: stop trusting the index (checks read
		// rows) until it has been loaded again.
		s.log().Warn("re-reading a changed device", zap.String("device", id), zap.Error(err))
		s.index.mu.Lock()
		s.index.loaded = false
		s.index.mu.Unlock()
		go func() {
			lctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			if err := s.LoadIndex(lctx); err != nil {
				s.log().Error("reloading the device index", zap.Error(err))
			}
		}()
	}
}

func isNotFound(err error) bool { return errors.Is(err, db.ErrNotFound) }
