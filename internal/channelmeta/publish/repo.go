package publish

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/storage"
)

// Options are the lifetimes of the signed roles and the repository's
// housekeeping. Zero fields take the defaults below.
type Options struct {
	RootExpiry      time.Duration // default 365 days (offline root keys)
	TargetsExpiry   time.Duration // default 90 days (offline release keys)
	RolloutsExpiry  time.Duration // default 7 days (online key)
	SnapshotExpiry  time.Duration // default 7 days (online key)
	TimestampExpiry time.Duration // default 1 day (online key)
	// KeepVersions is how many versioned snapshot, targets and rollouts
	// files are kept (N.snapshot.json, …); older ones are pruned. Roots are
	// never pruned: devices walk the whole rotation chain. Default 16.
	KeepVersions int
}

// DefaultOptions returns the default lifetimes.
func DefaultOptions() Options { return Options{}.withDefaults() }

func (o Options) withDefaults() Options {
	const day = 24 * time.Hour
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.RootExpiry, 365*day)
	def(&o.TargetsExpiry, 90*day)
	def(&o.RolloutsExpiry, 7*day)
	def(&o.SnapshotExpiry, 7*day)
	def(&o.TimestampExpiry, day)
	if o.KeepVersions <= 0 {
		o.KeepVersions = 16
	}
	return o
}

func versioned(v int64, name string) string { return strconv.FormatInt(v, 10) + "." + name }

// Init creates a repository in dir (created if missing): root version 1
// signed by rootSigners, and targets version 1 (no releases yet, the
// rollouts delegation to the online keys) signed by releaseSigners. It runs
// where the offline keys are; the server then calls Refresh with the online
// key to add rollouts, snapshot and timestamp. It refuses (ErrExists) to
// touch a directory that already has a root.json.
func Init(dir string, keys Keys, rootSigners, releaseSigners []signature.Signer, opts Options, now time.Time) error {
	opts = opts.withDefaults()
	if err := keys.validate(); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	switch _, err := os.Lstat(filepath.Join(dir, channelmeta.RootFile)); {
	case err == nil:
		return fmt.Errorf("init %s: %w", dir, ErrExists)
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("init: %w", err)
	}
	root, err := buildRoot(keys, 1, normTime(now.Add(opts.RootExpiry)))
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if err := signAll(root, rootSigners); err != nil {
		return fmt.Errorf("init: root: %w", err)
	}
	if err := root.VerifyDelegate(metadata.ROOT, root); err != nil {
		return fmt.Errorf("init: root signers do not meet the root threshold: %w: %w", channelmeta.ErrBadSignature, err)
	}
	rootBytes, err := root.ToBytes(false)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	targetsBytes, err := BuildTargets(rootBytes, nil, nil, releaseSigners, opts, now)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if err := storage.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{versioned(1, channelmeta.RootFile), rootBytes},
		{versioned(1, channelmeta.TargetsFile), targetsBytes},
		{channelmeta.TargetsFile, targetsBytes},
		{channelmeta.RootFile, rootBytes}, // last: its presence marks an initialised repo
	} {
		if err := writeAtomic(dir, f.name, f.data); err != nil {
			return fmt.Errorf("init: %w", err)
		}
	}
	return nil
}

// buildRoot assembles (unsigned) root metadata for keys.
func buildRoot(keys Keys, version int64, expires time.Time) (*metadata.Metadata[metadata.RootType], error) {
	md := metadata.Root(expires)
	md.Signed.Version = version
	// Consistent snapshots let a CDN or mirror copy files in any order:
	// a device only follows versioned names from the timestamp it read.
	md.Signed.ConsistentSnapshot = true
	for _, r := range []struct {
		role string
		rk   RoleKeys
	}{
		{metadata.ROOT, keys.Root},
		{metadata.TARGETS, keys.Release},
		{metadata.SNAPSHOT, keys.Online},
		{metadata.TIMESTAMP, keys.Online},
	} {
		tk, err := tufKeys(r.rk)
		if err != nil {
			return nil, err
		}
		for _, k := range tk {
			if err := md.Signed.AddKey(k, r.role); err != nil {
				return nil, fmt.Errorf("root: %w", err)
			}
		}
		md.Signed.Roles[r.role].Threshold = r.rk.Threshold
	}
	return md, nil
}

// parseRoot parses root metadata and checks it is signed by itself.
func parseRoot(data []byte) (*metadata.Metadata[metadata.RootType], error) {
	if err := channelmeta.CheckFile(metadata.ROOT, data); err != nil {
		return nil, err
	}
	md, err := metadata.Root().FromBytes(data)
	if err != nil {
		return nil, wrapKind("root", err)
	}
	if err := md.VerifyDelegate(metadata.ROOT, md); err != nil {
		return nil, wrapKind("root", err)
	}
	return md, nil
}

func parseTargets(data []byte) (*metadata.Metadata[metadata.TargetsType], error) {
	if len(data) > channelmeta.DefaultTargetsMax {
		return nil, fmt.Errorf("targets: %w: %d bytes, at most %d", channelmeta.ErrTooLarge, len(data), channelmeta.DefaultTargetsMax)
	}
	if err := channelmeta.CheckFile(metadata.TARGETS, data); err != nil {
		return nil, err
	}
	md, err := metadata.Targets().FromBytes(data)
	if err != nil {
		return nil, wrapKind("targets", err)
	}
	return md, nil
}

// BuildTargets builds and signs targets metadata listing exactly releases
// (the whole set, not a delta) and delegating rollouts/*/* to the online
// keys named in root. Its version is one more than current's (nil current:
// version 1). It is pure: mxosctl runs it on the release team's machine
// with root.json and targets.json as served, and uploads the result, which
// the server checks with AcceptTargets. Pass a root you trust (one that
// verifies from the shipped keys): the delegation keys are taken from it.
// A release with a zero PublishedAt gets now.
func BuildTargets(root, current []byte, releases []channelmeta.Release, signers []signature.Signer, opts Options, now time.Time) ([]byte, error) {
	opts = opts.withDefaults()
	rootMD, err := parseRoot(root)
	if err != nil {
		return nil, fmt.Errorf("build targets: %w", err)
	}
	version := int64(1)
	if current != nil {
		cur, err := parseTargets(current)
		if err != nil {
			return nil, fmt.Errorf("build targets: current: %w", err)
		}
		version = cur.Signed.Version + 1
	}
	md := metadata.Targets(normTime(now.Add(opts.TargetsExpiry)))
	md.Signed.Version = version
	for _, rel := range releases {
		if rel.PublishedAt.IsZero() {
			rel.PublishedAt = now
		}
		tf, err := releaseTarget(rel)
		if err != nil {
			return nil, fmt.Errorf("build targets: %w", err)
		}
		if _, dup := md.Signed.Targets[tf.Path]; dup {
			return nil, fmt.Errorf("build targets: %w: release %s listed twice", ErrInvalid, tf.Path)
		}
		md.Signed.Targets[tf.Path] = tf
	}
	if md.Signed.Delegations, err = onlineDelegation(rootMD); err != nil {
		return nil, fmt.Errorf("build targets: %w", err)
	}
	if err := signAll(md, signers); err != nil {
		return nil, fmt.Errorf("build targets: %w", err)
	}
	if err := rootMD.VerifyDelegate(metadata.TARGETS, md); err != nil {
		return nil, fmt.Errorf("build targets: signers do not meet root's release-key threshold: %w: %w", channelmeta.ErrBadSignature, err)
	}
	data, err := md.ToBytes(false)
	if err != nil {
		return nil, fmt.Errorf("build targets: %w", err)
	}
	if len(data) > channelmeta.DefaultTargetsMax {
		return nil, fmt.Errorf("build targets: %w: %d bytes, at most %d; drop old releases", channelmeta.ErrTooLarge, len(data), channelmeta.DefaultTargetsMax)
	}
	return data, nil
}

// RotateRoot builds root version N+1 for keys, signed by signers, from the
// current root N. Devices accept it only if it carries a threshold of the
// old root keys and of the new ones, and RotateRoot checks both before
// returning (ErrBadSignature), so pass the old and the new root signers.
func RotateRoot(current []byte, keys Keys, signers []signature.Signer, opts Options, now time.Time) ([]byte, error) {
	opts = opts.withDefaults()
	if err := keys.validate(); err != nil {
		return nil, fmt.Errorf("rotate root: %w", err)
	}
	cur, err := parseRoot(current)
	if err != nil {
		return nil, fmt.Errorf("rotate root: current: %w", err)
	}
	next, err := buildRoot(keys, cur.Signed.Version+1, normTime(now.Add(opts.RootExpiry)))
	if err != nil {
		return nil, fmt.Errorf("rotate root: %w", err)
	}
	if err := signAll(next, signers); err != nil {
		return nil, fmt.Errorf("rotate root: %w", err)
	}
	if err := cur.VerifyDelegate(metadata.ROOT, next); err != nil {
		return nil, fmt.Errorf("rotate root: not signed by a threshold of the current root keys: %w: %w", channelmeta.ErrBadSignature, err)
	}
	if err := next.VerifyDelegate(metadata.ROOT, next); err != nil {
		return nil, fmt.Errorf("rotate root: not signed by a threshold of the new root keys: %w: %w", channelmeta.ErrBadSignature, err)
	}
	return next.ToBytes(false)
}

// Repo is the server's view of a metadata directory (DATA/metadata/,
// served statically at /metadata/). Its methods serialise on a mutex; run
// one writer per directory.
type Repo struct {
	// Dir is the metadata directory.
	Dir string

	opts   Options
	online []signature.Signer
	mu     sync.Mutex
}

// Open opens an initialised repository. online are the server's online
// signers; they may be nil for read-only use (Releases, Rollouts), and
// otherwise must be a threshold of root's timestamp and snapshot keys.
func Open(dir string, online []signature.Signer, opts Options) (*Repo, error) {
	r := &Repo{Dir: dir, opts: opts.withDefaults(), online: online}
	data, err := r.read(channelmeta.RootFile, channelmeta.DefaultRootMax)
	if err != nil {
		return nil, fmt.Errorf("open channel metadata: %w", err)
	}
	root, err := parseRoot(data)
	if err != nil {
		return nil, fmt.Errorf("open channel metadata: %w", err)
	}
	if len(online) > 0 {
		if err := checkOnlineSigners(root, online); err != nil {
			return nil, fmt.Errorf("open channel metadata: %w", err)
		}
	}
	return r, nil
}

// checkOnlineSigners checks that signers meet root's timestamp and
// snapshot thresholds, before anything is signed or written.
func checkOnlineSigners(root *metadata.Metadata[metadata.RootType], signers []signature.Signer) error {
	ids, err := signerIDs(signers)
	if err != nil {
		return err
	}
	for _, role := range []string{metadata.TIMESTAMP, metadata.SNAPSHOT} {
		want, threshold := channelmeta.RoleKeyIDs(root, role)
		n := 0
		for _, id := range ids {
			if slices.Contains(want, id) {
				n++
			}
		}
		if n < threshold || threshold < 1 {
			return invalidf("online signers: %d of root's %s keys, threshold %d", n, role, threshold)
		}
	}
	return nil
}

// repoState is the current signed metadata on disk, with the exact bytes
// (snapshot and timestamp pin lengths and hashes of bytes, not structs).
type repoState struct {
	rootRaw     []byte
	root        *metadata.Metadata[metadata.RootType]
	targetsRaw  []byte
	targets     *metadata.Metadata[metadata.TargetsType]
	rolloutsRaw []byte // nil until the first Refresh or PublishRollouts
	rollouts    *metadata.Metadata[metadata.TargetsType]
	snapshotRaw []byte
	snapshot    *metadata.Metadata[metadata.SnapshotType]
	timestamp   *metadata.Metadata[metadata.TimestampType]
}

func (r *Repo) load() (*repoState, error) {
	st := &repoState{}
	var err error
	if st.rootRaw, err = r.read(channelmeta.RootFile, channelmeta.DefaultRootMax); err != nil {
		return nil, err
	}
	if st.root, err = parseRoot(st.rootRaw); err != nil {
		return nil, err
	}
	if st.targetsRaw, err = r.read(channelmeta.TargetsFile, channelmeta.DefaultTargetsMax); err != nil {
		return nil, err
	}
	if st.targets, err = parseTargets(st.targetsRaw); err != nil {
		return nil, err
	}
	if st.rolloutsRaw, err = r.readOptional(channelmeta.RolloutsFile, channelmeta.DefaultTargetsMax); err != nil {
		return nil, err
	}
	if st.rolloutsRaw != nil {
		if err := channelmeta.CheckFile(channelmeta.RolloutsRole, st.rolloutsRaw); err != nil {
			return nil, err
		}
		if st.rollouts, err = metadata.Targets().FromBytes(st.rolloutsRaw); err != nil {
			return nil, wrapKind(channelmeta.RolloutsFile, err)
		}
	}
	if st.snapshotRaw, err = r.readOptional(channelmeta.SnapshotFile, channelmeta.DefaultSnapshotMax); err != nil {
		return nil, err
	}
	if st.snapshotRaw != nil {
		if err := channelmeta.CheckFile(metadata.SNAPSHOT, st.snapshotRaw); err != nil {
			return nil, err
		}
		if st.snapshot, err = metadata.Snapshot().FromBytes(st.snapshotRaw); err != nil {
			return nil, wrapKind(channelmeta.SnapshotFile, err)
		}
	}
	tsRaw, err := r.readOptional(channelmeta.TimestampFile, channelmeta.DefaultTimestampMax)
	if err != nil {
		return nil, err
	}
	if tsRaw != nil {
		if err := channelmeta.CheckFile(metadata.TIMESTAMP, tsRaw); err != nil {
			return nil, err
		}
		if st.timestamp, err = metadata.Timestamp().FromBytes(tsRaw); err != nil {
			return nil, wrapKind(channelmeta.TimestampFile, err)
		}
	}
	return st, nil
}

// Releases returns the releases in the current targets, sorted by path,
// e.g. for mxosctl to append a new one before PublishTargets.
func (r *Repo) Releases() ([]channelmeta.Release, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	return releasesOf(st.targets)
}

// Rollouts returns the rollout states in the current rollouts role.
func (r *Repo) Rollouts() ([]channelmeta.RolloutState, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.load()
	if err != nil {
		return nil, err
	}
	if st.rollouts == nil {
		return nil, nil
	}
	var out []channelmeta.RolloutState
	for _, p := range slices.Sorted(maps.Keys(st.rollouts.Signed.Targets)) {
		s, err := channelmeta.ParseRollout(p, st.rollouts.Signed.Targets[p])
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func releasesOf(targets *metadata.Metadata[metadata.TargetsType]) ([]channelmeta.Release, error) {
	var out []channelmeta.Release
	for _, p := range slices.Sorted(maps.Keys(targets.Signed.Targets)) {
		rel, err := channelmeta.ParseRelease(p, targets.Signed.Targets[p])
		if err != nil {
			return nil, err
		}
		out = append(out, rel)
	}
	return out, nil
}

// PublishTargets builds targets listing releases, signs them with
// releaseSigners and accepts them: the local form of BuildTargets +
// AcceptTargets, for a server that holds the release key itself (tests,
// single-machine setups).
func (r *Repo) PublishTargets(releases []channelmeta.Release, releaseSigners []signature.Signer, now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.load()
	if err != nil {
		return err
	}
	data, err := BuildTargets(st.rootRaw, st.targetsRaw, releases, releaseSigners, r.opts, now)
	if err != nil {
		return err
	}
	return r.acceptTargets(st, data, now)
}

// AcceptTargets verifies release-signed targets bytes (from BuildTargets,
// uploaded by mxosctl) against the current root and stores them exactly as
// given, then re-signs snapshot and timestamp. It refuses: signatures not
// meeting the release threshold (ErrBadSignature), a version not above the
// current one (ErrRollback), expired metadata (ErrExpired), targets other
// than valid release records, and any delegation but rollouts/*/* to
// root's online keys (ErrMalformed).
func (r *Repo) AcceptTargets(data []byte, now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.load()
	if err != nil {
		return err
	}
	return r.acceptTargets(st, data, now)
}

func (r *Repo) acceptTargets(st *repoState, data []byte, now time.Time) error {
	if len(r.online) == 0 {
		return fmt.Errorf("accept targets: %w", ErrNoOnlineKey)
	}
	md, err := parseTargets(data)
	if err != nil {
		return fmt.Errorf("accept targets: %w", err)
	}
	if err := verifyTargets(md, st.root, now); err != nil {
		return fmt.Errorf("accept targets: %w", err)
	}
	if md.Signed.Version <= st.targets.Signed.Version {
		return fmt.Errorf("accept targets: %w: version %d, current is %d", channelmeta.ErrRollback, md.Signed.Version, st.targets.Signed.Version)
	}
	if err := r.writeRole(channelmeta.TargetsFile, md.Signed.Version, data); err != nil {
		return err
	}
	st.targets, st.targetsRaw = md, data
	_, err = r.converge(st, now)
	return err
}

// verifyTargets is the server's full check of targets against root.
func verifyTargets(md *metadata.Metadata[metadata.TargetsType], root *metadata.Metadata[metadata.RootType], now time.Time) error {
	if err := root.VerifyDelegate(metadata.TARGETS, md); err != nil {
		return wrapKind("targets", err)
	}
	if md.Signed.IsExpired(now) {
		return fmt.Errorf("targets: %w: expired %s", channelmeta.ErrExpired, md.Signed.Expires.Format(time.RFC3339))
	}
	if err := checkDelegation(md, root); err != nil {
		return fmt.Errorf("targets: %w", err)
	}
	if _, err := releasesOf(md); err != nil {
		return fmt.Errorf("targets: %w", err)
	}
	return nil
}

// PublishRollouts replaces the rollout states with states (at most one per
// channel and arch), signed by the online key. Every rollout must target a
// release in the current targets (ErrNotSigned otherwise): the online key
// only gates release-signed versions, and a rollout of anything else is a
// mistake worth refusing early (devices would refuse it anyway).
func (r *Repo) PublishRollouts(states []channelmeta.RolloutState, now time.Time) error {
	_, err := r.publishRollouts(states, now, false)
	return err
}

// PublishRolloutsIfChanged is PublishRollouts that signs a new rollouts
// version only when states differ from the signed ones (otherwise it only
// renews what is due, as Refresh). It reports whether it signed states.
// Replicas sharing one repository call it periodically: the renewal then
// happens once, not once per replica.
func (r *Repo) PublishRolloutsIfChanged(states []channelmeta.RolloutState, now time.Time) (bool, error) {
	return r.publishRollouts(states, now, true)
}

func (r *Repo) publishRollouts(states []channelmeta.RolloutState, now time.Time, onlyChanged bool) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.online) == 0 {
		return false, fmt.Errorf("publish rollouts: %w", ErrNoOnlineKey)
	}
	st, err := r.load()
	if err != nil {
		return false, err
	}
	releases, err := releasesOf(st.targets)
	if err != nil {
		return false, fmt.Errorf("publish rollouts: %w", err)
	}
	targets := map[string]*metadata.TargetFiles{}
	for _, s := range states {
		tf, err := rolloutTarget(s)
		if err != nil {
			return false, fmt.Errorf("publish rollouts: %w", err)
		}
		if _, dup := targets[tf.Path]; dup {
			return false, fmt.Errorf("publish rollouts: %w: two rollouts for %s/%s", ErrInvalid, s.Channel, s.Arch)
		}
		if !slices.ContainsFunc(releases, func(rel channelmeta.Release) bool {
			return rel.Channel == s.Channel && rel.Arch == s.Arch && rel.Version == s.Version
		}) {
			return false, fmt.Errorf("publish rollouts: %s version %s: %w", tf.Path, s.Version, channelmeta.ErrNotSigned)
		}
		targets[tf.Path] = tf
	}
	if onlyChanged && st.rollouts != nil && sameTargets(st.rollouts.Signed.Targets, targets) {
		_, err = r.converge(st, now)
		return false, err
	}
	version := int64(1)
	if st.rollouts != nil {
		version = st.rollouts.Signed.Version + 1
	}
	if err := r.signRollouts(st, targets, version, now); err != nil {
		return false, err
	}
	_, err = r.converge(st, now)
	return true, err
}

// sameTargets reports whether two target maps list the same paths with
// the same lengths and hashes (a record's hash is over its canonical
// JSON, so equal hashes are equal records).
func sameTargets(a, b map[string]*metadata.TargetFiles) bool {
	if len(a) != len(b) {
		return false
	}
	for p, x := range a {
		y, ok := b[p]
		if !ok || x == nil || y == nil || x.Length != y.Length || !x.Hashes.Equal(y.Hashes) {
			return false
		}
	}
	return true
}

// RefreshResult says what Refresh re-signed and when the offline roles
// expire (the server should warn well before: only the release team and
// the root key holders can renew them).
type RefreshResult struct {
	Resigned         []string // roles re-signed, e.g. ["snapshot", "timestamp"]
	TimestampExpires time.Time
	TargetsExpires   time.Time
	RootExpires      time.Time
}

// Refresh re-signs, with new versions, every online role that is missing,
// no longer matches what it pins, no longer verifies under root (online key
// rotated), or has less than half its lifetime left. The server calls it
// periodically (e.g. hourly) so that devices never see expired metadata
// while the server is alive, and a frozen mirror is detected within a day.
func (r *Repo) Refresh(now time.Time) (RefreshResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.online) == 0 {
		return RefreshResult{}, fmt.Errorf("refresh: %w", ErrNoOnlineKey)
	}
	st, err := r.load()
	if err != nil {
		return RefreshResult{}, err
	}
	resigned, err := r.converge(st, now)
	if err != nil {
		return RefreshResult{}, err
	}
	return RefreshResult{
		Resigned:         resigned,
		TimestampExpires: st.timestamp.Signed.Expires,
		TargetsExpires:   st.targets.Signed.Expires,
		RootExpires:      st.root.Signed.Expires,
	}, nil
}

// renewDue reports whether a role with this expiry should be re-signed.
func renewDue(expires, now time.Time, lifetime time.Duration) bool {
	return expires.Sub(now) < lifetime/2
}

func metaFor(raw []byte, version int64) *metadata.MetaFiles {
	sum := sha256.Sum256(raw)
	return &metadata.MetaFiles{Version: version, Length: int64(len(raw)), Hashes: metadata.Hashes{"sha256": sum[:]}}
}

func sameMeta(a, b map[string]*metadata.MetaFiles) bool {
	if len(a) != len(b) {
		return false
	}
	for name, x := range a {
		y, ok := b[name]
		if !ok || x == nil || y == nil || x.Version != y.Version || x.Length != y.Length || !x.Hashes.Equal(y.Hashes) {
			return false
		}
	}
	return true
}

// converge brings rollouts, snapshot and timestamp up to date with the
// current targets and root, in that order, so the timestamp (the file
// devices poll) is written last and only ever names complete files.
func (r *Repo) converge(st *repoState, now time.Time) ([]string, error) {
	if len(r.online) == 0 {
		return nil, ErrNoOnlineKey
	}
	var resigned []string
	o := r.opts

	if st.rollouts == nil || renewDue(st.rollouts.Signed.Expires, now, o.RolloutsExpiry) ||
		st.targets.VerifyDelegate(channelmeta.RolloutsRole, st.rollouts) != nil {
		targets := map[string]*metadata.TargetFiles{}
		version := int64(1)
		if st.rollouts != nil {
			targets = st.rollouts.Signed.Targets
			version = st.rollouts.Signed.Version + 1
		}
		if err := r.signRollouts(st, targets, version, now); err != nil {
			return nil, err
		}
		resigned = append(resigned, channelmeta.RolloutsRole)
	}

	wantSnap := map[string]*metadata.MetaFiles{
		channelmeta.TargetsFile:  metaFor(st.targetsRaw, st.targets.Signed.Version),
		channelmeta.RolloutsFile: metaFor(st.rolloutsRaw, st.rollouts.Signed.Version),
	}
	if st.snapshot == nil || !sameMeta(st.snapshot.Signed.Meta, wantSnap) ||
		renewDue(st.snapshot.Signed.Expires, now, o.SnapshotExpiry) ||
		st.root.VerifyDelegate(metadata.SNAPSHOT, st.snapshot) != nil {
		md := metadata.Snapshot(normTime(now.Add(o.SnapshotExpiry)))
		md.Signed.Version = 1
		if st.snapshot != nil {
			md.Signed.Version = st.snapshot.Signed.Version + 1
		}
		md.Signed.Meta = wantSnap
		raw, err := r.signOnline(md, st.root, metadata.SNAPSHOT)
		if err != nil {
			return nil, err
		}
		if err := r.writeRole(channelmeta.SnapshotFile, md.Signed.Version, raw); err != nil {
			return nil, err
		}
		st.snapshot, st.snapshotRaw = md, raw
		resigned = append(resigned, metadata.SNAPSHOT)
	}

	wantTS := map[string]*metadata.MetaFiles{channelmeta.SnapshotFile: metaFor(st.snapshotRaw, st.snapshot.Signed.Version)}
	if st.timestamp == nil || !sameMeta(st.timestamp.Signed.Meta, wantTS) ||
		renewDue(st.timestamp.Signed.Expires, now, o.TimestampExpiry) ||
		st.root.VerifyDelegate(metadata.TIMESTAMP, st.timestamp) != nil {
		md := metadata.Timestamp(normTime(now.Add(o.TimestampExpiry)))
		md.Signed.Version = 1
		if st.timestamp != nil {
			md.Signed.Version = st.timestamp.Signed.Version + 1
		}
		md.Signed.Meta = wantTS
		raw, err := r.signOnline(md, st.root, metadata.TIMESTAMP)
		if err != nil {
			return nil, err
		}
		if err := writeAtomic(r.Dir, channelmeta.TimestampFile, raw); err != nil {
			return nil, err
		}
		st.timestamp = md
		resigned = append(resigned, metadata.TIMESTAMP)
	}
	if len(resigned) > 0 {
		r.prune(st)
	}
	return resigned, nil
}

// signOnline signs md with the online key and checks the result against
// root's role before anything is written.
func (r *Repo) signOnline(md interface {
	Sign(signature.Signer) (*metadata.Signature, error)
	ToBytes(bool) ([]byte, error)
}, root *metadata.Metadata[metadata.RootType], role string) ([]byte, error) {
	for _, s := range r.online {
		if _, err := md.Sign(s); err != nil {
			return nil, fmt.Errorf("sign %s: %w", role, err)
		}
	}
	if err := root.VerifyDelegate(role, md); err != nil {
		return nil, fmt.Errorf("sign %s: online signers do not meet root's threshold: %w: %w", role, channelmeta.ErrBadSignature, err)
	}
	return md.ToBytes(false)
}

// signRollouts signs and writes the rollouts role with the online key,
// checked against the targets delegation.
func (r *Repo) signRollouts(st *repoState, targets map[string]*metadata.TargetFiles, version int64, now time.Time) error {
	md := metadata.Targets(normTime(now.Add(r.opts.RolloutsExpiry)))
	md.Signed.Version = version
	md.Signed.Targets = targets
	if err := signAll(md, r.online); err != nil {
		return fmt.Errorf("sign rollouts: %w", err)
	}
	if err := st.targets.VerifyDelegate(channelmeta.RolloutsRole, md); err != nil {
		return fmt.Errorf("sign rollouts: online signers do not meet the rollouts delegation: %w: %w", channelmeta.ErrBadSignature, err)
	}
	raw, err := md.ToBytes(false)
	if err != nil {
		return fmt.Errorf("sign rollouts: %w", err)
	}
	if len(raw) > channelmeta.DefaultTargetsMax {
		return fmt.Errorf("sign rollouts: %w: %d bytes", channelmeta.ErrTooLarge, len(raw))
	}
	if err := r.writeRole(channelmeta.RolloutsFile, version, raw); err != nil {
		return err
	}
	st.rollouts, st.rolloutsRaw = md, raw
	return nil
}

// AcceptRoot installs root version N+1 (from RotateRoot), after checking
// what devices will check: signed by a threshold of the current and of the
// new root keys, version exactly N+1, not expired. If the rotation changes
// the release or online keys, the current targets no longer verify (or no
// longer delegate to the right online key): then targets re-signed for the
// new root must come with it, or AcceptRoot refuses with ErrNeedTargets.
// The Repo's online signers must belong to the new root.
func (r *Repo) AcceptRoot(rootData, targetsData []byte, now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.load()
	if err != nil {
		return err
	}
	return r.acceptRoot(st, rootData, targetsData, now)
}

func (r *Repo) acceptRoot(st *repoState, rootData, targetsData []byte, now time.Time) error {
	if len(r.online) == 0 {
		return fmt.Errorf("accept root: %w", ErrNoOnlineKey)
	}
	if len(rootData) > channelmeta.DefaultRootMax {
		return fmt.Errorf("accept root: %w: %d bytes", channelmeta.ErrTooLarge, len(rootData))
	}
	if err := channelmeta.CheckFile(metadata.ROOT, rootData); err != nil {
		return fmt.Errorf("accept root: %w", err)
	}
	next, err := metadata.Root().FromBytes(rootData)
	if err != nil {
		return fmt.Errorf("accept root: %w", wrapKind("root", err))
	}
	if err := st.root.VerifyDelegate(metadata.ROOT, next); err != nil {
		return fmt.Errorf("accept root: not signed by the current root keys: %w", wrapKind("root", err))
	}
	if err := next.VerifyDelegate(metadata.ROOT, next); err != nil {
		return fmt.Errorf("accept root: not signed by the new root keys: %w", wrapKind("root", err))
	}
	if next.Signed.Version != st.root.Signed.Version+1 {
		return fmt.Errorf("accept root: %w: version %d, want %d", channelmeta.ErrRollback, next.Signed.Version, st.root.Signed.Version+1)
	}
	if next.Signed.IsExpired(now) {
		return fmt.Errorf("accept root: %w", channelmeta.ErrExpired)
	}
	if err := checkOnlineSigners(next, r.online); err != nil {
		return fmt.Errorf("accept root: %w", err)
	}
	var newTargets *metadata.Metadata[metadata.TargetsType]
	if targetsData != nil {
		if newTargets, err = parseTargets(targetsData); err != nil {
			return fmt.Errorf("accept root: %w", err)
		}
		if err := verifyTargets(newTargets, next, now); err != nil {
			return fmt.Errorf("accept root: %w", err)
		}
		if newTargets.Signed.Version <= st.targets.Signed.Version {
			return fmt.Errorf("accept root: targets %w: version %d, current is %d", channelmeta.ErrRollback, newTargets.Signed.Version, st.targets.Signed.Version)
		}
	} else if err := verifyTargets(st.targets, next, now); err != nil {
		return fmt.Errorf("accept root: %w: %w", ErrNeedTargets, err)
	}
	if err := writeAtomic(r.Dir, versioned(next.Signed.Version, channelmeta.RootFile), rootData); err != nil {
		return err
	}
	if err := writeAtomic(r.Dir, channelmeta.RootFile, rootData); err != nil {
		return err
	}
	st.root, st.rootRaw = next, rootData
	if newTargets != nil {
		if err := r.writeRole(channelmeta.TargetsFile, newTargets.Signed.Version, targetsData); err != nil {
			return err
		}
		st.targets, st.targetsRaw = newTargets, targetsData
	}
	_, err = r.converge(st, now)
	return err
}

// RotateRoot is the local form of RotateRoot + AcceptRoot: it rotates to
// keys, signing root with rootSigners (old and new root keys), and if the
// release or online keys change re-signs the current releases with
// releaseSigners (which must then be the new release keys).
func (r *Repo) RotateRoot(keys Keys, rootSigners, releaseSigners []signature.Signer, now time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.load()
	if err != nil {
		return err
	}
	rootData, err := RotateRoot(st.rootRaw, keys, rootSigners, r.opts, now)
	if err != nil {
		return err
	}
	next, err := metadata.Root().FromBytes(rootData)
	if err != nil {
		return fmt.Errorf("rotate root: %w", err)
	}
	var targetsData []byte
	if verifyTargets(st.targets, next, now) != nil {
		if len(releaseSigners) == 0 {
			return fmt.Errorf("rotate root: %w (no release signers given)", ErrNeedTargets)
		}
		releases, err := releasesOf(st.targets)
		if err != nil {
			return fmt.Errorf("rotate root: %w", err)
		}
		if targetsData, err = BuildTargets(rootData, st.targetsRaw, releases, releaseSigners, r.opts, now); err != nil {
			return fmt.Errorf("rotate root: %w", err)
		}
	}
	return r.acceptRoot(st, rootData, targetsData, now)
}

// writeRole writes N.<name> and then <name>.
func (r *Repo) writeRole(name string, version int64, data []byte) error {
	if err := writeAtomic(r.Dir, versioned(version, name), data); err != nil {
		return err
	}
	return writeAtomic(r.Dir, name, data)
}

var versionedRE = regexp.MustCompile(`^([0-9]{1,18})\.(snapshot|targets|rollouts)\.json$`)

// prune removes versioned snapshot/targets/rollouts files more than
// KeepVersions behind the current ones. It is best effort: a file left
// behind is harmless (devices only follow names the timestamp leads to),
// so a failure here must not fail the publish that triggered it.
func (r *Repo) prune(st *repoState) {
	current := map[string]int64{
		"snapshot": st.snapshot.Signed.Version,
		"targets":  st.targets.Signed.Version,
		"rollouts": st.rollouts.Signed.Version,
	}
	entries, err := os.ReadDir(r.Dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		m := versionedRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		v, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			continue
		}
		if v <= current[m[2]]-int64(r.opts.KeepVersions) {
			_ = os.Remove(filepath.Join(r.Dir, e.Name()))
		}
	}
}

// read reads dir/name, refusing files over max bytes.
func (r *Repo) read(name string, max int64) ([]byte, error) {
	data, err := channelmeta.ReadFileLimited(filepath.Join(r.Dir, name), max)
	if err != nil {
		return nil, fmt.Errorf("channel metadata: %w", err)
	}
	return data, nil
}

// readOptional is read, returning nil, nil if the file does not exist.
func (r *Repo) readOptional(name string, max int64) ([]byte, error) {
	data, err := channelmeta.ReadFileLimited(filepath.Join(r.Dir, name), max)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("channel metadata: %w", err)
	}
	return data, nil
}

// writeAtomic writes dir/name so that readers (the static file server, a
// mirror's rsync) see either the old or the new complete file.
func writeAtomic(dir, name string, data []byte) error {
	return storage.WriteFile(filepath.Join(dir, name), data, 0o644)
}
