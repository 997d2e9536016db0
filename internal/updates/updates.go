// Package updates answers devices: what to install next (Check) and what
// happened (Report), including the auto-halt that a report can trigger. It
// joins the channel definitions, the metadata store and the pure rollout
// policy; the HTTP layer only decodes requests and encodes answers.
//
// Precedence, highest first (documented for admins in the README):
//
//  1. a device pin, 2. a group pin, 3. the channel the device asks for.
//
// A pin's channel replaces the device's channel; a pin's version holds the
// device on that release: it is offered while the device is older and
// nothing newer is offered (a hold never downgrades). Without a held
// version, the channel's current rollout decides (rollout.Decide: ramp,
// bucket, barriers, dead ends, releases the device rolled back from). A
// device the current rollout does not admit yet still gets the newest
// release whose rollout is complete, if it is older than that.
//
// A check without a version is a device with nothing installed yet (a
// freshly imaged machine): it is older than every release, so it is
// offered what an out-of-date device would be (rollout.Decide, package
// doc "A device with nothing installed"), never refused as invalid.
//
// Checks are the hot path of a fleet, so the service caches per process:
// rollouts, releases, pins and the set of devices that ever rolled back
// for CacheTTL (the server uses one second, and clears them itself after
// every change it makes), and, in an index loaded once at start
// (LoadIndex, index.go), what a check needs of every registered device:
// its group, a hash of its last written state and when it was last seen.
// A device's first check in an hour therefore reads no device row. The
// index follows this process's writes and the admin API's change
// notifications (ForgetDevice) at once; the server applies changes made
// through other replicas from the cache change feed (internal/changefeed:
// Invalidate, ForgetDevice) within a second, and re-reads every group
// each minute (RefreshGroups) for group changes the feed does not carry
// (a device's own check naming a group). Last-seen times are kept to
// LastSeenPrecision and written in batches by Flush. A change made
// through another replica applies here within those times; a rollback or
// a halt reported here applies at once.
package updates

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// LastSeenPrecision is how fresh a device's last-seen time is kept: a
// device checking more often than this costs no write.
const LastSeenPrecision = time.Minute

// Reasons added to rollout's decision codes.
const (
	ReasonPinned          = "pinned"
	ReasonHeld            = "held"
	ReasonPinMissing      = "pinned-release-missing"
	ReasonNoRollout       = "no-rollout"
	ReasonPreviousRelease = "previous-release"
)

// Service answers device requests. It is safe for concurrent use.
//
// A check of a known device whose state did not change only records when
// it was last seen; those updates are queued and written in one
// transaction by Flush (the server calls it every 5 seconds and at shutdown),
// so checks do not queue behind each other for the database's write lock.
// New devices and changed ones are written at once.
type Service struct {
	Store    *db.Store
	Channels *channel.Set
	Now      func() time.Time
	Log      *zap.Logger
	// CacheTTL is how long rollout and release rows are reused between
	// checks (see ttlCache); 0 disables caching.
	CacheTTL time.Duration
	// OnRolloutChange, when set, is called after a rollout state change
	// this service made (the auto-halt in Report) has been committed, so
	// that the server can re-sign the rollout state it publishes. It must
	// not block for long: the report's answer waits for it.
	OnRolloutChange func()

	mu       sync.Mutex
	pending  map[string]db.Device
	rollouts ttlCache[[2]string, db.Rollout]
	lists    ttlCache[string, []db.Rollout]
	releases ttlCache[[3]string, db.Release]
	pins     ttlCache[struct{}, map[[2]string]db.Pin]
	rolled   ttlCache[struct{}, map[string]bool]
	// index holds what checks need of every registered device (index.go).
	index    deviceIndex
	initOnce sync.Once
}

func (s *Service) init() {
	s.initOnce.Do(func() {
		s.rollouts.ttl, s.lists.ttl, s.releases.ttl, s.pins.ttl, s.rolled.ttl = s.CacheTTL, s.CacheTTL, s.CacheTTL, s.CacheTTL, s.CacheTTL
	})
}

// Invalidate drops cached rollout and release rows; call it after changing
// them.
func (s *Service) Invalidate() {
	s.rollouts.clear()
	s.lists.clear()
	s.releases.clear()
	s.pins.clear()
	s.rolled.clear()
}

// rolledBack returns the releases a device rolled back from, skipping the
// query for devices that never rolled back (nearly all of them).
func (s *Service) rolledBack(ctx context.Context, id string) ([]string, error) {
	if s.CacheTTL > 0 {
		set, err := s.rolled.get(ctx, struct{}{}, s.now(), func(ctx context.Context) (map[string]bool, error) {
			ids, err := s.Store.DevicesWithRollbacks(ctx)
			if err != nil {
				return nil, err
			}
			m := make(map[string]bool, len(ids))
			for _, d := range ids {
				m[d] = true
			}
			return m, nil
		})
		if err != nil {
			return nil, err
		}
		if !set[id] {
			return nil, nil
		}
	}
	return s.Store.RolledBackFrom(ctx, id)
}

// pinsFor returns the device's and its group's pins. With caching on, the
// whole (small) pins table is read once per TTL instead of per check.
func (s *Service) pinsFor(ctx context.Context, deviceID, group string) (devPin, groupPin *db.Pin, err error) {
	if s.CacheTTL <= 0 {
		return s.Store.PinsFor(ctx, deviceID, group)
	}
	all, err := s.pins.get(ctx, struct{}{}, s.now(), func(ctx context.Context) (map[[2]string]db.Pin, error) {
		list, err := s.Store.ListPins(ctx)
		if err != nil {
			return nil, err
		}
		m := make(map[[2]string]db.Pin, len(list))
		for _, p := range list {
			m[[2]string{string(p.Scope), p.Target}] = p
		}
		return m, nil
	})
	if err != nil {
		return nil, nil, err
	}
	if p, ok := all[[2]string{string(db.PinDevice), deviceID}]; ok {
		devPin = &p
	}
	if group != "" {
		if p, ok := all[[2]string{string(db.PinGroup), group}]; ok {
			groupPin = &p
		}
	}
	return devPin, groupPin, nil
}

// Flush writes the queued last-seen times.
func (s *Service) Flush(ctx context.Context) error {
	s.mu.Lock()
	batch := s.pending
	s.pending = nil
	s.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	devs := make([]db.Device, 0, len(batch))
	for _, d := range batch {
		devs = append(devs, d)
	}
	// In key order, the B-tree descents of a batch share their pages.
	slices.SortFunc(devs, func(a, b db.Device) int { return strings.Compare(a.ID, b.ID) })
	if err := s.Store.UpsertDevices(ctx, devs); err != nil {
		return fmt.Errorf("recording last-seen times: %w", err)
	}
	return nil
}

func (s *Service) currentRollout(ctx context.Context, ch, arch string) (db.Rollout, error) {
	return s.rollouts.get(ctx, [2]string{ch, arch}, s.now(), func(ctx context.Context) (db.Rollout, error) { return s.Store.CurrentRollout(ctx, ch, arch) })
}

func (s *Service) getRelease(ctx context.Context, ch, arch, version string) (db.Release, error) {
	return s.releases.get(ctx, [3]string{ch, arch, version}, s.now(), func(ctx context.Context) (db.Release, error) { return s.Store.GetRelease(ctx, ch, arch, version) })
}

func (s *Service) listRollouts(ctx context.Context, ch string) ([]db.Rollout, error) {
	return s.lists.get(ctx, ch, s.now(), func(ctx context.Context) ([]db.Rollout, error) { return s.Store.ListRollouts(ctx, ch) })
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) log() *zap.Logger {
	if s.Log != nil {
		return s.Log
	}
	return zap.NewNop()
}

// Check records the device and decides its update.
func (s *Service) Check(ctx context.Context, req api.CheckRequest) (api.CheckResponse, error) {
	if err := req.Validate(); err != nil {
		return api.CheckResponse{}, err
	}
	ch, err := s.Channels.Get(req.Channel)
	if err != nil {
		return api.CheckResponse{}, api.Errorf(api.CodeUnknownChannel, "unknown channel %q", req.Channel)
	}
	if _, ok := ch.Ref(req.Arch); !ok {
		return api.CheckResponse{}, api.Errorf(api.CodeUnknownArch, "channel %s has no %s release", req.Channel, req.Arch)
	}
	if req.Version != "" {
		if _, err := rollout.ParseVersion(req.Version); err != nil {
			return api.CheckResponse{}, api.Errorf(api.CodeBadRequest, "version %q is not valid", req.Version)
		}
	}
	s.init()
	now := s.now()
	old, stored, known, err := s.lookupDevice(ctx, req.DeviceID)
	if err != nil {
		return api.CheckResponse{}, fmt.Errorf("check %s: %w", req.DeviceID, err)
	}
	group := req.Group
	if stored != "" {
		group = stored // admins own groups once set
	}
	// The group written is "" (keep the stored one) unless the device sets
	// its first: a queued write must never undo an admin's later change.
	dev := db.Device{ID: req.DeviceID, Arch: req.Arch, Channel: req.Channel, Group: group,
		BootedCommit: req.BootedCommit, Version: req.Version, LastSeen: now}
	if stored != "" {
		dev.Group = ""
	}
	rec := devRec{state: stateHash(req.Arch, req.Channel, req.BootedCommit, req.Version), seen: now.Unix()}
	unchanged := known && old.state == rec.state && stored == group
	switch {
	case unchanged && now.Sub(time.Unix(old.seen, 0)) < LastSeenPrecision:
		// nothing worth writing
	case unchanged:
		s.mu.Lock()
		if s.pending == nil {
			s.pending = map[string]db.Device{}
		}
		s.pending[dev.ID] = dev
		s.mu.Unlock()
		s.index.put(dev.ID, rec, "", true)
	default:
		if err := s.Store.UpsertDevice(ctx, dev); err != nil {
			return api.CheckResponse{}, fmt.Errorf("check %s: %w", req.DeviceID, err)
		}
		s.index.put(dev.ID, rec, group, false)
	}
	devPin, groupPin, err := s.pinsFor(ctx, req.DeviceID, group)
	if err != nil {
		return api.CheckResponse{}, fmt.Errorf("check %s: %w", req.DeviceID, err)
	}
	pin := devPin
	if pin == nil {
		pin = groupPin
	}
	chName := req.Channel
	if pin != nil && pin.Channel != "" {
		chName = pin.Channel
		if ch, err = s.Channels.Get(chName); err != nil {
			return api.CheckResponse{}, fmt.Errorf("check %s: pin names channel %q: %w", req.DeviceID, chName, err)
		}
	}
	if pin != nil && pin.Version != "" {
		return s.held(ctx, req, chName, pin.Version)
	}
	return s.rolloutAnswer(ctx, req, ch, now)
}

func (s *Service) target(r db.Release, rolloutID string) *api.Target {
	return &api.Target{Channel: r.Channel, Arch: r.Arch, Version: r.Version, Ref: r.Ref,
		Commit: r.Commit, OCIDigest: r.OCIDigest, RolloutID: rolloutID}
}

// newer reports whether version v is newer than the device's (unknown
// device versions are older than everything).
func newer(v, device string) bool {
	if device == "" {
		return true
	}
	c, err := rollout.Compare(v, device)
	return err == nil && c > 0
}

func (s *Service) held(ctx context.Context, req api.CheckRequest, chName, version string) (api.CheckResponse, error) {
	r, err := s.getRelease(ctx, chName, req.Arch, version)
	if errors.Is(err, db.ErrNotFound) {
		return api.CheckResponse{Reason: ReasonPinMissing}, nil
	}
	if err != nil {
		return api.CheckResponse{}, fmt.Errorf("check %s: %w", req.DeviceID, err)
	}
	if !newer(r.Version, req.Version) {
		return api.CheckResponse{Reason: ReasonHeld}, nil
	}
	return api.CheckResponse{Update: true, Target: s.target(r, ""), Reason: ReasonPinned}, nil
}

func (s *Service) rolloutAnswer(ctx context.Context, req api.CheckRequest, ch *channel.Channel, now time.Time) (api.CheckResponse, error) {
	ro, err := s.currentRollout(ctx, ch.Name, req.Arch)
	if errors.Is(err, db.ErrNotFound) {
		return api.CheckResponse{Reason: ReasonNoRollout}, nil
	}
	if err != nil {
		return api.CheckResponse{}, fmt.Errorf("check %s: %w", req.DeviceID, err)
	}
	ramp, err := rollout.ParseRamp(ro.Ramp)
	if err != nil {
		return api.CheckResponse{}, fmt.Errorf("check %s: rollout %s: %w", req.DeviceID, ro.ID, err)
	}
	// Releases the device rolled back from only ever remove offers, so
	// they are read only when there is an offer to check: most devices
	// are up to date, and this keeps their check to one query.
	resp, err := s.decide(ctx, req, ch, ro, ramp, now, nil)
	if err != nil || !resp.Update {
		return resp, err
	}
	bad, err := s.rolledBack(ctx, req.DeviceID)
	if err != nil {
		return api.CheckResponse{}, fmt.Errorf("check %s: %w", req.DeviceID, err)
	}
	if len(bad) == 0 {
		return resp, nil
	}
	return s.decide(ctx, req, ch, ro, ramp, now, bad)
}

func (s *Service) decide(ctx context.Context, req api.CheckRequest, ch *channel.Channel, ro db.Rollout, ramp rollout.Ramp, now time.Time, bad []string) (api.CheckResponse, error) {
	d := rollout.Decide(rollout.DecideInput{
		State: ro.State, Ramp: ramp, Start: ro.StartedAt, Now: now,
		Bucket:  rollout.Bucket(req.DeviceID, ro.ID),
		Current: req.Version, Target: ro.Version, RolledBackFrom: bad, Graph: ch.Graph(),
	})
	if d.Offer {
		r, err := s.getRelease(ctx, ch.Name, req.Arch, d.Target)
		if err != nil {
			return api.CheckResponse{}, fmt.Errorf("check %s: release %s: %w", req.DeviceID, d.Target, err)
		}
		id := ""
		if d.Target == ro.Version {
			id = ro.ID
		}
		return api.CheckResponse{Update: true, Target: s.target(r, id), Reason: string(d.Reason)}, nil
	}
	switch d.Reason {
	case rollout.ReasonNotYet, rollout.ReasonPaused, rollout.ReasonHalted:
		// Not admitted to the new release: still bring the device up to the
		// newest release that finished rolling out.
		prev, ok, err := s.previousComplete(ctx, ch.Name, req.Arch, ro.ID, bad)
		if err != nil {
			return api.CheckResponse{}, fmt.Errorf("check %s: %w", req.DeviceID, err)
		}
		if ok && newer(prev.Version, req.Version) {
			return api.CheckResponse{Update: true, Target: s.target(prev, ""), Reason: ReasonPreviousRelease}, nil
		}
	}
	return api.CheckResponse{Reason: string(d.Reason)}, nil
}

// previousComplete finds the newest release of a completed rollout other
// than the current one, skipping releases the device rolled back from.
func (s *Service) previousComplete(ctx context.Context, chName, arch, currentID string, bad []string) (db.Release, bool, error) {
	ros, err := s.listRollouts(ctx, chName)
	if err != nil {
		return db.Release{}, false, err
	}
	var best *db.Rollout
	for i := range ros {
		r := &ros[i]
		if r.ID == currentID || r.Arch != arch || r.State != rollout.StateComplete || contains(bad, r.Version) {
			continue
		}
		if best == nil || newer(r.Version, best.Version) {
			best = r
		}
	}
	if best == nil {
		return db.Release{}, false, nil
	}
	rel, err := s.getRelease(ctx, chName, arch, best.Version)
	if err != nil {
		return db.Release{}, false, err
	}
	return rel, true, nil
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// Report records a device event. Its sequence number must be above the
// device's last (db.ErrReplay otherwise). A release failure
// (api.Event.ReleaseFailure: health-failed, boot-failed, rolled-back)
// re-judges the rollout it names: when the failure rate over the channel's
// window passes the threshold (with enough reports), the rollout halts, in
// the same transaction as an audit entry that says why. Refusals, download
// and configuration errors are stored and never counted. The caller has
// checked that the credential belongs to req.DeviceID.
func (s *Service) Report(ctx context.Context, req api.ReportRequest) error {
	if err := req.Validate(); err != nil {
		return err
	}
	dev, err := s.Store.GetDevice(ctx, req.DeviceID)
	if errors.Is(err, db.ErrNotFound) {
		return api.Errorf(api.CodeNotFound, "unknown device %q: check for updates first", req.DeviceID)
	}
	if err != nil {
		return fmt.Errorf("report %s: %w", req.DeviceID, err)
	}
	now := s.now()
	at := req.At
	if at.IsZero() || at.After(now) {
		at = now // device clocks are not trusted to order reports
	}
	var ro db.Rollout
	if req.RolloutID != "" {
		if ro, err = s.Store.GetRollout(ctx, req.RolloutID); errors.Is(err, db.ErrNotFound) {
			return api.Errorf(api.CodeNotFound, "unknown rollout %q", req.RolloutID)
		} else if err != nil {
			return fmt.Errorf("report %s: %w", req.DeviceID, err)
		}
	}
	if req.Event.ReleaseFailure() {
		defer s.rolled.clear() // after the commit: never re-offer what this device left
	}
	halted := false
	defer func() {
		if halted {
			s.Invalidate() // after the commit, so no check caches the old state
			if s.OnRolloutChange != nil {
				s.OnRolloutChange()
			}
		}
	}()
	return s.Store.Tx(ctx, func(tx *db.Tx) error {
		if err := tx.AddReport(ctx, db.Report{DeviceID: dev.ID, RolloutID: req.RolloutID, Version: req.Version,
			Event: req.Event, Error: req.Error, At: at, Seq: req.Seq}); err != nil {
			return fmt.Errorf("report %s: %w", req.DeviceID, err)
		}
		if req.RolloutID == "" || ro.State != rollout.StateActive || !req.Event.ReleaseFailure() {
			return nil // refusals, download and config errors never halt a rollout
		}
		ch, err := s.Channels.Get(ro.Channel)
		if err != nil {
			return nil // the channel was removed from the definitions
		}
		policy := ch.HaltPolicy()
		stats, err := tx.RolloutStats(ctx, ro.ID, now.Add(-policy.Window))
		if err != nil {
			return fmt.Errorf("report %s: %w", req.DeviceID, err)
		}
		halt, why := rollout.AutoHalt(stats, policy)
		if !halt {
			return nil
		}
		if err := tx.SetRolloutState(ctx, ro.ID, rollout.StateActive, rollout.StateHalted, why, now); err != nil {
			if errors.Is(err, db.ErrConflict) {
				return nil // someone else changed it first
			}
			return fmt.Errorf("auto-halt %s: %w", ro.ID, err)
		}
		detail := fmt.Sprintf(`{"rollout":%q,"channel":%q,"arch":%q,"version":%q,"successes":%d,"failures":%d,"reason":%q}`,
			ro.ID, ro.Channel, ro.Arch, ro.Version, stats.Successes, stats.Failures, why)
		if _, err := tx.AppendAudit(ctx, db.Entry{Actor: "server:auto-halt", Action: "rollout.halt",
			Subject: ro.Channel + "/" + ro.Arch + "/" + ro.Version, Detail: detail, At: now}); err != nil {
			return fmt.Errorf("auto-halt %s: %w", ro.ID, err)
		}
		halted = true
		s.log().Warn("rollout halted", zap.String("rollout", ro.ID), zap.String("channel", ro.Channel),
			zap.String("version", ro.Version), zap.String("reason", why))
		return nil
	})
}
