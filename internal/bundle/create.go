package bundle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/commitsig"
	"github.com/mxos-linux/mxos-update/internal/httplimit"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/delta"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/rollout"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/storage"
)

// CreateOptions says what Create bundles and from where.
type CreateOptions struct {
	// Server is the base URL of an mxos-server or a school mirror: the
	// repository at Server/repo, the channel metadata at Server/metadata/.
	Server string
	// HTTP is the client (a plain one with a 10 min timeout when nil).
	HTTP *http.Client
	// Channel and Arch name the release's channel; Version picks a
	// release of it (empty: the rollout's release, or the newest signed
	// release when the channel has no rollout).
	Channel, Arch, Version string
	// TrustedRoot (the shipped root.json) and ReleaseKeys (trusted_keys)
	// are the device's trust roots: Create checks the bundle with them as
	// a device will, so a bad bundle is found at the office, not in the lab.
	TrustedRoot []byte
	ReleaseKeys []sign.Verifier
	// Out is the bundle directory; it must not exist or be empty.
	Out string
	// Now is the clock expiry is judged by (time.Now when nil).
	Now func() time.Time
	// Progress hears the pull's progress (objects done, total known).
	Progress func(done, total int)
	// FromReleases, when not empty, makes a delta bundle: the server's
	// static deltas from these versions of the channel instead of the
	// whole tree (much smaller; it installs only on machines running one
	// of them).
	FromReleases []string
}

// maxRoots bounds the root rotation chain copied (go-tuf follows at most
// 64 rotations on a device too).
const maxRoots = 64

// Create writes a bundle of one release into opts.Out and returns its
// manifest. The metadata is verified from opts.TrustedRoot and the commit
// pulled with every check of a device update before the manifest is
// written; on error the directory holds no manifest.
func Create(ctx context.Context, opts CreateOptions) (_ *Manifest, err error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	hc := opts.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Minute}
	}
	base := strings.TrimRight(opts.Server, "/")
	if err := emptyDir(opts.Out); err != nil {
		return nil, err
	}
	// A failed bundle leaves the directory empty again, ready for the
	// next try (it was empty before).
	defer func() {
		if err != nil {
			ents, _ := os.ReadDir(opts.Out)
			for _, e := range ents {
				os.RemoveAll(filepath.Join(opts.Out, e.Name()))
			}
		}
	}()
	metaDir := filepath.Join(opts.Out, MetadataDir)
	if err := copyMetadata(ctx, hc, base+"/metadata/", metaDir); err != nil {
		return nil, err
	}
	cache, err := os.MkdirTemp("", "mxos-bundle-meta-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(cache)
	mc, err := channelmeta.NewClient(channelmeta.ClientConfig{TrustedRoot: opts.TrustedRoot, CacheDir: cache, Dir: metaDir, Now: now})
	if err != nil {
		return nil, err
	}
	st, err := mc.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("the signed channel metadata of %s: %w", opts.Server, err)
	}
	rel, err := choose(st, opts.Channel, opts.Arch, opts.Version)
	if err != nil {
		return nil, err
	}
	if len(st.OnlineKeys) == 0 {
		return nil, errors.New("the trusted root names no Ed25519 online key to check the repository summary with")
	}
	onlineKeys := []sign.Verifier{sign.NewEd25519Verifier(st.OnlineKeys)}

	repo, err := ostree.Create(filepath.Join(opts.Out, RepoDir))
	if err != nil {
		return nil, err
	}
	// The summary and its signature, byte for byte as the server signed
	// them: taken first, so the pull below checks the commit they name.
	sum, sig, err := fetchSummary(ctx, hc, base+"/repo")
	if err != nil {
		return nil, err
	}
	if err := checkSummary(sum, sig, onlineKeys, rel); err != nil {
		return nil, fmt.Errorf("the repository summary of %s: %w", opts.Server, err)
	}
	p := &pull.Puller{URLs: []string{base + "/repo"}, HTTP: hc, Progress: opts.Progress}
	var bases []Base
	if len(opts.FromReleases) > 0 {
		if bases, err = deltaBundle(ctx, p, hc, base+"/repo", repo, st, rel, sum, opts); err != nil {
			return nil, err
		}
	} else {
		got, err := p.Pull(ctx, repo, rel.Ref, pull.Options{ExpectCommit: rel.Commit, SummaryKeys: onlineKeys, CommitKeys: opts.ReleaseKeys})
		if err != nil {
			return nil, fmt.Errorf("downloading version %s: %w", rel.Version, err)
		}
		if got.String() != rel.Commit {
			return nil, fmt.Errorf("downloading version %s: got commit %s, the signed metadata lists %s", rel.Version, got, rel.Commit)
		}
	}
	for name, b := range map[string][]byte{"summary": sum, "summary.sig": sig} {
		if err := storage.WriteFile(filepath.Join(repo.Path(), name), b, 0o644); err != nil {
			return nil, err
		}
	}
	m := &Manifest{Format: Format, Channel: rel.Channel, Arch: rel.Arch, Version: rel.Version, Ref: rel.Ref,
		Commit: rel.Commit, Created: now().UTC().Truncate(time.Second), From: bases}
	b, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	if err := storage.WriteFile(filepath.Join(opts.Out, ManifestFile), b, 0o644); err != nil {
		return nil, err
	}
	return m, nil
}

// emptyDir makes dir, or checks that it is empty (a bundle is never
// written over another one or over someone's files).
func emptyDir(dir string) error {
	if dir == "" {
		return errors.New("no output directory")
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return storage.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		return fmt.Errorf("%s is not empty; give a new or empty directory", dir)
	}
	return nil
}

// choose picks the release to bundle: version when given, else the
// channel's rollout target, else its newest signed release. A release
// whose rollout is halted is not bundled.
func choose(st *channelmeta.State, channel, arch, version string) (channelmeta.Release, error) {
	ro, hasRollout := st.Rollout(channel, arch)
	if version == "" && hasRollout {
		version = ro.Version
	}
	if version == "" {
		var best *rollout.Version
		for _, r := range st.Releases {
			if r.Channel != channel || r.Arch != arch {
				continue
			}
			v, err := rollout.ParseVersion(r.Version)
			if err == nil && (best == nil || v.Compare(*best) > 0) {
				best, version = &v, r.Version
			}
		}
	}
	rel, ok := st.Lookup(channel, arch, version)
	if !ok {
		if version == "" {
			return rel, fmt.Errorf("the signed channel metadata lists no release of %s for %s", channel, arch)
		}
		return rel, fmt.Errorf("the signed channel metadata lists no version %s of %s for %s", version, channel, arch)
	}
	if hasRollout && ro.Version == rel.Version && ro.State == rollout.StateHalted {
		return rel, fmt.Errorf("the rollout of version %s is halted (%s); it is not bundled", rel.Version, ro.HaltReason)
	}
	return rel, nil
}

// copyMetadata copies the files a device fetches from the metadata at
// base into dir: the root chain, the timestamp and the versioned
// snapshot, targets and rollouts it pins. Their signatures are checked
// afterwards by the TUF client, from the trusted root.
func copyMetadata(ctx context.Context, hc *http.Client, base, dir string) error {
	if err := storage.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	put := func(name string, max int64) ([]byte, error) {
		b, err := get(ctx, hc, base+name, max)
		if err != nil {
			return nil, err
		}
		return b, storage.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	for i := 1; i <= maxRoots; i++ {
		_, err := put(strconv.Itoa(i)+"."+channelmeta.RootFile, channelmeta.DefaultRootMax)
		if errors.Is(err, ostree.ErrNotFound) && i > 1 {
			break
		}
		if err != nil {
			return fmt.Errorf("channel metadata: %w", err)
		}
	}
	ts, err := put(channelmeta.TimestampFile, channelmeta.DefaultTimestampMax)
	if err != nil {
		return fmt.Errorf("channel metadata: %w", err)
	}
	snapV, err := metaVersion(ts, channelmeta.SnapshotFile)
	if err != nil {
		return fmt.Errorf("channel metadata: %s: %w", channelmeta.TimestampFile, err)
	}
	snap, err := put(strconv.FormatInt(snapV, 10)+"."+channelmeta.SnapshotFile, channelmeta.DefaultSnapshotMax)
	if err != nil {
		return fmt.Errorf("channel metadata: %w", err)
	}
	for _, role := range []string{channelmeta.TargetsFile, channelmeta.RolloutsFile} {
		v, err := metaVersion(snap, role)
		if err != nil {
			return fmt.Errorf("channel metadata: %s: %w", channelmeta.SnapshotFile, err)
		}
		if _, err := put(strconv.FormatInt(v, 10)+"."+role, channelmeta.DefaultTargetsMax); err != nil {
			return fmt.Errorf("channel metadata: %w", err)
		}
	}
	return nil
}

// metaVersion reads signed.meta[name].version of a timestamp or snapshot.
func metaVersion(b []byte, name string) (int64, error) {
	var f struct {
		Signed struct {
			Meta map[string]struct {
				Version int64 `json:"version"`
			} `json:"meta"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return 0, err
	}
	m, ok := f.Signed.Meta[name]
	if !ok || m.Version < 1 {
		return 0, fmt.Errorf("no version of %s", name)
	}
	return m.Version, nil
}

func get(ctx context.Context, hc *http.Client, url string, max int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("GET %s: %s: %w", url, resp.Status, ostree.ErrNotFound)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	b, err := httplimit.ReadAll(resp.Body, max, resp.ContentLength)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return b, nil
}

func fetchSummary(ctx context.Context, hc *http.Client, repo string) (sum, sig []byte, err error) {
	if sig, err = get(ctx, hc, repo+"/summary.sig", pull.MaxSignatureSize); err != nil {
		return nil, nil, err
	}
	if sum, err = get(ctx, hc, repo+"/summary", pull.MaxSummarySize); err != nil {
		return nil, nil, err
	}
	return sum, sig, nil
}

// checkSummary: the summary is signed by the online key and names the
// release's commit for its ref.
func checkSummary(sum, sig []byte, keys []sign.Verifier, rel channelmeta.Release) error {
	md, err := ostree.ParseMetadata(sig)
	if err != nil {
		return fmt.Errorf("summary.sig: %w", err)
	}
	if err := sign.VerifyAll(keys, sum, commitsig.SignatureMap(md)); err != nil {
		return fmt.Errorf("summary.sig: %w", err)
	}
	s, err := ostree.ParseSummary(sum)
	if err != nil {
		return err
	}
	r, ok := s.Lookup(rel.Ref)
	if !ok {
		return fmt.Errorf("the summary does not list %s", rel.Ref)
	}
	if r.Checksum.String() != rel.Commit {
		return fmt.Errorf("the branch %s is at commit %.12s, not at version %s (%.12s): a bundle carries the newest release of its branch "+
			"(if one was published just now, try again in a moment)", rel.Ref, r.Checksum, rel.Version, rel.Commit)
	}
	return nil
}

// deltaBundle copies into repo the release's commit and signatures and,
// for each of opts.FromReleases, the static delta the signed summary
// lists from it: the superblock (its digest the summary's), every part
// (size and SHA-256 the superblock's) and every fallback object (checked
// against its name). It returns the bases for the manifest.
func deltaBundle(ctx context.Context, p *pull.Puller, hc *http.Client, repoURL string, repo *ostree.Repo,
	st *channelmeta.State, rel channelmeta.Release, sum []byte, opts CreateOptions) ([]Base, error) {
	to, err := ostree.ParseChecksum(rel.Commit)
	if err != nil {
		return nil, err
	}
	s, err := ostree.ParseSummary(sum)
	if err != nil {
		return nil, err
	}
	listed, err := ostree.ParseDeltaIndex(s.Metadata)
	if err != nil {
		return nil, fmt.Errorf("the summary's deltas: %w", err)
	}
	raw, err := p.GetObject(ctx, to, ostree.ObjCommit)
	if err != nil {
		return nil, fmt.Errorf("version %s: %w", rel.Version, err)
	}
	mdRaw, err := p.GetObject(ctx, to, ostree.ObjCommitMeta)
	if err != nil {
		return nil, fmt.Errorf("version %s: signatures: %w", rel.Version, err)
	}
	md, err := ostree.ParseMetadata(mdRaw)
	if err != nil {
		return nil, fmt.Errorf("version %s: signatures: %w", rel.Version, err)
	}
	if err := sign.VerifyAll(opts.ReleaseKeys, raw, commitsig.SignatureMap(md)); err != nil {
		return nil, fmt.Errorf("version %s: %w", rel.Version, err)
	}
	txn, err := repo.Begin()
	if err != nil {
		return nil, err
	}
	defer txn.Close()
	if _, err := txn.WriteMetadata(ostree.ObjCommit, raw, to); err != nil {
		return nil, err
	}
	var bases []Base
	for _, v := range opts.FromReleases {
		from, ok := st.Lookup(rel.Channel, rel.Arch, v)
		if !ok {
			return nil, fmt.Errorf("--from-release %s: the signed channel metadata lists no version %s of %s for %s", v, v, rel.Channel, rel.Arch)
		}
		fc, err := ostree.ParseChecksum(from.Commit)
		if err != nil || from.Commit == rel.Commit {
			return nil, fmt.Errorf("--from-release %s: not another commit than version %s", v, rel.Version)
		}
		id := ostree.DeltaID{From: fc, To: to}
		digest, ok := listed[id]
		if !ok {
			return nil, fmt.Errorf("--from-release %s: the server has no static delta from %s to %s (it makes them from the last releases of a channel)", v, v, rel.Version)
		}
		if err := copyDelta(ctx, hc, repoURL, repo, txn, id, digest, raw); err != nil {
			return nil, fmt.Errorf("--from-release %s: %w", v, err)
		}
		bases = append(bases, Base{Version: v, Commit: from.Commit})
	}
	if err := txn.Commit(); err != nil {
		return nil, err
	}
	if err := txn.WriteCommitMeta(to, md); err != nil {
		return nil, err
	}
	return bases, txn.Close()
}

// copyDelta copies one static delta, checked as a device checks it.
func copyDelta(ctx context.Context, hc *http.Client, repoURL string, repo *ostree.Repo, txn *ostree.Txn,
	id ostree.DeltaID, digest ostree.Checksum, commit []byte) error {
	put := func(rel string, b []byte) error {
		return storage.WriteFile(filepath.Join(repo.Path(), filepath.FromSlash(rel)), b, 0o644)
	}
	sbRaw, err := get(ctx, hc, repoURL+"/"+id.SuperblockPath(), delta.MaxSuperblockSize)
	if err != nil {
		return err
	}
	if sha256.Sum256(sbRaw) != digest {
		return errors.New("the superblock does not match the signed summary")
	}
	sb, err := delta.ParseSuperblock(sbRaw)
	if err != nil {
		return err
	}
	if sb.ID() != id || string(sb.Commit) != string(commit) {
		return fmt.Errorf("the superblock is for %s, not %s", sb.ID().Name(), id.Name())
	}
	for i, h := range sb.Parts {
		if h.Size > delta.MaxPartSize {
			return fmt.Errorf("part %d: %d bytes (limit %d)", i, h.Size, delta.MaxPartSize)
		}
		b, err := get(ctx, hc, repoURL+"/"+id.PartPath(i), int64(h.Size))
		if err != nil {
			return err
		}
		if uint64(len(b)) != h.Size || ostree.Checksum(sha256.Sum256(b)) != h.Checksum {
			return fmt.Errorf("part %d does not match its superblock", i)
		}
		if err := put(id.PartPath(i), b); err != nil {
			return err
		}
	}
	for _, f := range sb.Fallbacks {
		b, err := get(ctx, hc, repoURL+"/"+ostree.ObjectPath(f.Checksum, f.Type), int64(f.Size)+1)
		if err != nil {
			return fmt.Errorf("fallback object %s: %w", f.Checksum, err)
		}
		if f.Type == ostree.ObjFile {
			err = txn.WriteFilez(f.Checksum, bytes.NewReader(b))
		} else {
			_, err = txn.WriteMetadata(f.Type, b, f.Checksum)
		}
		if err != nil {
			return fmt.Errorf("fallback object %s: %w", f.Checksum, err)
		}
	}
	// The superblock last: a delta is only listed as whole.
	return put(id.SuperblockPath(), sbRaw)
}
