package channelmeta

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

// Limits are the per-file size limits on the device. Zero fields take
// go-tuf's defaults (root 512 KiB, timestamp 16 KiB, snapshot 2 MB,
// targets 5 MB); nothing above 8 MiB is ever read. Snapshot, targets and
// rollouts are in practice limited to the exact length the timestamp or
// snapshot pins for them.
type Limits struct {
	Root, Timestamp, Snapshot, Targets int64
}

// ClientConfig configures a device-side Client. Exactly one of URL and Dir
// must be set.
type ClientConfig struct {
	// TrustedRoot is root.json as shipped with the OS (keys/). It is the
	// only trust anchor; newer roots are accepted only through the signed
	// rotation chain N.root.json.
	TrustedRoot []byte
	// CacheDir keeps the last verified metadata between runs; it is what
	// makes rollback detectable across reboots, so it must be persistent
	// and writable only by the updater (0700, root-owned). Required.
	CacheDir string
	// URL is the HTTP(S) base of the metadata, e.g.
	// https://updates.example.mx/metadata/.
	URL string
	// Dir is a local mirror of the metadata directory (USB disk, LAN share).
	Dir string
	// HTTPClient is used for URL; default: a client with a 60 s timeout.
	HTTPClient *http.Client
	// UserAgent is sent with HTTP requests if set.
	UserAgent string
	Limits    Limits
	// Now is the device clock; default time.Now. Expiry is judged by it.
	Now func() time.Time
}

// Client fetches and verifies channel metadata on a device. It is safe for
// concurrent use (loads are serialised: they share the cache).
type Client struct {
	cfg         ClientConfig
	rootVersion int64
	mu          sync.Mutex
	base        string
	// fetcherFor makes the fetcher for one Load (tests swap it).
	fetcherFor func(ctx context.Context) fetcher.Fetcher
}

// NewClient checks cfg and the shipped root (it must be signed by its own
// root keys) and returns a Client. It does no I/O besides parsing.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.CacheDir == "" {
		return nil, errors.New("channel metadata client: no cache directory: without one, rollback cannot be detected")
	}
	if err := CheckFile(metadata.ROOT, cfg.TrustedRoot); err != nil {
		return nil, fmt.Errorf("channel metadata client: trusted root: %w", &MetadataError{File: RootFile, Kind: ErrMalformed, Err: err})
	}
	tm, err := trustedmetadata.New(cfg.TrustedRoot)
	if err != nil {
		return nil, fmt.Errorf("channel metadata client: trusted root: %w", &MetadataError{File: RootFile, Kind: KindOf(err), Err: err})
	}
	c := &Client{cfg: cfg, rootVersion: tm.Root.Signed.Version}
	switch {
	case (cfg.URL == "") == (cfg.Dir == ""):
		return nil, errors.New("channel metadata client: set exactly one of URL and Dir")
	case cfg.URL != "":
		u, err := url.Parse(cfg.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("channel metadata client: URL %q: want http(s)://host/path", cfg.URL)
		}
		hc := cfg.HTTPClient
		if hc == nil {
			hc = &http.Client{Timeout: 60 * time.Second}
		}
		c.base = cfg.URL
		c.fetcherFor = func(ctx context.Context) fetcher.Fetcher {
			return &httpFetcher{ctx: ctx, client: hc, userAgent: cfg.UserAgent}
		}
	default:
		dir, err := filepath.Abs(cfg.Dir)
		if err != nil {
			return nil, fmt.Errorf("channel metadata client: %w", err)
		}
		c.base = dirBase
		c.fetcherFor = func(context.Context) fetcher.Fetcher { return &dirFetcher{dir: dir} }
	}
	return c, nil
}

// State is the verified channel state.
type State struct {
	// Releases are the release-signed releases, sorted by path.
	Releases []Release
	// Rollouts are the online-signed rollout states, sorted by path.
	Rollouts []RolloutState
	// Ignored lists target paths that were signed but not accepted because
	// the signing role may not speak for them (e.g. a releases/ path in the
	// online-signed rollouts role). Non-empty means someone tried.
	Ignored []string

	// OnlineKeys are the Ed25519 keys the trusted root (after any
	// rotation) gives its timestamp and snapshot roles: the server's
	// online keys, which also sign the OSTree summary (onlinekeys.go).
	OnlineKeys []ed25519.PublicKey

	RootVersion, TimestampVersion, SnapshotVersion, TargetsVersion, RolloutsVersion int64
	// Expires is the earliest expiry of the roles loaded; after it the
	// device must load again before trusting this state.
	Expires time.Time
}

// Lookup returns the signed release for channel, arch and version.
func (s *State) Lookup(channelName, arch, version string) (Release, bool) {
	if s == nil {
		return Release{}, false
	}
	for _, r := range s.Releases {
		if r.Channel == channelName && r.Arch == arch && r.Version == version {
			return r, true
		}
	}
	return Release{}, false
}

// Rollout returns the signed rollout state of channel and arch.
func (s *State) Rollout(channelName, arch string) (RolloutState, bool) {
	if s == nil {
		return RolloutState{}, false
	}
	for _, r := range s.Rollouts {
		if r.Channel == channelName && r.Arch == arch {
			return r, true
		}
	}
	return RolloutState{}, false
}

// Offer is what the update server (or a mirror, or a proxy) proposes to
// install. None of it is trusted until CheckOffer accepts it.
type Offer struct {
	Channel, Arch, Version string
	// Commit is the OSTree commit checksum to deploy.
	Commit string
	// Ref is the OSTree ref the commit is pulled from; empty means the
	// caller will use the signed release's ref.
	Ref string
	// OCIDigest is the image manifest digest, for image-based updates.
	OCIDigest string
}

// CheckOffer accepts an offer only if the release-signed targets list
// exactly this channel, arch and version with this commit (and ref and OCI
// digest, when given). It errs with ErrNotSigned, ErrCommitMismatch,
// ErrRefMismatch or ErrDigestMismatch. Use State.Lookup for the signed
// values themselves.
func CheckOffer(s *State, o Offer) error {
	rel, ok := s.Lookup(o.Channel, o.Arch, o.Version)
	if !ok {
		path := Release{Channel: o.Channel, Arch: o.Arch, Version: o.Version}.Path()
		var ignored []string
		if s != nil {
			ignored = s.Ignored
		}
		for _, ig := range ignored {
			if strings.HasPrefix(ig, path+" (") {
				return fmt.Errorf("offer %s: %s: %w", short(path), short(ig[len(path)+1:]), ErrNotSigned)
			}
		}
		return fmt.Errorf("offer %s/%s version %q: %w", o.Channel, o.Arch, o.Version, ErrNotSigned)
	}
	if o.Commit != rel.Commit {
		return fmt.Errorf("offer %s: commit %s, signed %s: %w", rel.Path(), short(o.Commit), short(rel.Commit), ErrCommitMismatch)
	}
	if o.Ref != "" && o.Ref != rel.Ref {
		return fmt.Errorf("offer %s: ref %q, signed %q: %w", rel.Path(), o.Ref, rel.Ref, ErrRefMismatch)
	}
	if o.OCIDigest != "" && o.OCIDigest != rel.OCIDigest {
		return fmt.Errorf("offer %s: OCI digest %q, signed %q: %w", rel.Path(), short(o.OCIDigest), short(rel.OCIDigest), ErrDigestMismatch)
	}
	return nil
}

// short trims a checksum for messages (and bounds attacker-chosen text).
func short(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// rolloutsProbe is looked up to make go-tuf load the delegated rollouts
// role: the updater loads delegations lazily, during a target lookup whose
// path they cover. It is not expected to exist.
const rolloutsProbe = RolloutsPrefix + "-/-"

// Load runs the TUF client workflow (root rotation chain, timestamp,
// snapshot, targets, rollouts) against the remote, with the trusted state
// in CacheDir as the baseline, and returns the verified state. On any
// verification failure it returns a *MetadataError and the cache keeps the
// last trusted versions (a rollback or a bad signature never replaces
// them).
func (c *Client) Load(ctx context.Context) (*State, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.cfg.Now != nil {
		now = c.cfg.Now()
	}
	rec := &recordingFetcher{inner: &checkedFetcher{inner: c.fetcherFor(ctx)}}
	fail := func(err error) (*State, error) {
		var me *MetadataError
		if errors.As(err, &me) {
			return nil, err
		}
		return nil, &MetadataError{File: rec.lastFile(), Kind: KindOf(err), Err: err}
	}

	c.checkCache()
	cfg, err := config.New(c.base, c.trustedRoot())
	if err != nil {
		return nil, fmt.Errorf("channel metadata: %w", err)
	}
	cfg.LocalMetadataDir = c.cfg.CacheDir
	// go-tuf wants a targets directory even though we never download
	// target files (the records are inside the metadata).
	cfg.LocalTargetsDir = c.cfg.CacheDir
	cfg.Fetcher = rec
	cfg.MaxRootRotations = 64
	cfg.MaxDelegations = 4
	cfg.RootMaxLength = limit(c.cfg.Limits.Root, DefaultRootMax)
	cfg.TimestampMaxLength = limit(c.cfg.Limits.Timestamp, DefaultTimestampMax)
	cfg.SnapshotMaxLength = limit(c.cfg.Limits.Snapshot, DefaultSnapshotMax)
	cfg.TargetsMaxLength = limit(c.cfg.Limits.Targets, DefaultTargetsMax)
	up, err := updater.New(cfg)
	if err != nil {
		return fail(err)
	}
	up.UnsafeSetRefTime(now.UTC()) // the only way to give go-tuf our clock
	if err := up.Refresh(); err != nil {
		return fail(err)
	}
	_, probeErr := up.GetTargetInfo(rolloutsProbe)
	trusted := up.GetTrustedMetadataSet()
	top := trusted.Targets[metadata.TARGETS]
	if delegation(top) == nil {
		return fail(malformedf("targets does not delegate %q to %q", RolloutsPattern, RolloutsRole))
	}
	if trusted.Targets[RolloutsRole] == nil {
		if probeErr == nil {
			probeErr = malformedf("rollouts role not loaded")
		}
		return fail(probeErr)
	}
	st, err := stateFrom(&trusted)
	if err != nil {
		return fail(err)
	}
	return st, nil
}

func limit(v, def int64) int64 {
	if v <= 0 {
		return def
	}
	return min(v, MaxFileSize)
}

// trustedRoot picks the newer of the shipped root and the root cached by
// an earlier Load (which go-tuf verified along the rotation chain). The
// cached one makes a rotation stick: a server that later hides the new
// N.root.json cannot bring back the old keys. A shipped root newer than
// the cache (an OS update with new keys/) wins too.
func (c *Client) trustedRoot() []byte {
	best := c.cfg.TrustedRoot
	data, err := ReadFileLimited(filepath.Join(c.cfg.CacheDir, RootFile), DefaultRootMax)
	if err != nil || CheckFile(metadata.ROOT, data) != nil {
		return best
	}
	tm, err := trustedmetadata.New(data)
	if err != nil || tm.Root.Signed.Version <= c.rootVersion {
		return best
	}
	return data
}

// delegation returns the rollouts delegation of the top-level targets.
func delegation(top *metadata.Metadata[metadata.TargetsType]) *metadata.DelegatedRole {
	if top == nil || top.Signed.Delegations == nil {
		return nil
	}
	for i := range top.Signed.Delegations.Roles {
		if top.Signed.Delegations.Roles[i].Name == RolloutsRole {
			return &top.Signed.Delegations.Roles[i]
		}
	}
	return nil
}

// stateFrom extracts the records from verified metadata. Signatures,
// versions and expiry were checked by go-tuf; what is checked here is
// which role may speak for which path: releases only from the top-level
// targets (release key), rollouts only from the rollouts role and only
// within its delegated paths (go-tuf enforces delegated paths during its
// target search, not when a role's whole list is read, so we do it).
func stateFrom(tm *trustedmetadata.TrustedMetadata) (*State, error) {
	top := tm.Targets[metadata.TARGETS]
	ro := tm.Targets[RolloutsRole]
	deleg := delegation(top)
	st := &State{
		RootVersion:      tm.Root.Signed.Version,
		TimestampVersion: tm.Timestamp.Signed.Version,
		SnapshotVersion:  tm.Snapshot.Signed.Version,
		TargetsVersion:   top.Signed.Version,
		RolloutsVersion:  ro.Signed.Version,
		OnlineKeys:       onlineKeys(tm.Root),
		Expires: slices.MinFunc([]time.Time{
			tm.Root.Signed.Expires, tm.Timestamp.Signed.Expires, tm.Snapshot.Signed.Expires,
			top.Signed.Expires, ro.Signed.Expires,
		}, time.Time.Compare),
	}
	signers := -1 // distinct release keys signing top, counted when needed
	for _, p := range sortedKeys(top.Signed.Targets) {
		if !strings.HasPrefix(p, ReleasesPrefix) {
			st.Ignored = append(st.Ignored, p)
			continue
		}
		rel, err := ParseRelease(p, top.Signed.Targets[p])
		if err != nil {
			return nil, err
		}
		if rel.Threshold > 1 {
			if signers < 0 {
				if signers, err = CountSigners(tm.Root, top); err != nil {
					return nil, err
				}
			}
			if signers < rel.Threshold {
				st.Ignored = append(st.Ignored, fmt.Sprintf("%s (needs %d release signatures, has %d)", p, rel.Threshold, signers))
				continue
			}
		}
		st.Releases = append(st.Releases, rel)
	}
	for _, p := range sortedKeys(ro.Signed.Targets) {
		ok, err := deleg.IsDelegatedPath(p)
		if err != nil || !ok || !strings.HasPrefix(p, RolloutsPrefix) {
			st.Ignored = append(st.Ignored, p)
			continue
		}
		s, err := ParseRollout(p, ro.Signed.Targets[p])
		if err != nil {
			return nil, err
		}
		st.Rollouts = append(st.Rollouts, s)
	}
	return st, nil
}
