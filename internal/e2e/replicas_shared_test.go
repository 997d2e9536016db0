package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/rollout"
	"github.com/mxos-linux/mxos-update/internal/storage/storagetest"
	"github.com/mxos-linux/mxos-update/internal/testserver"
)

// Replicas on one PostgreSQL and one S3 bucket share what used to live on
// one replica's disk: the signed channel metadata and the static deltas
// (internal/server, metastore.go and repodeltas.go).

// shareLimit is how soon a change made through one replica must be served
// by every other.
const shareLimit = 2 * time.Second

// sharedReplicas is a replicaSet whose servers share one bucket.
type sharedReplicas struct {
	*replicaSet
	conf string // the --storage file
	meta bool   // signed channel metadata on
}

// startSharedReplicas starts two replicas (A and B: r.URLs[0] and [1])
// on one database and one bucket, with signed channel metadata on when
// meta is set, as the README sets them up: mxosctl metadata init once,
// the directory copied into every replica's data directory before it
// first starts. (startReplicas makes the keys, the database and the
// tokens, with one replica of its own that then stays idle.)
func startSharedReplicas(t *testing.T, meta bool) *sharedReplicas {
	t.Helper()
	s3 := storagetest.StartS3(t)
	bucket := s3.Bucket(t)
	conf, _ := s3.StorageFile(t, bucket.Bucket)
	r := &sharedReplicas{replicaSet: startReplicas(t, 1, func(int) []string { return []string{"--storage", conf} }), conf: conf, meta: meta}
	if meta {
		r.w.run(nil, mxosctl(), "metadata", "init", "--keys", "keys", "--online-pub", "online-keys", "--out", "metadata-init")
	}
	r.URLs = nil
	for _, name := range []string{"data-a", "data-b"} {
		r.URLs = append(r.URLs, r.start(t, name))
	}
	return r
}

// start starts a replica on the data directory name (in the work
// directory), with a copy of the metadata as mxosctl metadata init wrote
// it, and returns its URL.
func (r *sharedReplicas) start(t *testing.T, name string) string {
	t.Helper()
	w := r.w
	data := filepath.Join(w.dir, name)
	if r.meta {
		copyDir(t, filepath.Join(w.dir, "metadata-init"), filepath.Join(data, "metadata"))
	}
	u := startServerBinary(t, data, "--database", r.dsn, "--release-keys", filepath.Join(w.dir, "keys"),
		"--online-keys", filepath.Join(w.dir, "online-keys"), "--channels", testserver.ChannelsDir(), "--storage", r.conf)
	return strings.TrimSuffix(u, "/repo")
}

// metaWatch polls timestamp.json through every replica and records what
// each served, to check that versions never go back and that one version
// never has two contents.
type metaWatch struct {
	mu       sync.Mutex
	last     []int64            // per replica: the last version served
	back     []string           // versions that went back
	contents map[int64][32]byte // version → SHA-256 of the file
	forks    []string           // versions served with two contents
	stop     chan struct{}
	done     chan struct{}
}

type tufVersion struct {
	Signed struct {
		Version int64 `json:"version"`
	} `json:"signed"`
}

func fetchTimestamp(url string) (int64, []byte, error) {
	resp, err := http.Get(url + "/metadata/timestamp.json")
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, nil, err
	}
	var v tufVersion
	if err := json.Unmarshal(b, &v); err != nil {
		return 0, nil, err
	}
	return v.Signed.Version, b, nil
}

func watchMetadata(urls []string) *metaWatch {
	w := &metaWatch{last: make([]int64, len(urls)), contents: map[int64][32]byte{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			for i, u := range urls {
				v, b, err := fetchTimestamp(u)
				if err != nil || v == 0 {
					continue
				}
				w.note(i, v, b)
			}
			select {
			case <-w.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *metaWatch) note(i int, v int64, b []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if v < w.last[i] {
		w.back = append(w.back, "replica "+string(rune('A'+i))+": "+itoa(w.last[i])+" then "+itoa(v))
	}
	w.last[i] = max(w.last[i], v)
	sum := sha256.Sum256(b)
	if prev, ok := w.contents[v]; ok && prev != sum {
		w.forks = append(w.forks, itoa(v))
	}
	w.contents[v] = sum
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// check stops the watch and fails on any version gone back or forked.
func (w *metaWatch) check(t *testing.T) {
	t.Helper()
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.back) > 0 {
		t.Errorf("a replica served an older timestamp after a newer one: %v", w.back)
	}
	if len(w.forks) > 0 {
		t.Errorf("timestamp versions served with two different contents: %v", w.forks)
	}
	if len(w.contents) < 3 {
		t.Errorf("the watch saw only %d timestamp versions", len(w.contents))
	}
}

// sameMetadata waits until every replica serves the timestamp replica
// from serves, at most limit, and reports how long it took.
func (r *replicaSet) sameMetadata(t *testing.T, what string, from int, limit time.Duration) {
	t.Helper()
	start := time.Now()
	_, want, err := fetchTimestamp(r.URLs[from])
	if err != nil || want == nil {
		t.Fatalf("%s: timestamp.json through replica %d: %v", what, from, err)
	}
	for {
		same := true
		for i, u := range r.URLs {
			if i == from {
				continue
			}
			_, got, _ := fetchTimestamp(u)
			same = same && bytes.Equal(got, want)
		}
		if same {
			t.Logf("%s: every replica serves the new timestamp after %v", what, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: the replicas still serve different timestamps %v after the change", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReplicasShareSignedMetadata: two replicas on one PostgreSQL and one
// bucket, signed channel metadata on (mxosctl metadata init once, the
// directory copied to each replica). Releases are published and a
// rollout halted through replica A; within 2 s replica B serves the very
// same timestamp, and a real mxos-updater configured with B only (release
// public keys and root.json, the documented setup) installs each release
// and obeys the halt, B's metadata verifying with the device's own client.
// A release published through B then continues A's versions. Throughout,
// no replica ever serves an older timestamp than it served before, no
// timestamp version exists with two contents, and at the end every role
// is byte for byte the same through A, B and a third replica started
// then on the metadata as init wrote it.
func TestReplicasShareSignedMetadata(t *testing.T) {
	r := startSharedReplicas(t, true)
	const a, b = 0, 1
	w := r.w
	watch := watchMetadata(r.URLs)

	w.write("device/keys/ed25519.pub", w.read("keys/ed25519.pub"))
	w.write("device/keys/openpgp.pub.asc", w.read("keys/openpgp.pub.asc"))
	w.write("device/keys/root.json", w.read("metadata-init/root.json"))
	devToken := strings.TrimSpace(strings.SplitN(w.run(nil, mxosServer(), "token", "create", "--data", "data-0", "--database", r.dsn,
		"--role", "device", "--name", "aulas"), "\n", 2)[0])
	w.write("device/token", devToken+"\n")
	w.write("device/config.yaml", strings.Join([]string{"server: " + r.URLs[b], "token_file: device/token", "device_id: lab3-pc07",
		"channel: testing", "arch: x86_64", "trusted_keys: device/keys", "trusted_root: device/keys/root.json",
		"sysroot: device/sysroot"}, "\n")+"\n")
	updater := func(args ...string) (string, error) {
		return w.try(nil, mxosUpdater(t), append([]string{"--config", "device/config.yaml"}, args...)...)
	}
	install := func(version string) {
		t.Helper()
		out, err := updater("upgrade")
		if err != nil || !strings.Contains(out, "Version "+version+" is installed") {
			t.Fatalf("upgrade to %s through replica B: %v\n%s", version, err, out)
		}
	}

	for i, version := range []string{"10.0.1", "10.0.2"} {
		if i > 0 {
			r.ctl(a, r.release, "rollout", "complete", "--channel", "testing", "--arch", "x86_64")
		}
		r.publish(a, version)
		r.sameMetadata(t, "published "+version+" through A", a, shareLimit)
		install(version)
	}

	r.ctl(a, r.release, "rollout", "complete", "--channel", "testing", "--arch", "x86_64")
	r.publish(a, "10.0.3")
	r.sameMetadata(t, "published 10.0.3 through A", a, shareLimit)
	r.ctl(a, r.release, "rollout", "halt", "--channel", "testing", "--arch", "x86_64", "--reason", "reports of broken wifi")
	r.sameMetadata(t, "halted through A", a, shareLimit)
	if out, err := updater("check"); err == nil || !strings.Contains(out, "No update") {
		t.Fatalf("check through replica B after the halt through A: %v\n%s", err, out)
	}
	// B's metadata, verified as a device verifies it, says halted.
	c, err := channelmeta.NewClient(channelmeta.ClientConfig{TrustedRoot: []byte(w.read("metadata-init/root.json")),
		CacheDir: t.TempDir(), URL: r.URLs[b] + "/metadata/"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Load(context.Background())
	if err != nil {
		t.Fatalf("replica B's metadata does not verify: %v", err)
	}
	if ro, ok := st.Rollout("testing", "x86_64"); !ok || ro.State != rollout.StateHalted || ro.Version != "10.0.3" {
		t.Fatalf("replica B's signed rollout of testing/x86_64: %+v (listed %v), want 10.0.3 halted", ro, ok)
	}

	// Two changes back to back through different replicas: B's signs
	// after A's, whether or not B had followed A's yet.
	r.ctl(a, r.release, "rollout", "resume", "--channel", "testing", "--arch", "x86_64")
	r.ctl(b, r.release, "rollout", "halt", "--channel", "testing", "--arch", "x86_64", "--reason", "still broken")
	r.sameMetadata(t, "resumed through A, halted again through B", b, shareLimit)
	for i, u := range r.URLs {
		c, err := channelmeta.NewClient(channelmeta.ClientConfig{TrustedRoot: []byte(w.read("metadata-init/root.json")),
			CacheDir: t.TempDir(), URL: u + "/metadata/"})
		if err != nil {
			t.Fatal(err)
		}
		st2, err := c.Load(context.Background())
		if err != nil {
			t.Fatalf("replica %d's metadata does not verify: %v", i, err)
		}
		if ro, _ := st2.Rollout("testing", "x86_64"); ro.State != rollout.StateHalted || ro.HaltReason != "still broken" ||
			st2.RolloutsVersion <= st.RolloutsVersion+1 {
			t.Fatalf("replica %d signs rollouts version %d: %+v; want B's halt after A's resume (above version %d)",
				i, st2.RolloutsVersion, ro, st.RolloutsVersion+1)
		}
	}

	// Through B now: its targets build on A's (mxosctl reads them from B).
	r.publish(b, "10.0.4")
	r.sameMetadata(t, "published 10.0.4 through B", b, shareLimit)
	install("10.0.4")

	watch.check(t)
	// A third replica, started now on the metadata as init wrote it,
	// serves the cluster's from its first request.
	urlC := r.start(t, "data-c")
	for _, f := range []string{"root.json", "timestamp.json", "snapshot.json", "targets.json", "rollouts.json"} {
		want := httpGet(t, r.URLs[a]+"/metadata/"+f)
		for name, u := range map[string]string{"B": r.URLs[b], "C (new)": urlC} {
			if !bytes.Equal(httpGet(t, u+"/metadata/"+f), want) {
				t.Errorf("replicas A and %s serve different %s", name, f)
			}
		}
	}
}

// TestReplicasShareStaticDeltas: a static delta made through replica A
// (testing/x86_64 10.0.1 → 10.0.2) stays in the summary after a release
// on another ref (testing/aarch64) is published through replica B, whose
// data directory never saw it: B's sync brings it in, verified, and the
// stock ostree client, verifying commits and summary with GPG, updates
// from 10.0.1 to 10.0.2 through B with --require-static-deltas.
func TestReplicasShareStaticDeltas(t *testing.T) {
	requireOstreeGPG(t)
	r := startSharedReplicas(t, false)
	const a, b = 0, 1
	r.publish(a, "10.0.1")
	r.ctl(a, r.release, "rollout", "complete", "--channel", "testing", "--arch", "x86_64")
	r.publish(a, "10.0.2")
	const ref = "mxos/10/x86_64/testing"
	sum, err := ostree.ParseSummary(httpGet(t, r.URLs[a]+"/repo/summary"))
	if err != nil {
		t.Fatal(err)
	}
	deltas, err := ostree.ParseDeltaIndex(sum.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	head, _ := sum.Lookup(ref)
	var upd ostree.DeltaID
	for id := range deltas {
		if id.To == head.Checksum && !id.From.IsZero() {
			upd = id
		}
	}
	if upd.To.IsZero() {
		t.Fatalf("publishing 10.0.2 through A made no delta from 10.0.1: %v", deltas)
	}
	if _, err := os.Stat(filepath.Join(r.w.dir, "data-b", "repo", filepath.FromSlash(upd.SuperblockPath()))); err == nil {
		t.Fatal("replica B has A's delta before it published anything: the test proves nothing")
	}

	if out, err := r.tryPublish(b, "aarch64", "10.0.1"); err != nil {
		t.Fatalf("publish aarch64 through B: %v\n%s", err, out)
	}
	sum, err = ostree.ParseSummary(httpGet(t, r.URLs[b]+"/repo/summary"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sum.Lookup("mxos/10/aarch64/testing"); !ok {
		t.Fatal("the summary after B's publish does not list B's release")
	}
	after, err := ostree.ParseDeltaIndex(sum.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := after[upd]; !ok || got != deltas[upd] {
		t.Fatalf("the summary B wrote lists %v; want A's delta %s (superblock %s)", after, upd.Name(), deltas[upd])
	}

	cl := newDeltaClient(t, r.URLs[b]+"/repo", filepath.Join(r.w.dir, "keys", "openpgp.pub.asc"))
	cl.mustRun("remote", "gpg-import", "--keyring="+filepath.Join(r.w.dir, "online-keys", "openpgp.pub.asc"), "origin")
	cl.mustRun("pull", "--disable-static-deltas", "origin", ref+"@"+upd.From.String())
	out := cl.mustRun("pull", "--require-static-deltas", "origin", ref)
	t.Logf("update through B: %s", strings.TrimSpace(out))
	if got := cl.revParse("origin:" + ref); got != upd.To.String() {
		t.Fatalf("stock pull through B got %s, want 10.0.2 %s", got, upd.To)
	}
	if out := cl.mustRun("fsck"); !strings.Contains(out, "no errors found") {
		t.Errorf("ostree fsck after the delta pull:\n%s", out)
	}
}
