package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	apiclient "github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/storage/storagetest"
	"github.com/mxos-linux/mxos-update/internal/testserver"
	"github.com/mxos-linux/mxos-update/internal/testtool/e2ekit"
)

// replicaSet is N mxos-server processes on one PostgreSQL database
// (e2ekit.Replicas).
type replicaSet struct {
	*e2ekit.Replicas
	w       workDir
	dsn     string
	release string // a release token
	admin   string // an admin token
}

// startReplicas starts n servers on a fresh PostgreSQL database, with
// extra flags for server i from extra(i) (nil: none).
func startReplicas(t *testing.T, n int, extra func(i int) []string) *replicaSet {
	t.Helper()
	k := e2ekit.StartReplicas(t, n, extra, nil)
	return &replicaSet{Replicas: k, w: workDir{t, k.W.Dir}, dsn: k.DSN, release: k.Release, admin: k.Admin}
}

// ctl runs mxosctl against server i with token.
func (r *replicaSet) ctl(i int, token string, args ...string) string {
	r.w.t.Helper()
	return r.Ctl(i, token, args...)
}

// publish publishes version to testing through server i (a tree whose
// one file names the version).
func (r *replicaSet) publish(i int, version string) string {
	r.w.t.Helper()
	out, err := r.tryPublish(i, "x86_64", version)
	if err != nil {
		r.w.t.Fatalf("mxosctl publish %s through server %d: %v\n%s", version, i, err, out)
	}
	return out
}

// tryPublish publishes version for arch to testing through server i,
// from its own work repository (so several may run at once).
func (r *replicaSet) tryPublish(i int, arch, version string) (string, error) {
	src := "rootfs-" + arch + "-" + version
	r.w.write(src+"/usr/bin/hola", "#!/bin/sh\necho hola "+arch+" "+version+"\n")
	return r.w.try([]string{"MXOS_SERVER=" + r.URLs[i], "MXOS_TOKEN=" + r.release}, mxosctl(), "publish", "--channel", "testing",
		"--arch", arch, "--version", version, "--keys", "keys", "--work", "work-"+src, "./"+src)
}

// TestReplicasFollowChanges: two mxos-server processes on one
// PostgreSQL; a pin, a device's group and a rollout halt set through
// replica A are obeyed by a device checking through replica B within
// 2 s (the cache change feed, internal/changefeed), and so are their
// undoing.
func TestReplicasFollowChanges(t *testing.T) {
	r := startReplicas(t, 2, nil)
	const a, b = 0, 1
	r.publish(a, "10.0.1")
	r.ctl(a, r.release, "rollout", "complete", "--channel", "testing", "--arch", "x86_64")
	r.publish(a, "10.0.2") // testing ramps to 100% at once

	const dev = "0123456789abcdef0123456789abcdef"
	devToken := strings.TrimSpace(strings.SplitN(r.w.run(nil, mxosServer(), "token", "create", "--data", "data-0", "--database", r.dsn,
		"--role", "device", "--device", dev, "--name", "pc07"), "\n", 2)[0])
	device, err := apiclient.New(r.URLs[b], devToken)
	if err != nil {
		t.Fatal(err)
	}
	check := func() api.CheckResponse {
		t.Helper()
		resp, err := device.Check(context.Background(), api.CheckRequest{DeviceID: dev, Arch: "x86_64", Channel: "testing", Version: "10.0.1"})
		if err != nil {
			t.Fatalf("check through replica B: %v", err)
		}
		return resp
	}
	offered := func(resp api.CheckResponse) bool {
		return resp.Update && resp.Target != nil && resp.Target.Version == "10.0.2"
	}
	// within waits until B's answer is want, at most limit after the
	// change was made through A.
	within := func(what string, limit time.Duration, want bool) {
		t.Helper()
		start := time.Now()
		for {
			resp := check()
			if offered(resp) == want {
				t.Logf("%s: obeyed through replica B after %v", what, time.Since(start).Round(time.Millisecond))
				return
			}
			if time.Since(start) > limit {
				t.Fatalf("%s: replica B still answers %+v after %v (want offered=%v)", what, resp, limit, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	const limit = 2 * time.Second
	within("the new release", 10*time.Second, true) // B registers the device

	r.ctl(a, r.admin, "pin", "--device", dev, "--version", "10.0.1")
	within("a device pin holding 10.0.1", limit, false)
	r.ctl(a, r.admin, "unpin", "--device", dev)
	within("the device unpinned", limit, true)

	// A group pin first, while the device is in no group: then only the
	// device's group changes.
	r.ctl(a, r.admin, "pin", "--group", "lab3", "--version", "10.0.1")
	time.Sleep(limit)
	if resp := check(); !offered(resp) {
		t.Fatalf("a pin of a group the device is not in held it: %+v", resp)
	}
	r.ctl(a, r.admin, "group", "--device", dev, "--group", "lab3")
	within("the device put in the pinned group", limit, false)
	r.ctl(a, r.admin, "group", "--device", dev, "--group", "")
	within("the device taken out of the group", limit, true)

	r.ctl(a, r.release, "rollout", "halt", "--channel", "testing", "--arch", "x86_64", "--reason", "reports of broken wifi")
	within("the rollout halted", limit, false)
	r.ctl(a, r.release, "rollout", "resume", "--channel", "testing", "--arch", "x86_64")
	within("the rollout resumed", limit, true)
}

// TestReplicasPublishConcurrently: two mxos-server processes on one
// PostgreSQL and one S3 bucket (versitygw), each with its own data
// directory, receive a publish at the same time (testing for x86_64
// through A, for aarch64 through B, after an earlier x86_64 release
// through A that B's data directory never saw). Both releases end up in
// the bucket's refs and signed summary, whichever went first: stock
// ostree, verifying commits and summary with GPG, pulls both refs'
// final heads through either replica, and fsck is clean. A replica
// restarted on its stale data directory leaves the bucket's summary as
// it is.
func TestReplicasPublishConcurrently(t *testing.T) {
	requireOstreeGPG(t)
	s3 := storagetest.StartS3(t)
	bucket := s3.Bucket(t)
	conf, _ := s3.StorageFile(t, bucket.Bucket)
	r := startReplicas(t, 2, func(int) []string { return []string{"--storage", conf} })
	const a, b = 0, 1
	r.publish(a, "10.0.1")
	r.ctl(a, r.release, "rollout", "complete", "--channel", "testing", "--arch", "x86_64")

	// A copy of A's repository as it is now, for a replica started later
	// on this stale copy.
	for _, d := range []string{"data-2", "data-3"} {
		copyDir(t, filepath.Join(r.w.dir, "data-0", "repo"), filepath.Join(r.w.dir, d, "repo"))
	}

	var wg sync.WaitGroup
	outs, errs := make([]string, 2), make([]error, 2)
	for i, arch := range []string{"x86_64", "aarch64"} {
		version := map[string]string{"x86_64": "10.0.2", "aarch64": "10.0.1"}[arch]
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = r.tryPublish(i, arch, version)
		}()
	}
	wg.Wait()
	for i := range errs {
		if errs[i] != nil {
			t.Fatalf("concurrent publish through server %d: %v\n%s", i, errs[i], outs[i])
		}
	}

	// The final heads, as the database recorded them.
	ctx := context.Background()
	admin, err := apiclient.New(r.URLs[a], r.admin)
	if err != nil {
		t.Fatal(err)
	}
	heads := map[string]string{}
	for _, arch := range []string{"x86_64", "aarch64"} {
		rels, err := admin.Releases(ctx, "testing", arch)
		if err != nil || len(rels) == 0 {
			t.Fatalf("releases of testing/%s: %v %v", arch, rels, err)
		}
		newest := rels[0]
		for _, rel := range rels {
			if rel.PublishedAt.After(newest.PublishedAt) {
				newest = rel
			}
		}
		heads["mxos/10/"+arch+"/testing"] = newest.Commit
	}
	summary := func(i int) []byte { return httpGet(t, r.URLs[i]+"/repo/summary") }
	if !bytes.Equal(summary(a), summary(b)) {
		t.Fatal("the replicas serve different summaries from one bucket")
	}
	checkSummary := func(what string) {
		t.Helper()
		sum, err := ostree.ParseSummary(summary(a))
		if err != nil {
			t.Fatal(err)
		}
		for ref, want := range heads {
			got, ok := sum.Lookup(ref)
			if !ok || got.Checksum.String() != want {
				t.Errorf("%s: the bucket's summary names %s for %s (listed %v), want %s", what, got.Checksum, ref, ok, want)
			}
		}
	}
	checkSummary("after the concurrent publishes")

	env := toolEnv(t)
	for i := range r.URLs {
		cl := newClient(t, env, r.URLs[i]+"/repo", gpgRemote(filepath.Join(r.w.dir, "keys", "openpgp.pub.asc"))...)
		cl.mustRun("remote", "gpg-import", "--keyring="+filepath.Join(r.w.dir, "online-keys", "openpgp.pub.asc"), "origin")
		for ref, want := range heads {
			cl.mustRun("pull", "origin", ref)
			if got := cl.revParse("origin:" + ref); got != want {
				t.Errorf("stock pull of %s through replica %d got %s, want %s", ref, i, got, want)
			}
		}
		cl.mustRun("fsck")
	}

	// A third replica started on the stale copy of A's repository (its
	// summary and x86_64 ref are those of 10.0.1, it has no aarch64)
	// brings the newer refs in and writes nothing to the bucket.
	before := summary(a)
	startServerBinary(t, filepath.Join(r.w.dir, "data-2"), "--database", r.dsn, "--release-keys", filepath.Join(r.w.dir, "keys"),
		"--online-keys", filepath.Join(r.w.dir, "online-keys"), "--channels", testserver.ChannelsDir(), "--storage", conf)
	if !bytes.Equal(summary(a), before) {
		t.Error("a replica starting on a stale data directory changed the bucket's summary")
	}
	checkSummary("after a replica started on a stale data directory")
	// So does a replica that only serves (no online keys: it cannot
	// publish, so it does not sync either).
	startServerBinary(t, filepath.Join(r.w.dir, "data-3"), "--database", r.dsn, "--release-keys", filepath.Join(r.w.dir, "keys"),
		"--channels", testserver.ChannelsDir(), "--storage", conf)
	if !bytes.Equal(summary(a), before) {
		t.Error("a serving replica starting on a stale data directory changed the bucket's summary")
	}
	for ref, want := range heads {
		got, err := os.ReadFile(filepath.Join(r.w.dir, "data-2", "repo", "refs", "heads", ref))
		if err != nil || strings.TrimSpace(string(got)) != want {
			t.Errorf("the restarted replica's %s = %q, %v; want %s (brought from the bucket)", ref, got, err, want)
		}
	}
}
