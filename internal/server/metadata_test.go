package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/rollout"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// metaFixture is a running server with signed channel metadata on.
type metaFixture struct {
	*pubFixture
	srv        *Server
	metaDir    string
	rootJSON   []byte
	relSigners []signature.Signer // the release key, as TUF signers
}

func newMetaFixture(t *testing.T) *metaFixture {
	t.Helper()
	data := t.TempDir()
	repo, err := ostree.Create(filepath.Join(data, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	store, set := openAPI(t, data)
	pf := &pubFixture{data: data, repo: repo, release: genKeys(t), online: genKeys(t), strange: genKeys(t),
		clock: time.Now().Add(-time.Hour)}
	f := &metaFixture{pubFixture: pf, metaDir: filepath.Join(data, "metadata")}

	// What mxosctl metadata init does on the release machine.
	if f.relSigners, err = publish.LoadEd25519Signers(pf.release.dir); err != nil {
		t.Fatal(err)
	}
	onlineSigners, err := publish.LoadEd25519Signers(pf.online.dir)
	if err != nil {
		t.Fatal(err)
	}
	relPubs, _ := publish.PublicKeys(f.relSigners...)
	onPubs, _ := publish.PublicKeys(onlineSigners...)
	keys := publish.Keys{Root: publish.RoleKeys{Keys: relPubs, Threshold: 1},
		Release: publish.RoleKeys{Keys: relPubs, Threshold: 1}, Online: publish.RoleKeys{Keys: onPubs, Threshold: 1}}
	if err := publish.Init(f.metaDir, keys, f.relSigners, f.relSigners, publish.Options{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if f.rootJSON, err = os.ReadFile(filepath.Join(f.metaDir, "root.json")); err != nil {
		t.Fatal(err)
	}
	meta, err := publish.Open(f.metaDir, onlineSigners, publish.Options{})
	if err != nil {
		t.Fatal(err)
	}
	trusted, err := sign.LoadVerifiers(pf.release.dir)
	if err != nil {
		t.Fatal(err)
	}
	if f.srv, err = New(Config{DataDir: data, Store: store, Channels: set, TrustedKeys: trusted,
		OnlineSigners: pf.online.signers, MaxObjectSize: 1 << 20, Metadata: meta}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.srv.Close() })
	url := startServer(t, f.srv) // runs the first metadata refresh
	pf.apiFixture = &apiFixture{url: url, store: store, tokens: roleTokens(t, store, time.Now())}
	if pf.local, err = ostree.Create(filepath.Join(t.TempDir(), "local")); err != nil {
		t.Fatal(err)
	}
	return f
}

// device is a device-side metadata client with its own cache.
func (f *metaFixture) device(t *testing.T) *channelmeta.Client {
	t.Helper()
	c, err := channelmeta.NewClient(channelmeta.ClientConfig{TrustedRoot: f.rootJSON, CacheDir: t.TempDir(),
		URL: f.url + "/metadata/"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *metaFixture) load(t *testing.T, c *channelmeta.Client) *channelmeta.State {
	t.Helper()
	st, err := c.Load(context.Background())
	if err != nil {
		t.Fatalf("device Load: %v", err)
	}
	return st
}

// metaFiles lists the metadata directory with sizes, for "nothing changed".
func (f *metaFixture) metaFiles(t *testing.T) string {
	t.Helper()
	ents, err := os.ReadDir(f.metaDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(f.metaDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e.Name()+"="+string(b))
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func (f *metaFixture) check(t *testing.T, deviceID, version string) api.CheckResponse {
	t.Helper()
	code, body := f.do(t, deviceToken(t, f.store, deviceID), "POST", "/api/v1/check",
		api.CheckRequest{DeviceID: deviceID, Arch: "x86_64", Channel: "testing", Version: version})
	var resp api.CheckResponse
	if code != http.StatusOK || json.Unmarshal(body, &resp) != nil {
		t.Fatalf("check: %d %s", code, body)
	}
	return resp
}

func TestSignedChannelMetadata(t *testing.T) {
	f := newMetaFixture(t)
	ctx := context.Background()
	dev := f.device(t)

	// Served statically: unversioned files revalidate, versioned ones are
	// immutable; other names are not served.
	resp, body := do(t, "GET", f.url+"/metadata/timestamp.json")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-cache" || resp.Header.Get("ETag") != sha256ETag(body) {
		t.Fatalf("timestamp.json: %d %q %q", resp.StatusCode, resp.Header.Get("Cache-Control"), resp.Header.Get("ETag"))
	}
	if r2, _ := do(t, "GET", f.url+"/metadata/timestamp.json", "If-None-Match: "+resp.Header.Get("ETag")); r2.StatusCode != http.StatusNotModified {
		t.Fatalf("conditional GET: %d", r2.StatusCode)
	}
	if r, _ := do(t, "HEAD", f.url+"/metadata/1.root.json"); r.StatusCode != http.StatusOK || !strings.Contains(r.Header.Get("Cache-Control"), "immutable") {
		t.Fatalf("1.root.json: %d %q", r.StatusCode, r.Header.Get("Cache-Control"))
	}
	writeFile(t, filepath.Join(f.metaDir, "secret.txt"), []byte("x"))
	for _, p := range []string{"secret.txt", "0.root.json", "x.targets.json", "nope.json"} {
		if r, _ := do(t, "GET", f.url+"/metadata/"+p); r.StatusCode != http.StatusNotFound {
			t.Errorf("GET /metadata/%s: %d, want 404", p, r.StatusCode)
		}
	}
	if st := f.load(t, dev); len(st.Releases) != 0 || len(st.Rollouts) != 0 {
		t.Fatalf("fresh metadata: %+v", st)
	}

	// Publish through mxosctl's pipeline over HTTP: it fetches targets.json,
	// adds the release and signs with the release key.
	hc, err := client.New(f.url, f.tokens["release"])
	if err != nil {
		t.Fatal(err)
	}
	work, err := ostree.Create(filepath.Join(t.TempDir(), "work"))
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, filepath.Join(src, "etc", "os-release"), []byte("NAME=MxOS\nVERSION_ID=10.0.1\n"))
	u0 := uint32(0)
	rem := &release.Remote{Server: hc, Work: work, Signers: f.release.signers, MetaSigners: f.relSigners}
	rel, sum, err := rem.Publish(ctx, release.RemoteRequest{Channel: "testing", Arch: "x86_64", Ref: testingRef64,
		Version: "10.0.1", Source: src, Options: ostree.CommitOptions{OwnerUID: &u0, OwnerGID: &u0, NoXattrs: true}})
	if err != nil {
		t.Fatalf("remote publish: %v", err)
	}

	// The device sees the release-signed release and the online-signed
	// rollout the publish started.
	st := f.load(t, dev)
	signed, ok := st.Lookup("testing", "x86_64", "10.0.1")
	if !ok || signed.Commit != sum.String() || signed.Ref != testingRef64 {
		t.Fatalf("signed release: %+v %v (want commit %s)", signed, ok, sum)
	}
	ro, ok := st.Rollout("testing", "x86_64")
	if !ok || ro.Version != "10.0.1" || ro.State != rollout.StateActive {
		t.Fatalf("signed rollout: %+v %v", ro, ok)
	}

	// The answer to a check is consistent with what the device verified.
	ans := f.check(t, "dev-1", "10.0.0")
	if !ans.Update || ans.Target == nil || ans.Target.Commit != rel.Commit {
		t.Fatalf("check: %+v", ans)
	}
	if err := channelmeta.CheckOffer(st, channelmeta.Offer{Channel: ans.Target.Channel, Arch: ans.Target.Arch,
		Version: ans.Target.Version, Commit: ans.Target.Commit, Ref: ans.Target.Ref}); err != nil {
		t.Fatalf("CheckOffer of the server's answer: %v", err)
	}

	// Halting through the API is signed at once and seen by the next Load.
	code, body := f.do(t, f.tokens["release"], "POST", "/api/v1/rollouts/"+ro.RolloutID+"/halt", api.RolloutActionRequest{Reason: "bad batch"})
	if code != http.StatusOK {
		t.Fatalf("halt: %d %s", code, body)
	}
	st2 := f.load(t, dev)
	if ro2, _ := st2.Rollout("testing", "x86_64"); ro2.State != rollout.StateHalted || ro2.HaltReason != "bad batch" {
		t.Fatalf("after halt the device sees %+v", ro2)
	}
	if st2.RolloutsVersion <= st.RolloutsVersion {
		t.Fatalf("rollouts version %d after halt, was %d", st2.RolloutsVersion, st.RolloutsVersion)
	}

	// A release whose targets do not list it, or without targets, is
	// refused and changes nothing.
	tree2, meta2 := f.tree(t, "10.0.2")
	b2 := f.build(t, tree2, meta2, testingRef64, "10.0.2", f.release.signers)
	f.upload(t, b2)
	before, beforeMeta := f.state(t), f.metaFiles(t)
	cur, err := os.ReadFile(filepath.Join(f.metaDir, "targets.json"))
	if err != nil {
		t.Fatal(err)
	}
	listed, err := publish.ListedReleases(cur)
	if err != nil {
		t.Fatal(err)
	}
	other, err := publish.BuildTargets(f.rootJSON, cur, listed, f.relSigners, publish.Options{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	wrongCommit, err := publish.BuildTargets(f.rootJSON, cur, append(listed, channelmeta.Release{Channel: "testing",
		Arch: "x86_64", Version: "10.0.2", Ref: testingRef64, Commit: sum.String()}), f.relSigners, publish.Options{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Targets listing an image the request does not name (or the reverse).
	withImage, err := publish.BuildTargets(f.rootJSON, cur, append(listed, channelmeta.Release{Channel: "testing",
		Arch: "x86_64", Version: "10.0.2", Ref: testingRef64, Commit: b2.commit.String(),
		OCIDigest: "sha256:" + strings.Repeat("ab", 32)}), f.relSigners, publish.Options{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for name, targets := range map[string][]byte{"unlisted": other, "wrong commit": wrongCommit, "none": nil,
		"other image": withImage, "unsigned image": withImage} {
		req := releaseReq("testing", "10.0.2", b2, "")
		req.Targets = targets
		switch name {
		case "other image":
			req.OCIDigest = "sha256:" + strings.Repeat("cd", 32)
		case "unsigned image":
			req.OCIDigest = ""
		}
		code, body := f.rel(t, "POST", "/api/v1/releases", req)
		var e api.ErrorBody
		_ = json.Unmarshal(body, &e)
		if code != http.StatusBadRequest || e.Error == nil || e.Error.Code != api.CodeBadRequest {
			t.Fatalf("%s targets: %d %s", name, code, body)
		}
		if name == "none" && !strings.Contains(string(body), "signed targets are required") {
			t.Fatalf("no targets: %s", body)
		}
		if f.state(t) != before || f.metaFiles(t) != beforeMeta {
			t.Fatalf("%s targets: refusal changed state", name)
		}
	}
	// Targets that list it but would roll the targets version back are
	// refused by AcceptTargets inside the flow, which rolls back too.
	first, err := os.ReadFile(filepath.Join(f.metaDir, "1.targets.json"))
	if err != nil {
		t.Fatal(err)
	}
	stale, err := publish.BuildTargets(f.rootJSON, first, append(listed, channelmeta.Release{Channel: "testing",
		Arch: "x86_64", Version: "10.0.2", Ref: testingRef64, Commit: b2.commit.String()}), f.relSigners, publish.Options{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req := releaseReq("testing", "10.0.2", b2, "")
	req.Targets = stale
	if code, body := f.rel(t, "POST", "/api/v1/releases", req); code != http.StatusBadRequest || !strings.Contains(string(body), "rollback") {
		t.Fatalf("stale targets: %d %s", code, body)
	}
	if f.state(t) != before || f.metaFiles(t) != beforeMeta {
		t.Fatal("stale targets: refusal changed state")
	}

	// Consistency: a release the database has but the signed targets do
	// not (written behind the API's back) is never offered.
	now := time.Now()
	if err := f.store.Tx(ctx, func(tx *db.Tx) error {
		if err := tx.AddRelease(ctx, db.Release{Channel: "testing", Arch: "x86_64", Version: "10.0.9", Ref: testingRef64,
			Commit: b2.commit.String(), PublishedAt: now, PublishedBy: "test"}); err != nil {
			return err
		}
		return tx.CreateRollout(ctx, db.Rollout{ID: "sneaky", Channel: "testing", Arch: "x86_64", Version: "10.0.9",
			Ramp: "100%", State: rollout.StateActive, CreatedAt: now, CreatedBy: "test"})
	}); err != nil {
		t.Fatal(err)
	}
	f.srv.api.updates.Invalidate()
	if ans := f.check(t, "dev-2", "10.0.1"); ans.Update || ans.Target != nil || ans.Reason != ReasonUnsigned {
		t.Fatalf("unsigned release offered: %+v", ans)
	}
	// The background refresh leaves the unsigned rollout out of the
	// signed state instead of failing.
	f.srv.refreshMetadata(ctx)
	st3 := f.load(t, dev)
	if _, ok := st3.Rollout("testing", "x86_64"); ok {
		t.Fatalf("rollout of an unsigned release was signed: %+v", st3.Rollouts)
	}
	if _, ok := st3.Lookup("testing", "x86_64", "10.0.9"); ok {
		t.Fatal("unsigned release appears in the signed targets")
	}
}

// PUT /api/v1/metadata installs root and targets signed offline (mxosctl
// metadata renew, sign-existing, rotate-keys) only for the release role
// and only after verifying them; refusals change nothing and leave no
// metadata audit entry. /metrics exports each role's expiry.
func TestMetadataPut(t *testing.T) {
	f := newMetaFixture(t)
	ctx := context.Background()
	// The server signs the online roles in the background at start: wait
	// for the timestamp (written last).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(f.metaDir, "timestamp.json")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the server wrote no timestamp.json")
		}
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(f.metaDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	root, targets := read("root.json"), read("targets.json")
	renewed, err := publish.BuildTargets(root, targets, nil, f.relSigners, publish.Options{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// A delegation key of 31 bytes, in otherwise renewed targets.
	var m map[string]any
	if err := json.Unmarshal(renewed, &m); err != nil {
		t.Fatal(err)
	}
	d := m["signed"].(map[string]any)["delegations"].(map[string]any)
	for _, k := range d["keys"].(map[string]any) {
		k.(map[string]any)["keyval"].(map[string]any)["public"] = strings.Repeat("00", 31)
	}
	shortKey, _ := json.Marshal(m)

	before := f.metaFiles(t)
	for _, tc := range []struct {
		name, token string
		body        api.MetadataUpdate
		code        int
		want        string
	}{
		{"no token", "", api.MetadataUpdate{Targets: renewed}, http.StatusUnauthorized, ""},
		{"device token", f.tokens["device"], api.MetadataUpdate{Targets: renewed}, http.StatusForbidden, ""},
		{"admin token", f.tokens["admin"], api.MetadataUpdate{Targets: renewed}, http.StatusForbidden, ""},
		{"empty", f.tokens["release"], api.MetadataUpdate{}, http.StatusBadRequest, "nothing to install"},
		{"same version again", f.tokens["release"], api.MetadataUpdate{Targets: targets}, http.StatusBadRequest, "rollback"},
		{"31-byte delegation key", f.tokens["release"], api.MetadataUpdate{Targets: shortKey}, http.StatusBadRequest, "must be 32 bytes"},
		{"garbage root", f.tokens["release"], api.MetadataUpdate{Root: []byte("{}")}, http.StatusBadRequest, "malformed"},
	} {
		code, body := f.do(t, tc.token, "PUT", "/api/v1/metadata", tc.body)
		if code != tc.code || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s: %d %s, want %d mentioning %q", tc.name, code, body, tc.code, tc.want)
		}
	}
	if after := f.metaFiles(t); after != before {
		b, a := strings.Split(before, "\n"), strings.Split(after, "\n")
		for i := range min(len(a), len(b)) {
			if a[i] != b[i] {
				t.Logf("first difference: %.80s -> %.80s", b[i], a[i])
				break
			}
		}
		t.Fatalf("a refused PUT changed the metadata directory (%d files -> %d)", len(b), len(a))
	}
	audit := func() []string {
		entries, err := f.store.ListAudit(ctx, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range entries {
			if strings.HasPrefix(e.Action, "metadata.") {
				out = append(out, e.Action)
			}
		}
		return out
	}
	if a := audit(); len(a) != 0 {
		t.Fatalf("refusals audited as installs: %v", a)
	}

	code, body := f.do(t, f.tokens["release"], "PUT", "/api/v1/metadata", api.MetadataUpdate{Targets: renewed})
	if code != http.StatusOK {
		t.Fatalf("renewed targets: %d %s", code, body)
	}
	var roles []api.MetadataRole
	if err := json.Unmarshal(body, &roles); err != nil || len(roles) != 5 {
		t.Fatalf("answer: %s (%v)", body, err)
	}
	if a := audit(); len(a) != 1 || a[0] != "metadata.targets" {
		t.Fatalf("audit after install: %v", a)
	}
	if st := f.load(t, f.device(t)); st.TargetsVersion != 2 {
		t.Fatalf("device sees targets v%d, want 2", st.TargetsVersion)
	}
	resp, err := http.Get(f.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	mb, _ := io.ReadAll(resp.Body)
	for _, role := range publish.Roles {
		if !strings.Contains(string(mb), `mxos_metadata_expiry_timestamp_seconds{role="`+role+`"}`) {
			t.Errorf("/metrics has no expiry for %s", role)
		}
	}
	if !strings.Contains(string(mb), `mxos_metadata_version{role="targets"} 2`) {
		t.Errorf("/metrics: targets version not 2")
	}
}

// metaKeys makes a release key (root and release roles, threshold 1) and
// an online key, and returns the metadata keys, their metadata signers and
// the online key itself (its commit and summary signers).
func metaKeys(t *testing.T) (keys publish.Keys, release, online []signature.Signer, onlineKey pubKeys) {
	t.Helper()
	rel, on := genKeys(t), genKeys(t)
	relS, err := publish.LoadEd25519Signers(rel.dir)
	if err != nil {
		t.Fatal(err)
	}
	onS, err := publish.LoadEd25519Signers(on.dir)
	if err != nil {
		t.Fatal(err)
	}
	relPubs, _ := publish.PublicKeys(relS...)
	onPubs, _ := publish.PublicKeys(onS...)
	keys = publish.Keys{Root: publish.RoleKeys{Keys: relPubs, Threshold: 1},
		Release: publish.RoleKeys{Keys: relPubs, Threshold: 1}, Online: publish.RoleKeys{Keys: onPubs, Threshold: 1}}
	return keys, relS, onS, on
}

// The server warns 30 days before the offline roles expire: here the
// targets (made to live 20 days) but not the root (1 year).
func TestMetadataExpiryWarning(t *testing.T) {
	data := t.TempDir()
	if _, err := ostree.Create(filepath.Join(data, "repo")); err != nil {
		t.Fatal(err)
	}
	keys, relS, onS, online := metaKeys(t)
	dir := filepath.Join(data, "metadata")
	opts := publish.Options{TargetsExpiry: 20 * 24 * time.Hour}
	if err := publish.Init(dir, keys, relS, relS, opts, time.Now()); err != nil {
		t.Fatal(err)
	}
	meta, err := publish.Open(dir, onS, opts)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.WarnLevel)
	srv, err := New(Config{DataDir: data, OnlineSigners: online.signers, Metadata: meta, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	srv.refreshMetadata(context.Background())
	var got []string
	for _, e := range logs.All() {
		got = append(got, e.Message)
	}
	joined := strings.Join(got, "\n")
	if !strings.Contains(joined, "signed targets expire soon") || !strings.Contains(joined, "mxosctl metadata renew --targets") {
		t.Fatalf("no targets warning in %q", got)
	}
	if strings.Contains(joined, "signed root expires soon") {
		t.Fatalf("root (1 year) warned: %q", got)
	}
}
