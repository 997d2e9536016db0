package updater

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
	"github.com/mxos-linux/mxos-update/internal/testserver"
)

// The attacks of a hostile update server (or mirror, or proxy) on a
// device, each its own test: a real server with signed channel metadata
// behind a proxy on 127.0.0.1 that rewrites what the device sees. Every
// attack must end in a clear error and leave the device exactly as it was
// (see hostileEnv.snapshot) with a local store that fscks clean.

const (
	testingRefH = "mxos/10/x86_64/testing"
	stableRefH  = "mxos/10/x86_64/stable"
)

// hostileEnv is a server with signed channel metadata, a proxy in front
// of it and a device (following stable) that runs 10.0.2, installed by
// the agent itself and booted healthy.
type hostileEnv struct {
	t         *testing.T
	ctx       context.Context
	upstream  string // the honest server
	proxy     string // what the device talks to
	meta      *publish.Repo
	relMeta   []signature.Signer // release key as TUF signers
	signers   []sign.Signer      // release key (commits)
	online    []sign.Signer      // online key (the summary; a thief's)
	onlineDir string             // the online public keys (insecure_no_metadata)
	rem       *release.Remote
	admin     *client.Client
	agent     *Agent
	out       *bytes.Buffer
	local     *ostree.Repo
	verifier  []sign.Verifier
	// commits: "stable/10.0.2" -> commit
	commits map[string]string

	// allowEscape lets publish commit escaping symlinks (a careless build).
	allowEscape bool
	// prepare, when set, runs after the "before" snapshot (a clock change).
	prepare func()

	mu   sync.Mutex
	hook func(w http.ResponseWriter, r *http.Request) bool
}

func newHostileEnv(t *testing.T) *hostileEnv {
	t.Helper()
	ctx := context.Background()
	// Set up as the README says: the server signs the summary with its
	// online key; the device trusts the release keys and root.json.
	ts := testserver.Start(t, testserver.Options{Metadata: true, OnlineSummaryKey: true, Serve: true,
		Roles: []auth.Role{auth.RoleRelease, auth.RoleDevice}})
	e := &hostileEnv{t: t, ctx: ctx, commits: map[string]string{}, out: &bytes.Buffer{},
		signers: ts.Release.Signers, online: ts.Online.Signers, onlineDir: publicDir(t, ts.Online.Dir),
		verifier: ts.Release.Verifiers, relMeta: ts.MetaSigners, meta: ts.Meta}
	relDir, metaDir, tokens := ts.Release.Dir, ts.MetaDir, ts.Tokens
	e.upstream = ts.URL
	waitReady(t, e.upstream)

	up, _ := url.Parse(e.upstream)
	rp := httputil.NewSingleHostReverseProxy(up)
	px := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		h := e.hook
		e.mu.Unlock()
		if h != nil && h(w, r) {
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(px.Close)
	e.proxy = px.URL

	rc := ts.Client(t, auth.RoleRelease)
	work, err := ostree.Create(filepath.Join(t.TempDir(), "work"))
	if err != nil {
		t.Fatal(err)
	}
	e.admin = rc
	e.rem = &release.Remote{Server: rc, Work: work, Signers: e.signers, MetaSigners: e.relMeta}

	// The device.
	root := filepath.Join(t.TempDir(), "sysroot")
	sys, err := sysroot.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if e.local, err = ostree.Create(sys.RepoPath()); err != nil {
		t.Fatal(err)
	}
	healthDir := filepath.Join(t.TempDir(), "health")
	writeCheck(t, healthDir, 0)
	rootJSON := filepath.Join(t.TempDir(), "root.json")
	b, err := os.ReadFile(filepath.Join(metaDir, "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rootJSON, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig([]byte("server: " + e.proxy + "\ndevice_id: lab-pc-07\nchannel: stable\narch: x86_64\ntrusted_keys: " + relDir +
		"\ntrusted_root: " + rootJSON + "\nsysroot: " + root + "\nhealth_dir: " + healthDir + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	dev, err := client.New(e.proxy, tokens[auth.RoleDevice])
	if err != nil {
		t.Fatal(err)
	}
	e.agent = &Agent{Cfg: cfg, Client: dev, Sys: sys, Repo: e.local, Out: e.out,
		// These attacks target loose objects, so static deltas are off
		// (hostile deltas: internal/ostree/pull TestPullRefusesHostileDeltas).
		Puller: &pull.Puller{URLs: cfg.Mirrors, Verifiers: e.verifier, MaxObjectSize: 1 << 20,
			Timeout: 30 * time.Second, Grace: 500 * time.Millisecond, MinBytesPerSecond: 4096, NoDeltas: true}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(e.out.String())
		}
	})

	// Installed with 10.0.1 (by hand: a device with nothing deployed is
	// not answered), then upgraded by the agent to 10.0.2 and booted.
	e.release("10.0.1", nil)
	installByHand(t, e.agent, stableRefH, "10.0.1")
	e.release("10.0.2", nil)
	if changed, err := e.agent.Upgrade(ctx); err != nil || !changed {
		t.Fatalf("upgrade to 10.0.2: %v %v", changed, err)
	}
	if err := e.agent.Boot(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.agent.Status(ctx); st.Current == nil || st.Current.Version != "10.0.2" {
		t.Fatalf("not on 10.0.2: %+v", st)
	}
	return e
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if r, err := http.Get(base + "/metadata/timestamp.json"); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("server did not publish its channel metadata")
}

// tree writes a small OS tree for version; extra adds or replaces files
// (a value starting with "->" makes a symlink).
func (e *hostileEnv) tree(version string, extra map[string]string) string {
	e.t.Helper()
	src := filepath.Join(e.t.TempDir(), "src")
	files := map[string]string{
		"usr/etc/os-release": "NAME=MxOS\nVERSION_ID=" + version + "\n",
		"usr/bin/hello":      "#!/bin/sh\necho " + version + "\n",
		"usr/lib/static":     "same in every version\n",
	}
	for k, v := range extra {
		files[k] = v
	}
	for p, c := range files {
		full := filepath.Join(src, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			e.t.Fatal(err)
		}
		var err error
		if target, ok := strings.CutPrefix(c, "->"); ok {
			err = os.Symlink(target, full)
		} else {
			err = os.WriteFile(full, []byte(c), 0o644)
		}
		if err != nil {
			e.t.Fatal(err)
		}
	}
	return src
}

// publish publishes version on testing only.
func (e *hostileEnv) publish(version string, extra map[string]string) {
	e.t.Helper()
	u0 := uint32(0)
	_, sum, err := e.rem.Publish(e.ctx, release.RemoteRequest{Channel: "testing", Arch: "x86_64", Ref: testingRefH,
		Version: version, Source: e.tree(version, extra), Ramp: "none",
		Options: ostree.CommitOptions{OwnerUID: &u0, OwnerGID: &u0, NoXattrs: true, AllowEscapingSymlinks: e.allowEscape}})
	if err != nil {
		e.t.Fatalf("publish %s: %v", version, err)
	}
	e.commits["testing/"+version] = sum.String()
}

// release publishes version on testing and promotes it to stable.
func (e *hostileEnv) release(version string, extra map[string]string) {
	e.t.Helper()
	e.publish(version, extra)
	ros, err := e.admin.Rollouts(e.ctx, "stable")
	if err != nil {
		e.t.Fatal(err)
	}
	for _, ro := range ros {
		if ro.State == "active" {
			if _, err := e.admin.RolloutAction(e.ctx, ro.ID, client.ActionComplete, "next release"); err != nil {
				e.t.Fatal(err)
			}
		}
	}
	_, sum, err := e.rem.Promote(e.ctx, "testing", "stable", "x86_64", stableRefH, version, "100%")
	if err != nil {
		e.t.Fatalf("promote %s: %v", version, err)
	}
	e.commits["stable/"+version] = sum.String()
}

// insecure switches the device to insecure_no_metadata (with online_keys)
// until the returned function is called.
func (e *hostileEnv) insecure() func() {
	c := e.agent.Cfg
	old := *c
	c.TrustedRoot, c.InsecureNoMetadata, c.OnlineKeys = "", true, e.onlineDir
	if err := c.Validate(); err != nil {
		e.t.Fatal(err)
	}
	return func() { *c = old }
}

func (e *hostileEnv) setHook(h func(w http.ResponseWriter, r *http.Request) bool) {
	e.mu.Lock()
	e.hook = h
	e.mu.Unlock()
}

// get fetches path from the honest server.
func (e *hostileEnv) get(path string) []byte {
	e.t.Helper()
	r, err := http.Get(e.upstream + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil || r.StatusCode != http.StatusOK {
		e.t.Fatalf("GET %s: %d %v", path, r.StatusCode, err)
	}
	return b
}

// offer makes the proxy answer every check with target.
func offer(target api.Target) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/api/v1/check" {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(api.CheckResponse{Update: true, Target: &target, Reason: "eligible"})
		return true
	}
}

// overlay serves the given repository paths from memory.
func overlay(files map[string][]byte) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		b, ok := files[strings.TrimPrefix(r.URL.Path, "/repo/")]
		if ok {
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			w.Write(b)
		}
		return ok
	}
}

func chain(hs ...func(w http.ResponseWriter, r *http.Request) bool) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		for _, h := range hs {
			if h(w, r) {
				return true
			}
		}
		return false
	}
}

// deviceState is everything an attack must leave untouched.
type deviceState struct {
	Current, Previous, Booted, Pending string
	Files                              map[string]string // agent and sysroot state, trusted metadata: name -> sha256
	Deployments                        []string
	Refs                               map[string]ostree.Checksum // the local repository's refs
}

func (e *hostileEnv) snapshot() deviceState {
	e.t.Helper()
	s := e.agent.Sys
	var st deviceState
	if d, err := s.Current(); err == nil {
		st.Current = d.Name
	}
	if d, err := s.Previous(); err == nil {
		st.Previous = d.Name
	}
	if d, err := s.Booted(); err == nil {
		st.Booted = d.Name
	}
	st.Pending, _ = s.PendingBoot()
	st.Files = map[string]string{}
	hash := func(name, p string) {
		b, err := os.ReadFile(p)
		if err != nil {
			st.Files[name] = "error: " + err.Error()
			return
		}
		sum := sha256.Sum256(b)
		st.Files[name] = hex.EncodeToString(sum[:])
	}
	hash(StateFile, filepath.Join(s.Root(), StateFile))
	hash("state.json", filepath.Join(s.Root(), "state.json"))
	ents, _ := os.ReadDir(filepath.Join(s.Root(), MetadataDir))
	for _, en := range ents {
		hash(MetadataDir+"/"+en.Name(), filepath.Join(s.Root(), MetadataDir, en.Name()))
	}
	ents, _ = os.ReadDir(filepath.Join(s.Root(), "deploy"))
	for _, en := range ents {
		st.Deployments = append(st.Deployments, en.Name())
	}
	sort.Strings(st.Deployments)
	refs, err := e.local.ListRefs()
	if err != nil {
		e.t.Fatal(err)
	}
	st.Refs = refs
	return st
}

// fsck checks the device's local store, signatures included.
func (e *hostileEnv) fsck() {
	e.t.Helper()
	rep, err := e.local.Fsck(e.ctx, ostree.FsckOptions{VerifyCommit: release.CommitVerifier(e.verifier)})
	if err != nil {
		e.t.Fatalf("fsck: %v", err)
	}
	for _, err := range rep.Errors {
		e.t.Errorf("fsck of the device's store: %v", err)
	}
}

// attack warms the device's metadata cache (so the snapshot holds the
// metadata an honest run would trust now), installs the hook, upgrades
// and checks that the upgrade failed with every want in its message and
// changed nothing.
func (e *hostileEnv) attack(hook func(w http.ResponseWriter, r *http.Request) bool, want ...string) {
	e.t.Helper()
	if _, err := e.agent.channelState(e.ctx); err != nil {
		e.t.Fatalf("honest metadata refused: %v", err)
	}
	before := e.snapshot()
	if e.prepare != nil {
		e.prepare()
	}
	e.setHook(hook)
	defer e.setHook(nil)
	changed, err := e.agent.Upgrade(e.ctx)
	if err == nil || changed {
		e.t.Fatalf("upgrade through the hostile server: changed=%v err=%v, want an error", changed, err)
	}
	e.t.Logf("refused: %v", err)
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			e.t.Errorf("error %q does not say %q", err, w)
		}
	}
	after := e.snapshot()
	if b, a := fmt.Sprintf("%+v", before), fmt.Sprintf("%+v", after); b != a {
		e.t.Errorf("the attack changed the device:\nbefore %s\nafter  %s", b, a)
	}
	e.fsck()
	if st, err := e.agent.Status(e.ctx); err != nil || st.Current == nil || st.Current.Version != "10.0.2" {
		e.t.Errorf("status after the attack: %+v %v", st, err)
	}
}

// target is the honest target of a version on a channel.
func (e *hostileEnv) target(ch, version string) api.Target {
	return api.Target{Channel: ch, Arch: "x86_64", Version: version, Ref: "mxos/10/x86_64/" + ch, Commit: e.commits[ch+"/"+version]}
}

func (e *hostileEnv) commitBytes(c string) []byte {
	e.t.Helper()
	sum, err := ostree.ParseChecksum(c)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.get("/repo/" + ostree.ObjectPath(sum, ostree.ObjCommit))
}

func marshalSig(t *testing.T, signers []sign.Signer, data []byte) []byte {
	t.Helper()
	md, err := release.SignData(signers, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ostree.MarshalMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// forgedSummary maps ref to commit, signed by signers (a stolen online key).
func forgedSummary(t *testing.T, ref string, c string, size int, signers []sign.Signer) map[string][]byte {
	t.Helper()
	sum, _ := ostree.ParseChecksum(c)
	s := &ostree.Summary{Refs: []ostree.SummaryRef{{Name: ref, CommitSize: uint64(size), Checksum: sum}}}
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{"summary": b, "summary.sig": marshalSig(t, signers, b)}
}

func TestHostileUnsignedCommit(t *testing.T) {
	e := newHostileEnv(t)
	e.release("10.0.3", nil)
	e.attack(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, ".commitmeta") {
			http.NotFound(w, r)
			return true
		}
		return false
	}, "download of 10.0.3", "not signed")
}

func TestHostileCommitSignedByUnknownKey(t *testing.T) {
	e := newHostileEnv(t)
	e.release("10.0.3", nil)
	c := e.commits["stable/10.0.3"]
	other := testserver.GenerateKeys(t).Signers
	sum, _ := ostree.ParseChecksum(c)
	e.attack(overlay(map[string][]byte{
		ostree.ObjectPath(sum, ostree.ObjCommitMeta): marshalSig(t, other, e.commitBytes(c)),
	}), "download of 10.0.3", "signature verification failed")
}

func TestHostileOlderCommit(t *testing.T) {
	e := newHostileEnv(t)
	// 10.0.1 is validly signed and listed: only its age gives it away.
	e.attack(offer(e.target("stable", "10.0.1")), "update refused", "older than the installed 10.0.2")
}

func TestHostileTestingCommitServedAsStable(t *testing.T) {
	e := newHostileEnv(t)
	e.publish("10.0.3", nil) // on testing only
	c := e.commits["testing/10.0.3"]
	served := api.Target{Channel: "stable", Arch: "x86_64", Version: "10.0.3", Ref: stableRefH, Commit: c}
	forged := forgedSummary(t, stableRefH, c, len(e.commitBytes(c)), e.online) // a stolen online key
	t.Run("signed metadata", func(t *testing.T) {
		e.t = t
		e.attack(chain(offer(served), overlay(forged)), "update refused", "not in the signed channel metadata")
	})
	t.Run("no metadata configured", func(t *testing.T) {
		// Without metadata the commit's own ref binding is what stops it.
		e.t = t
		defer e.insecure()()
		e.attack(chain(offer(served), overlay(forged)), "download of 10.0.3", "commit not bound to ref", testingRefH)
	})
}

func TestHostileTargetForOtherArchOrChannel(t *testing.T) {
	e := newHostileEnv(t)
	e.release("10.0.3", nil)
	good := e.target("stable", "10.0.3")
	for _, tc := range []struct {
		name string
		mut  func(*api.Target)
		want string
	}{
		{"other arch", func(t *api.Target) { t.Arch = "aarch64"; t.Ref = "mxos/10/aarch64/stable" }, "this machine is x86_64"},
		{"ref of another arch", func(t *api.Target) { t.Ref = "mxos/10/aarch64/stable" }, "not mxos/<major>/x86_64/stable"},
		{"other channel", func(t *api.Target) { t.Channel = "testing"; t.Ref = testingRefH }, "this machine follows stable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			tg := good
			tc.mut(&tg)
			e.attack(offer(tg), "update refused", tc.want)
		})
	}
}

func TestHostileExpiredMetadata(t *testing.T) {
	e := newHostileEnv(t)
	e.release("10.0.3", nil)
	// The server stopped refreshing its metadata (or a mirror froze it):
	// eight days later the timestamp and snapshot have expired.
	e.prepare = func() { e.agent.Now = func() time.Time { return time.Now().Add(8 * 24 * time.Hour) } }
	e.attack(nil, "update refused", "channel metadata expired", "date and time are wrong")
}

func TestHostileMetadataRollback(t *testing.T) {
	e := newHostileEnv(t)
	old := map[string][]byte{}
	for _, n := range []string{"timestamp.json"} {
		old[n] = e.get("/metadata/" + n)
	}
	e.release("10.0.3", nil)
	// The device has seen the metadata naming 10.0.3; a mirror now serves
	// the older timestamp, hiding the release.
	e.attack(func(w http.ResponseWriter, r *http.Request) bool {
		if b, ok := old[strings.TrimPrefix(r.URL.Path, "/metadata/")]; ok {
			w.Write(b)
			return true
		}
		return false
	}, "update refused", "channel metadata version rollback")
}

func TestHostileTamperedObject(t *testing.T) {
	e := newHostileEnv(t)
	e.release("10.0.3", nil)
	e.attack(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, ".filez") {
			return false
		}
		b := e.get(r.URL.Path)
		b[len(b)/2] ^= 0x55
		w.Write(b)
		return true
	}, "download of 10.0.3", "corrupt object")
}

func TestHostileObjectLargerThanSigned(t *testing.T) {
	e := newHostileEnv(t)
	e.release("10.0.3", nil)
	c := e.commits["stable/10.0.3"]
	sum, _ := ostree.ParseChecksum(c)
	e.attack(overlay(map[string][]byte{
		ostree.ObjectPath(sum, ostree.ObjCommit): append(e.commitBytes(c), make([]byte, 64)...),
	}), "download of 10.0.3", "too large")
}

func TestHostileEndlessResponse(t *testing.T) {
	e := newHostileEnv(t)
	e.release("10.0.3", nil)
	endless := func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte{0x42}, 32<<10)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				break
			}
		}
	}
	t.Run("summary", func(t *testing.T) {
		e.t = t
		e.attack(func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != "/repo/summary" {
				return false
			}
			endless(w, r)
			return true
		}, "download of 10.0.3", "too large")
	})
	t.Run("content object", func(t *testing.T) {
		// The real object, then bytes without end.
		e.t = t
		e.attack(func(w http.ResponseWriter, r *http.Request) bool {
			if !strings.HasSuffix(r.URL.Path, ".filez") {
				return false
			}
			w.Write(e.get(r.URL.Path))
			endless(w, r)
			return true
		}, "download of 10.0.3")
	})
}

func TestHostileStalledConnection(t *testing.T) {
	e := newHostileEnv(t)
	e.release("10.0.3", nil)
	e.attack(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, ".filez") {
			return false
		}
		w.Header().Set("Content-Length", "100000")
		w.Write([]byte{0x1f})
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
		return true
	}, "download of 10.0.3", "below minimum throughput")
}

// evilRelease signs a commit whose root tree is tree (raw dirtree bytes)
// with the release key, lists it in the signed targets as stable 10.0.3,
// and returns the proxy hook that offers and serves it.
func (e *hostileEnv) evilRelease(tree []byte) func(w http.ResponseWriter, r *http.Request) bool {
	e.t.Helper()
	return e.forgeRelease("10.0.3", tree, e.signers)
}

// forgeRelease makes a commit like stable 10.0.2's but one minute newer,
// carrying version, with root tree tree (raw dirtree bytes; nil keeps
// 10.0.2's tree) and its .commitmeta signed by commitSigners. The release
// key lists it in the signed targets as stable version (replacing a
// listed one); the summary is signed with the online key. It returns the
// proxy hook that offers and serves it.
func (e *hostileEnv) forgeRelease(version string, tree []byte, commitSigners []sign.Signer) func(w http.ResponseWriter, r *http.Request) bool {
	e.t.Helper()
	base := e.commits["stable/10.0.2"]
	cm, err := ostree.ParseCommit(e.commitBytes(base))
	if err != nil {
		e.t.Fatal(err)
	}
	evil := *cm
	if tree != nil {
		evil.RootTree = ostree.Checksum(sha256.Sum256(tree))
	}
	evil.Timestamp = cm.Timestamp + 60
	evil.Metadata = append(ostree.Metadata(nil), cm.Metadata...).Set(ostree.MetaVersion, ostree.StringVar(version))
	cb, err := evil.Marshal()
	if err != nil {
		e.t.Fatal(err)
	}
	cc := ostree.Checksum(sha256.Sum256(cb))
	old, err := e.meta.Releases()
	if err != nil {
		e.t.Fatal(err)
	}
	var rels []channelmeta.Release
	for _, r := range old {
		if r.Channel != "stable" || r.Version != version {
			rels = append(rels, r)
		}
	}
	rels = append(rels, channelmeta.Release{Channel: "stable", Arch: "x86_64", Version: version, Ref: stableRefH,
		Commit: cc.String(), PublishedAt: time.Now()})
	if err := e.meta.PublishTargets(rels, e.relMeta, time.Now()); err != nil {
		e.t.Fatal(err)
	}
	files := forgedSummary(e.t, stableRefH, cc.String(), len(cb), e.online)
	files[ostree.ObjectPath(cc, ostree.ObjCommit)] = cb
	files[ostree.ObjectPath(cc, ostree.ObjCommitMeta)] = marshalSig(e.t, commitSigners, cb)
	if tree != nil {
		files[ostree.ObjectPath(evil.RootTree, ostree.ObjDirTree)] = tree
	}
	return chain(offer(api.Target{Channel: "stable", Arch: "x86_64", Version: version, Ref: stableRefH, Commit: cc.String()}),
		overlay(files))
}

// TestHostileCommitSignedOnlyByOnlineKey (issue 9, failure 1): a thief of
// the online key signs a commit and the summary naming it. Even listed in
// the signed metadata (by mistake of the release team) and without
// metadata, the commit is refused: only a release signature counts.
func TestHostileCommitSignedOnlyByOnlineKey(t *testing.T) {
	e := newHostileEnv(t)
	t.Run("signed metadata", func(t *testing.T) {
		e.t = t
		e.attack(e.forgeRelease("10.0.3", nil, e.online), "download of 10.0.3", "signature verification failed")
	})
	t.Run("no metadata configured", func(t *testing.T) {
		e.t = t
		defer e.insecure()()
		e.attack(e.forgeRelease("10.0.3", nil, e.online), "download of 10.0.3", "signature verification failed")
		if !strings.Contains(e.out.String(), InsecureWarning) {
			t.Errorf("no warning about insecure_no_metadata in:\n%s", e.out.String())
		}
	})
	t.Run("online key in trusted_keys", func(t *testing.T) {
		// The old work-around (the online key added to trusted_keys) is
		// refused as a configuration error before anything is fetched.
		e.t = t
		v := e.agent.Puller.Verifiers
		defer func() { e.agent.Puller.Verifiers = v }()
		st, err := e.agent.channelState(e.ctx)
		if err != nil {
			t.Fatal(err)
		}
		e.agent.Puller.Verifiers = append(append([]sign.Verifier(nil), v...), sign.NewEd25519Verifier(st.OnlineKeys))
		e.attack(e.forgeRelease("10.0.3", nil, e.online), "trusted_keys holds the server's online key")
	})
}

// TestHostileSameVersionSwap: a second release-signed commit carrying
// the installed version 10.0.2 (newer timestamp, same ref) is refused,
// with and without metadata.
func TestHostileSameVersionSwap(t *testing.T) {
	e := newHostileEnv(t)
	t.Run("signed metadata", func(t *testing.T) {
		e.t = t
		e.attack(e.forgeRelease("10.0.2", nil, e.signers), "update refused", "another build of the installed version")
	})
	t.Run("no metadata configured", func(t *testing.T) {
		e.t = t
		defer e.insecure()()
		e.attack(e.forgeRelease("10.0.2", nil, e.signers), "update refused", "another build of the installed version")
	})
}

func TestHostileTreeWithDotDot(t *testing.T) {
	e := newHostileEnv(t)
	// A dirtree naming "zz" re-encoded with "..": the encoder refuses
	// such names, a hostile server does not ask it.
	file, _ := ostree.ParseChecksum(e.commits["stable/10.0.2"])
	dt := &ostree.DirTree{Files: []ostree.TreeFile{{Name: "zz", Checksum: file}}}
	tb, err := dt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tb = bytes.Replace(tb, []byte("zz\x00"), []byte("..\x00"), 1)
	e.attack(e.evilRelease(tb), "download of 10.0.3", `".."`)
}

func TestHostileTreeWithEscapingSymlink(t *testing.T) {
	e := newHostileEnv(t)
	// Signed and listed like any release: only the deployment step sees
	// that the link leaves the tree.
	e.allowEscape = true
	e.release("10.0.3", map[string]string{"usr/lib/evil": "->../../../../../etc/shadow"})
	e.attack(nil, "installing 10.0.3", "points outside the deployment")
}

// TestBootCollectsOldDeployments: a good boot removes every deployment
// but current, previous and one staged for a later switch.
func TestBootCollectsOldDeployments(t *testing.T) {
	e := newHostileEnv(t)
	versions := func() []string {
		list, err := e.agent.Sys.List()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range list {
			out = append(out, d.Origin.Version)
		}
		return out
	}
	// The setup installed 10.0.1 and upgraded to 10.0.2: both kept.
	if got := fmt.Sprint(versions()); got != "[10.0.1 10.0.2]" {
		t.Fatalf("after the first upgrade: %s", got)
	}
	e.release("10.0.3", nil)
	if changed, err := e.agent.Upgrade(e.ctx); err != nil || !changed {
		t.Fatalf("upgrade to 10.0.3: %v %v", changed, err)
	}
	if got := fmt.Sprint(versions()); got != "[10.0.1 10.0.2 10.0.3]" {
		t.Fatalf("before the boot: %s", got)
	}
	if err := e.agent.Boot(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(versions()); got != "[10.0.2 10.0.3]" {
		t.Fatalf("after a good boot: %s, want 10.0.1 collected", got)
	}
	// 10.0.4 staged outside the maintenance window survives a boot.
	e.release("10.0.4", nil)
	now := time.Now().UTC()
	e.agent.Cfg.Strategy = Strategy{Kind: "window", TimeZone: "UTC",
		Start: now.Add(2 * time.Hour).Format("15:04"), End: now.Add(3 * time.Hour).Format("15:04")}
	if changed, err := e.agent.Upgrade(e.ctx); err != nil || changed {
		t.Fatalf("staging 10.0.4: %v %v", changed, err)
	}
	if err := e.agent.Boot(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(versions()); got != "[10.0.2 10.0.3 10.0.4]" {
		t.Fatalf("after a boot with 10.0.4 staged: %s", got)
	}
}
