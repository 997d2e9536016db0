package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	apiclient "github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/testserver"
	"github.com/mxos-linux/mxos-update/internal/testtool/pgtest"
)

// replicaSet is N mxos-server processes (the binary under test) on one
// PostgreSQL database, each with its own data directory, as the README
// sets replicas up; keys and tokens made with the documented commands.
type replicaSet struct {
	w       workDir
	dsn     string
	urls    []string // server URLs (without /repo)
	release string   // a release token
	admin   string   // an admin token
}

// startReplicas starts n servers on a fresh PostgreSQL database, with
// extra flags for server i from extra(i) (nil: none).
func startReplicas(t *testing.T, n int, extra func(i int) []string) *replicaSet {
	t.Helper()
	r := &replicaSet{w: workDir{t, t.TempDir()}, dsn: pgtest.Database(t)}
	w := r.w
	w.run(nil, mxosctl(), "keys", "generate", "--dir", "keys")
	w.run(nil, mxosctl(), "keys", "generate", "--dir", "online-keys")
	token := func(role string, args ...string) string {
		out := w.run(nil, mxosServer(), append([]string{"token", "create", "--data", "data-0", "--database", r.dsn, "--role", role}, args...)...)
		return strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	}
	for i := range n {
		args := []string{"--database", r.dsn, "--release-keys", filepath.Join(w.dir, "keys"),
			"--online-keys", filepath.Join(w.dir, "online-keys"), "--channels", testserver.ChannelsDir()}
		if extra != nil {
			args = append(args, extra(i)...)
		}
		repoURL := startServerBinary(t, filepath.Join(w.dir, "data-"+string(rune('0'+i))), args...)
		r.urls = append(r.urls, strings.TrimSuffix(repoURL, "/repo"))
		if i == 0 { // the schema exists once the first server runs
			r.release = token("release", "--name", "equipo")
			r.admin = token("admin", "--name", "admin")
		}
	}
	return r
}

// ctl runs mxosctl against server i with token.
func (r *replicaSet) ctl(i int, token string, args ...string) string {
	r.w.t.Helper()
	return r.w.run([]string{"MXOS_SERVER=" + r.urls[i], "MXOS_TOKEN=" + token}, mxosctl(), args...)
}

// publish publishes version to testing through server i (a tree whose
// one file names the version).
func (r *replicaSet) publish(i int, version string) string {
	r.w.t.Helper()
	src := "rootfs-" + version
	r.w.write(src+"/usr/bin/hola", "#!/bin/sh\necho hola "+version+"\n")
	return r.ctl(i, r.release, "publish", "--channel", "testing", "--version", version, "--keys", "keys", "./"+src)
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
	device, err := apiclient.New(r.urls[b], devToken)
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
