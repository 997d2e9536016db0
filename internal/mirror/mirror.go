package mirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/commitsig"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/delta"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/storage"
)

// Where a mirror keeps things, under its data directory.
const (
	RepoDir     = "repo"     // the OSTree repository, served at /repo/
	MetadataDir = "metadata" // the channel metadata, served at /metadata/
	StateDir    = "mirror"   // the lock and the trusted metadata baseline
)

// Errors callers decide on; returned errors wrap them with detail.
var (
	// ErrMetadata: the upstream's channel metadata did not verify
	// (signature, expiry, a version older than the mirror already has).
	ErrMetadata = errors.New("upstream channel metadata refused")
	// ErrSummary: the upstream's summary did not verify.
	ErrSummary = errors.New("upstream summary refused")
	// ErrNoChannel: a chosen channel has no ref in the upstream summary.
	ErrNoChannel = errors.New("channel not on the upstream")
	// ErrOlder: the upstream names an older commit for a ref than the
	// mirror serves.
	ErrOlder = errors.New("upstream commit is older than the mirrored one")
	// ErrDelta: a static delta did not match what the signed summary and
	// its superblock say.
	ErrDelta = delta.ErrRefused
)

// Config says what to mirror and with which trust.
type Config struct {
	// Upstream is the upstream server's base URL (what a device has in
	// `server:`); a trailing /repo is dropped.
	Upstream string
	// Dir is the mirror's data directory (RepoDir, MetadataDir, StateDir).
	Dir string
	// Channels are the channels to keep; all when empty.
	Channels []string
	// TrustedRoot is the root.json the school's machines ship.
	TrustedRoot []byte
	// ReleaseKeys verify commit signatures (the machines' trusted_keys).
	ReleaseKeys []sign.Verifier
	// HTTP fetches from the upstream (a client with pooled connections
	// when nil; every request is also bounded as the device bounds it).
	HTTP *http.Client
	// Now is the clock metadata expiry is judged by (time.Now when nil).
	Now func() time.Time
	// Log hears what a sync did (nothing when nil).
	Log *zap.Logger
}

// Result says what a sync left the mirror serving.
type Result struct {
	// Refs are the mirrored refs and their commits.
	Refs map[string]ostree.Checksum
	// Deltas is the number of static deltas stored for them.
	Deltas int
	// Metadata is the version of the timestamp served.
	Metadata int64
	// DeltaErrors say why static deltas the summary lists were left out
	// (each wraps ErrDelta or the fetch error); machines fetch the
	// commit's objects from the mirror instead.
	DeltaErrors []error
	// Expires is when the metadata served expires: machines refuse this
	// mirror's copy after it unless a later sync renews it.
	Expires time.Time
}

// ErrNotMirror: the data directory holds an update server's data.
var ErrNotMirror = errors.New("not a mirror's data directory")

// Prepare makes the data directory's repository, metadata and state
// directories, and finishes a summary swap a crash cut short. It refuses
// a directory that holds an update server's data (a repository or a
// database but no mirror state): a sync would replace its summary and
// its signed metadata.
func Prepare(dir string) (*ostree.Repo, error) {
	if _, err := os.Stat(filepath.Join(dir, StateDir)); errors.Is(err, fs.ErrNotExist) {
		for _, n := range []string{RepoDir, MetadataDir, "mxos.db"} {
			if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
				return nil, fmt.Errorf("mirror: %s: %w: it holds %s but no %s/ (an update server's data?); give the mirror its own --data",
					dir, ErrNotMirror, n, StateDir)
			}
		}
	}
	if err := storage.MkdirAll(filepath.Join(dir, StateDir), 0o755); err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	repo, err := ostree.Create(filepath.Join(dir, RepoDir))
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	for _, d := range []string{MetadataDir} {
		if err := storage.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("mirror: %w", err)
		}
	}
	if _, err := repo.Recover(); err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	return repo, nil
}

// BaseURL checks an upstream URL and returns it without a trailing / or
// /repo.
func BaseURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err == nil && u.User != nil {
		// Never echo a password.
		return "", errors.New("upstream: a user name or password in the URL is not supported")
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" || u.User != nil ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.HasSuffix(u.Host, ":") {
		return "", fmt.Errorf("upstream %q: want http(s)://host[:port][/path]", s)
	}
	base := strings.TrimRight(u.String(), "/")
	base = strings.TrimSuffix(base, "/repo")
	return strings.TrimRight(base, "/"), nil
}

// CheckRoot checks that root is a root.json signed by its own keys.
func CheckRoot(root []byte) error {
	_, err := channelmeta.NewClient(channelmeta.ClientConfig{TrustedRoot: root, CacheDir: "-", Dir: "-"})
	return err
}

// Sync brings the mirror up to date with the upstream, as the package
// documentation describes. On error nothing a device reads has moved.
func Sync(ctx context.Context, cfg Config) (*Result, error) {
	base, err := BaseURL(cfg.Upstream)
	if err != nil {
		return nil, err
	}
	if len(cfg.ReleaseKeys) == 0 {
		return nil, fmt.Errorf("mirror: no release keys: %w", sign.ErrNoKeys)
	}
	if err := CheckRoot(cfg.TrustedRoot); err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTP == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = pull.DefaultParallel
		cfg.HTTP = &http.Client{Transport: tr}
	}
	repo, err := Prepare(cfg.Dir)
	if err != nil {
		return nil, err
	}
	unlock, err := lock(filepath.Join(cfg.Dir, StateDir, "lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	s := &syncer{cfg: cfg, base: base, repo: repo}

	meta, err := s.fetchMetadata(ctx)
	if err != nil {
		return nil, err
	}
	if len(meta.state.OnlineKeys) == 0 {
		return nil, fmt.Errorf("mirror: %w: the trusted root names no Ed25519 online key to check the summary with", ErrMetadata)
	}
	online := []sign.Verifier{sign.NewEd25519Verifier(meta.state.OnlineKeys)}
	sumBytes, sigBytes, sum, err := s.fetchSummary(ctx, online)
	if err != nil {
		return nil, err
	}
	refs, err := chooseRefs(sum, cfg.Channels)
	if err != nil {
		return nil, err
	}
	prev, err := repo.ListRefs()
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	res := &Result{Refs: map[string]ostree.Checksum{}, Metadata: meta.state.TimestampVersion, Expires: meta.state.Expires}
	puller := &pull.Puller{URLs: []string{base + "/" + RepoDir}, HTTP: cfg.HTTP}
	for _, r := range refs {
		opts := pull.Options{SummaryKeys: online, CommitKeys: cfg.ReleaseKeys, ExpectCommit: r.Checksum.String()}
		if cur, err := repo.ResolveRef(r.Name); err == nil {
			c, err := repo.ReadCommit(cur)
			if err != nil {
				return nil, fmt.Errorf("mirror: %s: the mirrored commit: %w", r.Name, err)
			}
			opts.MinTimestamp, opts.Current = c.Timestamp, cur
		}
		got, err := puller.Pull(ctx, repo, r.Name, opts)
		if errors.Is(err, pull.ErrOlder) {
			return nil, fmt.Errorf("mirror: %w: %w", ErrOlder, err)
		}
		if err != nil {
			return nil, fmt.Errorf("mirror: %w", err)
		}
		res.Refs[r.Name] = got
		cfg.Log.Debug("mirrored", zap.String("ref", r.Name), zap.Stringer("commit", got))
	}

	tips := map[ostree.Checksum]bool{}
	for _, c := range res.Refs {
		tips[c] = true
	}
	listed, err := ostree.ParseDeltaIndex(sum.Metadata)
	if err != nil {
		return nil, fmt.Errorf("mirror: %w: %w", ErrSummary, err)
	}
	txn, err := repo.Begin()
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	defer txn.Close()
	stored := map[ostree.DeltaID]ostree.Checksum{}
	for _, id := range sortedIDs(listed) {
		if !tips[id.To] {
			continue
		}
		err := s.fetchDelta(ctx, id, listed[id])
		if ctx.Err() != nil {
			return nil, fmt.Errorf("mirror: delta %s: %w", id.Name(), ctx.Err())
		}
		if err != nil {
			// As a device does: a missing or bad delta only costs bytes.
			// The mirror has every object of the commit, verified; the
			// machines fetch those instead.
			cfg.Log.Warn("static delta left out", zap.String("delta", id.Name()), zap.Error(err))
			res.DeltaErrors = append(res.DeltaErrors, fmt.Errorf("delta %s: %w", id.Name(), err))
			continue
		}
		stored[id] = listed[id]
	}
	// An unchanged summary was swapped in whole by an earlier sync, after
	// its indexes: nothing to write.
	oldSum, _ := os.ReadFile(filepath.Join(repo.Path(), "summary"))
	oldSig, _ := os.ReadFile(filepath.Join(repo.Path(), "summary.sig"))
	if !bytes.Equal(oldSum, sumBytes) || !bytes.Equal(oldSig, sigBytes) {
		if err := txn.PutSummary(sumBytes, sigBytes, stored); err != nil {
			return nil, fmt.Errorf("mirror: %w", err)
		}
	}
	res.Deltas = len(stored)
	if err := s.publishMetadata(meta); err != nil {
		return nil, err
	}
	// What the new summary no longer names goes after the swap: deltas of
	// superseded releases at once (no summary lists them now), the refs
	// of channels no longer kept, and the objects of the commits the
	// previous summary named one sync later, so a machine that read it
	// just before the swap can finish its download here.
	have, err := repo.ListDeltas()
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	for id := range have {
		if _, ok := stored[id]; !ok {
			if err := repo.RemoveDelta(id); err != nil {
				return nil, fmt.Errorf("mirror: %w", err)
			}
		}
	}
	var keep []ostree.Checksum
	for ref, c := range prev {
		if _, ok := res.Refs[ref]; !ok {
			if err := txn.DeleteRef(ref); err != nil {
				return nil, fmt.Errorf("mirror: %w", err)
			}
		}
		if repo.HasObject(c, ostree.ObjCommit) && repo.CheckComplete(c) == nil {
			keep = append(keep, c)
		}
	}
	if err := txn.Close(); err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	if st, err := repo.Prune(ctx, keep); err != nil {
		cfg.Log.Warn("pruning the mirror's repository", zap.Error(err))
	} else if st.Objects > 0 {
		cfg.Log.Info("pruned objects no mirrored ref needs", zap.Int("objects", st.Objects), zap.Int64("bytes", st.Bytes))
	}
	return res, nil
}

// syncer is the state of one Sync.
type syncer struct {
	cfg  Config
	base string
	repo *ostree.Repo
}

// fetchSummary fetches and verifies the upstream's summary.
func (s *syncer) fetchSummary(ctx context.Context, online []sign.Verifier) (sum, sig []byte, parsed *ostree.Summary, err error) {
	if sig, err = s.getBytes(ctx, RepoDir+"/summary.sig", pull.MaxSignatureSize); err != nil {
		return nil, nil, nil, fmt.Errorf("mirror: %w: %w", ErrSummary, err)
	}
	if sum, err = s.getBytes(ctx, RepoDir+"/summary", pull.MaxSummarySize); err != nil {
		return nil, nil, nil, fmt.Errorf("mirror: %w: %w", ErrSummary, err)
	}
	md, err := ostree.ParseMetadata(sig)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("mirror: %w: summary.sig: %w", ErrSummary, err)
	}
	if err := sign.VerifyAll(online, sum, commitsig.SignatureMap(md)); err != nil {
		return nil, nil, nil, fmt.Errorf("mirror: %w: not signed by the online key of the trusted root: %w", ErrSummary, err)
	}
	if parsed, err = ostree.ParseSummary(sum); err != nil {
		return nil, nil, nil, fmt.Errorf("mirror: %w: %w", ErrSummary, err)
	}
	return sum, sig, parsed, nil
}

// chooseRefs returns the summary's refs of the chosen channels: refs
// mxos/<major>/<arch>/<channel>, every one when channels is empty.
func chooseRefs(sum *ostree.Summary, channels []string) ([]ostree.SummaryRef, error) {
	want := map[string]bool{}
	for _, c := range channels {
		want[c] = true
	}
	found := map[string]bool{}
	var out []ostree.SummaryRef
	for _, r := range sum.Refs {
		parts := strings.Split(r.Name, "/")
		if len(parts) != 4 || parts[0] != "mxos" {
			continue
		}
		if len(want) > 0 && !want[parts[3]] {
			continue
		}
		found[parts[3]] = true
		out = append(out, r)
	}
	var missing []string
	for c := range want {
		if !found[c] {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("mirror: %w: the upstream summary lists no mxos/<major>/<arch>/%s ref (channels %s)",
			ErrNoChannel, missing[0], strings.Join(missing, ", "))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("mirror: %w: the upstream summary lists no mxos/ ref", ErrNoChannel)
	}
	return out, nil
}

func sortedIDs(m map[ostree.DeltaID]ostree.Checksum) []ostree.DeltaID {
	ids := make([]ostree.DeltaID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].Name() < ids[j].Name() })
	return ids
}

// lock takes the exclusive sync lock at path.
func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("mirror: lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("mirror: lock: %w", err)
	}
	return func() { f.Close() }, nil
}
