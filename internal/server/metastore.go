package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/storage"
	"github.com/mxos-linux/mxos-update/internal/storage/object"
)

// Shared signed channel metadata (replicas on one database and one
// bucket: Config.RepoStore and Config.Store both set).
//
// Each replica keeps serving /metadata/ from its own DATA/metadata, but
// the copy in the bucket (under metadata/) is the cluster's one
// repository, and every replica's directory follows it:
//
//   - A change (release targets accepted, rollouts re-signed, the online
//     roles renewed, a root or targets installed) happens under the
//     cluster lock (db.LockPublish, the publish lock: a release's targets
//     and its ref move under one lock). The writer first pulls the
//     bucket's metadata into its directory if it is newer (below), then
//     lets publish.Repo change the directory as a single server does,
//     then copies every new file to the bucket: versioned files
//     (N.root.json, N.targets.json, …) only where absent (If-None-Match),
//     then the current copies with If-Match on the version it read,
//     timestamp.json last, and notes a db.ChangeMetadata in the lock's
//     transaction. Versions therefore grow across the cluster: a writer
//     always signs version N+1 of the newest N anyone signed, and two
//     replicas never sign one version with different contents.
//   - Every replica pulls when the cache change feed names a metadata
//     change (about a second later), on a gap in the feed, and at each
//     metadata refresh. A pull reads the bucket's timestamp.json and
//     takes it only if its version is above the local one; it then reads
//     exactly the files that timestamp leads to (the snapshot it names,
//     the targets and rollouts the snapshot names, any root newer than
//     the local root), verifies them with the device's own client
//     (channelmeta.Client from the local root.json: signatures,
//     thresholds, hashes, lengths, the root chain) as of the timestamp's
//     own validity, and installs them: versioned files first, then the
//     current copies, timestamp.json last. A replica never installs
//     metadata its own root does not verify, and never goes back.
//   - The periodic renewal runs on every replica, but under the lock and
//     after a pull, and publish.Repo re-signs a role only when it is due,
//     so it happens once for the cluster; the rollouts are re-signed by
//     the refresh only when the database's rollouts differ from the
//     signed ones (publish.Repo.PublishRolloutsIfChanged).
//
// A release built from a replica's copy that is not yet the newest (mxosctl
// reads targets.json from the server it publishes to, and a replica takes
// another's change about a second later) is refused as a rollback of the
// targets, changing nothing; publishing again through it then succeeds.
//
// Versioned files older than KeepVersions are pruned from each replica's
// directory (by a pull too); the bucket keeps them (a few KiB each).

// metaStorePrefix is where the metadata lives in the bucket.
const metaStorePrefix = "metadata/"

// metaShare is a metadata directory kept in step with the bucket.
type metaShare struct {
	store object.Store
	db    *db.Store
	dir   string
	log   *zap.Logger
	// mu: one pull or write at a time in this process.
	mu sync.Mutex
	// pulled is called (with mu held) after a pull installed newer files.
	pulled func()
}

// tufHead is the part of a TUF file a pull reads before verifying.
type tufHead struct {
	Signed struct {
		Version int64     `json:"version"`
		Expires time.Time `json:"expires"`
		Meta    map[string]struct {
			Version int64 `json:"version"`
		} `json:"meta"`
	} `json:"signed"`
}

func parseHead(name string, b []byte) (*tufHead, error) {
	var h tufHead
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("%s: %w: %v", name, channelmeta.ErrMalformed, err)
	}
	if h.Signed.Version < 1 {
		return nil, fmt.Errorf("%s: %w: version %d", name, channelmeta.ErrMalformed, h.Signed.Version)
	}
	return &h, nil
}

// localVersion is the version of the local file name (0 when absent).
func (m *metaShare) localVersion(name string) (int64, []byte, error) {
	b, err := channelmeta.ReadFileLimited(filepath.Join(m.dir, name), channelmeta.MaxFileSize)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	h, err := parseHead(name, b)
	if err != nil {
		return 0, nil, err
	}
	return h.Signed.Version, b, nil
}

// get reads one metadata file from the bucket.
func (m *metaShare) get(ctx context.Context, name string) ([]byte, error) {
	r, err := m.store.Get(ctx, metaStorePrefix+name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, channelmeta.MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > channelmeta.MaxFileSize {
		return nil, fmt.Errorf("%s: %w", name, channelmeta.ErrTooLarge)
	}
	return b, nil
}

// pull installs the bucket's metadata when it is newer than the local
// copy (see the comment at the top) and reports whether it did.
func (m *metaShare) pull(ctx context.Context) (bool, error) {
	fail := func(err error) (bool, error) {
		return false, fmt.Errorf("reading the channel metadata in object storage: %w", err)
	}
	ts, err := m.get(ctx, channelmeta.TimestampFile)
	if errors.Is(err, object.ErrNotFound) {
		return false, nil // nothing shared yet: the next write fills it
	}
	if err != nil {
		return fail(err)
	}
	tsHead, err := parseHead(channelmeta.TimestampFile, ts)
	if err != nil {
		return fail(err)
	}
	localTS, localTSRaw, err := m.localVersion(channelmeta.TimestampFile)
	if err != nil {
		return fail(err)
	}
	if tsHead.Signed.Version <= localTS {
		if tsHead.Signed.Version == localTS && !bytes.Equal(ts, localTSRaw) {
			m.log.Warn("this server's timestamp and the bucket's differ at the same version; keeping this server's until a newer one is shared",
				zap.Int64("version", localTS))
		}
		return false, nil
	}
	files := map[string][]byte{channelmeta.TimestampFile: ts}
	snapV := tsHead.Signed.Meta[channelmeta.SnapshotFile].Version
	snapName := versioned(snapV, channelmeta.SnapshotFile)
	snap, err := m.get(ctx, snapName)
	if err != nil {
		return fail(err)
	}
	snapHead, err := parseHead(snapName, snap)
	if err != nil {
		return fail(err)
	}
	files[snapName] = snap
	current := map[string]string{channelmeta.SnapshotFile: snapName}
	for _, role := range []string{channelmeta.TargetsFile, channelmeta.RolloutsFile} {
		name := versioned(snapHead.Signed.Meta[role].Version, role)
		b, err := m.get(ctx, name)
		if err != nil {
			return fail(err)
		}
		files[name] = b
		current[role] = name
	}
	rootV, rootRaw, err := m.localVersion(channelmeta.RootFile)
	if err != nil || rootRaw == nil {
		return fail(fmt.Errorf("the local root.json: %w", errors.Join(err, os.ErrNotExist)))
	}
	current[channelmeta.RootFile] = versioned(rootV, channelmeta.RootFile)
	for v := rootV + 1; ; v++ {
		name := versioned(v, channelmeta.RootFile)
		b, err := m.get(ctx, name)
		if errors.Is(err, object.ErrNotFound) {
			break
		}
		if err != nil {
			return fail(err)
		}
		files[name] = b
		current[channelmeta.RootFile] = name
	}
	if err := m.verify(ctx, rootRaw, files, tsHead.Signed.Expires, tsHead.Signed.Version); err != nil {
		return fail(err)
	}
	if _, ok := files[current[channelmeta.RootFile]]; !ok {
		files[current[channelmeta.RootFile]] = rootRaw
	}
	for role, name := range current {
		files[role] = files[name]
	}
	if err := m.install(files); err != nil {
		return false, fmt.Errorf("installing the shared channel metadata: %w", err)
	}
	m.prune(current)
	m.log.Info("channel metadata brought from object storage", zap.Int64("timestamp_version", tsHead.Signed.Version),
		zap.Int64("snapshot_version", snapV))
	return true, nil
}

// verify loads files as a device would, from the local root, at a clock
// just before the timestamp expires: what is checked is who signed them
// and that they fit together, not how fresh they are (an expired copy is
// renewed by the writer that pulled it).
func (m *metaShare) verify(ctx context.Context, root []byte, files map[string][]byte, expires time.Time, wantTS int64) error {
	tmp, err := os.MkdirTemp(filepath.Dir(m.dir), ".metadata-pull-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	stage, cache := filepath.Join(tmp, "stage"), filepath.Join(tmp, "cache")
	for _, d := range []string{stage, cache} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(stage, name), b, 0o600); err != nil {
			return err
		}
	}
	at := time.Now()
	if !expires.After(at) {
		at = expires.Add(-time.Second)
	}
	c, err := channelmeta.NewClient(channelmeta.ClientConfig{TrustedRoot: root, CacheDir: cache, Dir: stage,
		Now: func() time.Time { return at }})
	if err != nil {
		return err
	}
	st, err := c.Load(ctx)
	if err != nil {
		return fmt.Errorf("the bucket's channel metadata does not verify against this server's root: %w", err)
	}
	if st.TimestampVersion != wantTS {
		return fmt.Errorf("the bucket's channel metadata verified as timestamp version %d, not %d", st.TimestampVersion, wantTS)
	}
	return nil
}

// install writes files into the local directory in channelmeta.SortForWrite order,
// each durably (temp file, fsync, rename), skipping identical ones.
func (m *metaShare) install(files map[string][]byte) error {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	channelmeta.SortForWrite(names)
	for _, n := range names {
		p := filepath.Join(m.dir, n)
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, files[n]) {
			continue
		}
		if err := storage.WriteFile(p, files[n], 0o644); err != nil {
			return err
		}
	}
	return nil
}

// prune removes local versioned snapshot, targets and rollouts files as
// far behind the current ones (current: role file → versioned name) as
// publish.Repo prunes its own (KeepVersions); best effort, like
// publish.Repo's: a file left behind is harmless.
func (m *metaShare) prune(current map[string]string) {
	keep := int64(publish.DefaultOptions().KeepVersions)
	cur := map[string]int64{}
	for role, name := range current {
		if role == channelmeta.RootFile {
			continue // every root stays: devices walk the chain
		}
		v, _ := strconv.ParseInt(name[:len(name)-len(role)-1], 10, 64)
		cur[role] = v
	}
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		sub := metadataName.FindStringSubmatch(e.Name())
		if sub == nil || sub[1] == "" {
			continue
		}
		v, _ := strconv.ParseInt(sub[1], 10, 64)
		role := e.Name()[len(sub[1])+1:]
		if c, ok := cur[role]; ok && v <= c-keep {
			_ = os.Remove(filepath.Join(m.dir, e.Name()))
		}
	}
}

// listBucket returns the bucket's metadata files: name → ETag.
func (m *metaShare) listBucket(ctx context.Context) (map[string]string, error) {
	seen := map[string]string{}
	err := m.store.List(ctx, metaStorePrefix, func(i object.Info) error {
		name := i.Key[len(metaStorePrefix):]
		if metadataName.MatchString(name) {
			seen[name] = i.ETag
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the channel metadata in object storage: %w", err)
	}
	return seen, nil
}

// push copies the local directory's new and changed files to the bucket,
// onto the versions listed in seen (read under the same lock).
func (m *metaShare) push(ctx context.Context, seen map[string]string) error {
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return fmt.Errorf("sharing the channel metadata: %w", err)
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && metadataName.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	channelmeta.SortForWrite(names)
	written := 0
	for _, n := range names {
		fixed := metadataName.FindStringSubmatch(n)[1] != ""
		etag, inBucket := seen[n]
		if fixed && inBucket {
			continue // versioned files never change
		}
		b, err := channelmeta.ReadFileLimited(filepath.Join(m.dir, n), channelmeta.MaxFileSize)
		if err != nil {
			return fmt.Errorf("sharing the channel metadata: %w", err)
		}
		c := object.Condition{IfNoneMatch: true}
		if inBucket {
			cur, err := m.get(ctx, n)
			if err != nil {
				return fmt.Errorf("sharing the channel metadata: %w", err)
			}
			if bytes.Equal(cur, b) {
				continue
			}
			c = object.Condition{IfMatch: etag}
		}
		if _, err := m.store.Put(ctx, metaStorePrefix+n, bytes.NewReader(b), int64(len(b)), c); err != nil {
			return fmt.Errorf("sharing the channel metadata: %s: %w", n, err)
		}
		written++
	}
	if written > 0 {
		m.log.Info("channel metadata shared in object storage", zap.Int("files", written))
	}
	return nil
}

// write runs change under the cluster lock, between a pull and a push
// (see the comment at the top). With tx it joins that transaction, which
// must hold db.LockPublish already; otherwise it opens its own.
func (m *metaShare) write(ctx context.Context, tx *db.Tx, change func() error) error {
	run := func(tx *db.Tx) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		seen, err := m.listBucket(ctx)
		if err != nil {
			return err
		}
		changed, err := m.pull(ctx)
		if err != nil {
			return err
		}
		if changed && m.pulled != nil {
			m.pulled()
		}
		if err := change(); err != nil {
			return err
		}
		if err := m.push(ctx, seen); err != nil {
			return err
		}
		return tx.NoteMetadataChange(ctx)
	}
	if tx != nil {
		return run(tx)
	}
	return m.db.Tx(ctx, func(tx *db.Tx) error {
		if err := tx.LockCluster(ctx, db.LockPublish); err != nil {
			return err
		}
		return run(tx)
	})
}

// follow pulls outside the lock (a follower's read; see pull) and reports
// whether newer metadata was installed.
func (m *metaShare) follow(ctx context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	changed, err := m.pull(ctx)
	if changed && m.pulled != nil {
		m.pulled()
	}
	return changed, err
}

func versioned(v int64, name string) string { return strconv.FormatInt(v, 10) + "." + name }

// followMetadata asks metaFollowLoop for a pull (without waiting).
func (s *Server) followMetadata() {
	if s.metaFollow == nil {
		return
	}
	select {
	case s.metaFollow <- struct{}{}:
	default: // one is pending already
	}
}

// metaFollowLoop pulls the shared metadata when asked, until ctx ends.
func (s *Server) metaFollowLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.metaFollow:
		}
		if _, err := s.meta.share.follow(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("following the shared channel metadata", zap.Error(err))
		}
	}
}

// metadataPulled refreshes what the server derives from the metadata
// after a pull installed newer files.
func (s *Server) metadataPulled() {
	if err := s.meta.reloadSigned(); err != nil {
		s.log.Error("channel metadata", zap.Error(err))
	}
	if s.api != nil {
		s.api.updates.Invalidate()
	}
}
