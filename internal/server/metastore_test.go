package server

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/storage/object"
)

// sharedMeta is two replicas' metadata directories (copies of one init)
// sharing one bucket and one database, driven without HTTP.
type sharedMeta struct {
	store  object.Store
	repos  [2]*publish.Repo
	shares [2]*metaShare
}

func newSharedMeta(t *testing.T) *sharedMeta {
	t.Helper()
	data := t.TempDir()
	dbStore, _ := openAPI(t, data)
	keys, relS, onS, _ := metaKeys(t)
	initDir := filepath.Join(data, "metadata-init")
	if err := publish.Init(initDir, keys, relS, relS, publish.Options{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	bucket, err := object.NewDir(filepath.Join(data, "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	s := &sharedMeta{store: bucket}
	for i := range 2 {
		dir := filepath.Join(data, "replica-"+string(rune('a'+i)), "metadata")
		copyFiles(t, initDir, dir)
		if s.repos[i], err = publish.Open(dir, onS, publish.Options{}); err != nil {
			t.Fatal(err)
		}
		s.shares[i] = &metaShare{store: bucket, db: dbStore, dir: dir, log: zap.NewNop()}
	}
	return s
}

func copyFiles(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// refresh is the periodic renewal on replica i, as refreshMetadata runs it.
func (s *sharedMeta) refresh(t *testing.T, i int, now time.Time) publish.RefreshResult {
	t.Helper()
	var res publish.RefreshResult
	if err := s.shares[i].write(context.Background(), nil, func() error {
		var err error
		res, err = s.repos[i].Refresh(now)
		return err
	}); err != nil {
		t.Fatalf("refresh on replica %d: %v", i, err)
	}
	return res
}

func (s *sharedMeta) bucketFile(t *testing.T, name string) []byte {
	t.Helper()
	return getObject(t, s.store, metaStorePrefix+name)
}

func (s *sharedMeta) putBucket(t *testing.T, name string, b []byte) {
	t.Helper()
	putObject(t, s.store, metaStorePrefix+name, b)
}

func localFile(t *testing.T, sh *metaShare, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sh.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func timestampVersion(t *testing.T, b []byte) int64 {
	t.Helper()
	h, err := parseHead(channelmeta.TimestampFile, b)
	if err != nil {
		t.Fatal(err)
	}
	return h.Signed.Version
}

// TestMetaShareRenewsOnce: the periodic renewal run by both replicas
// re-signs the online roles once for the cluster: the second replica
// pulls the first one's renewal under the lock and finds nothing due.
// Both directories then hold the bucket's files byte for byte.
func TestMetaShareRenewsOnce(t *testing.T) {
	s := newSharedMeta(t)
	now := time.Now()
	s.refresh(t, 0, now)
	first := timestampVersion(t, s.bucketFile(t, channelmeta.TimestampFile))
	// B joins a minute later: takes A's, signs nothing. (Another clock,
	// so that what B would sign differs from A's.)
	if res := s.refresh(t, 1, now.Add(time.Minute)); len(res.Resigned) > 0 {
		t.Errorf("a second replica's first refresh re-signed %v", res.Resigned)
	}
	if got := timestampVersion(t, s.bucketFile(t, channelmeta.TimestampFile)); got != first {
		t.Fatalf("a second replica's first refresh moved the timestamp from %d to %d", first, got)
	}

	later := now.Add(13 * time.Hour) // past half the timestamp's day
	if res := s.refresh(t, 1, later); len(res.Resigned) == 0 {
		t.Fatal("nothing renewed past half the timestamp's lifetime")
	}
	if res := s.refresh(t, 0, later.Add(time.Minute)); len(res.Resigned) > 0 {
		t.Errorf("the second replica to renew re-signed %v again", res.Resigned)
	}
	if got := timestampVersion(t, s.bucketFile(t, channelmeta.TimestampFile)); got != first+1 {
		t.Fatalf("two replicas renewing at once took the timestamp from %d to %d; want one renewal", first, got)
	}
	for _, f := range []string{channelmeta.TimestampFile, channelmeta.SnapshotFile, channelmeta.RolloutsFile, channelmeta.TargetsFile, channelmeta.RootFile} {
		want := s.bucketFile(t, f)
		for i, sh := range s.shares {
			if !bytes.Equal(localFile(t, sh, f), want) {
				t.Errorf("replica %d's %s differs from the bucket's", i, f)
			}
		}
	}
}

// TestMetaShareFollowRefusesBadCopies: a follower takes the bucket's
// newer metadata, and refuses a timestamp whose signature does not verify
// (its version raised without re-signing) and one older than its own,
// keeping what it served.
func TestMetaShareFollowRefusesBadCopies(t *testing.T) {
	s := newSharedMeta(t)
	ctx := context.Background()
	now := time.Now()
	s.refresh(t, 0, now)
	b := s.shares[1]
	if changed, err := b.follow(ctx); err != nil || !changed {
		t.Fatalf("follow: %v, %v; want the first copy taken", changed, err)
	}
	if !bytes.Equal(localFile(t, b, channelmeta.TimestampFile), s.bucketFile(t, channelmeta.TimestampFile)) {
		t.Fatal("the follower serves another timestamp than the bucket's")
	}
	v1 := s.bucketFile(t, channelmeta.TimestampFile)
	s.refresh(t, 0, now.Add(13*time.Hour))
	v2 := s.bucketFile(t, channelmeta.TimestampFile)
	if _, err := b.follow(ctx); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		bucket  []byte
		wantErr error
	}{
		{"version raised without re-signing", bytes.Replace(v2, []byte(`"version":2`), []byte(`"version":3`), 1), channelmeta.ErrBadSignature},
		{"an older timestamp", v1, nil},
		{"not JSON", []byte("{"), channelmeta.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if bytes.Equal(tc.bucket, v2) {
				t.Fatal("the forged timestamp is the real one")
			}
			s.putBucket(t, channelmeta.TimestampFile, tc.bucket)
			changed, err := b.follow(ctx)
			if changed {
				t.Error("the follower took the bucket's copy")
			}
			if tc.wantErr == nil && err != nil {
				t.Errorf("follow: %v, want no error", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("follow: %v, want %v", err, tc.wantErr)
			}
			if !bytes.Equal(localFile(t, b, channelmeta.TimestampFile), v2) {
				t.Error("the follower's timestamp changed")
			}
		})
	}
}

// TestMetaShareFollowerPrunes: a replica that only follows keeps as many
// versioned files as one that signs (publish.Options.KeepVersions), and
// every root.
func TestMetaShareFollowerPrunes(t *testing.T) {
	s := newSharedMeta(t)
	ctx := context.Background()
	now := time.Now()
	keep := publish.DefaultOptions().KeepVersions
	for range keep + 4 {
		if err := s.shares[0].write(ctx, nil, func() error { return s.repos[0].PublishRollouts(nil, now) }); err != nil {
			t.Fatal(err)
		}
		if _, err := s.shares[1].follow(ctx); err != nil {
			t.Fatal(err)
		}
	}
	names := func(dir string) map[string]bool {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, e := range ents {
			out[e.Name()] = true
		}
		return out
	}
	follower := names(s.shares[1].dir)
	if !follower["1.root.json"] || !follower[versioned(int64(keep+4), channelmeta.RolloutsFile)] {
		t.Fatalf("the follower lacks the root or the current rollouts: %v", follower)
	}
	for n := 1; n <= 4; n++ {
		if name := versioned(int64(n), channelmeta.RolloutsFile); follower[name] {
			t.Errorf("the follower keeps %s, %d versions behind", name, keep+4-n)
		}
	}
	if name := versioned(5, channelmeta.RolloutsFile); !follower[name] {
		t.Errorf("the follower pruned %s, only %d versions behind", name, keep-1)
	}
}

// FuzzParseHead: the bucket's bytes never panic the pull's first read,
// and what it accepts has a version of at least 1.
func FuzzParseHead(f *testing.F) {
	f.Add([]byte(`{"signed":{"_type":"timestamp","version":3,"expires":"2030-01-01T00:00:00Z","meta":{"snapshot.json":{"version":7}}},"signatures":[]}`))
	f.Add([]byte(`{"signed":{"version":0}}`))
	f.Add([]byte(`{"signed":{"version":-1,"meta":null}}`))
	f.Add([]byte(`{"signed":{"version":1e30}}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHead("timestamp.json", b)
		if err == nil && h.Signed.Version < 1 {
			t.Fatalf("accepted version %d", h.Signed.Version)
		}
		if err != nil && !errors.Is(err, channelmeta.ErrMalformed) {
			t.Fatalf("error of no kind: %v", err)
		}
	})
}
