package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

const (
	testingRef64 = "mxos/10/x86_64/testing"
	stableRef64  = "mxos/10/x86_64/stable"
)

type pubKeys struct {
	dir     string
	signers []sign.Signer
}

func genKeys(t *testing.T) pubKeys {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if err := sign.GenerateKeys(dir, sign.GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := sign.LoadSigners(dir)
	if err != nil {
		t.Fatal(err)
	}
	return pubKeys{dir, s}
}

type pubFixture struct {
	*apiFixture
	data                     string
	repo                     *ostree.Repo
	release, online, strange pubKeys
	local                    *ostree.Repo // the release machine's repository
	clock                    time.Time
}

func newPubFixture(t *testing.T) *pubFixture { t.Helper(); return newPubFixtureWith(t, nil) }

// newPubFixtureWith is newPubFixture with the server's config changed by
// edit (nil: none).
func newPubFixtureWith(t *testing.T, edit func(*Config)) *pubFixture {
	t.Helper()
	data := t.TempDir()
	repo, err := ostree.Create(filepath.Join(data, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	store, set := openAPI(t, data)
	f := &pubFixture{data: data, repo: repo, release: genKeys(t), online: genKeys(t), strange: genKeys(t),
		clock: time.Unix(1_800_000_000, 0)}
	trusted, err := sign.LoadVerifiers(f.release.dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{DataDir: data, Store: store, Channels: set, TrustedKeys: trusted, OnlineSigners: f.online.signers,
		MaxObjectSize: 1 << 20}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.apiFixture = &apiFixture{url: serveHandler(t, srv), store: store, tokens: roleTokens(t, store, time.Now())}
	if f.local, err = ostree.Create(filepath.Join(t.TempDir(), "local")); err != nil {
		t.Fatal(err)
	}
	return f
}

// built is a commit made on the release machine.
type built struct {
	commit     ostree.Checksum
	commitmeta []byte
	objects    []string // every object name the commit needs
}

// tree stores a small OS tree in the local repository.
func (f *pubFixture) tree(t *testing.T, release string) (tree, meta ostree.Checksum) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	writeFile(t, filepath.Join(dir, "etc", "os-release"), []byte("NAME=MxOS\nVERSION_ID="+release+"\n"))
	writeFile(t, filepath.Join(dir, "usr", "bin", "tool"), bytes.Repeat([]byte("tool "+release+"\n"), 5000))
	writeFile(t, filepath.Join(dir, "usr", "share", "doc", "common"), []byte("shared by every release\n"))
	txn, err := f.local.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	u0 := uint32(0)
	if tree, meta, err = txn.WriteTreeFromDir(context.Background(), dir, ostree.CommitOptions{OwnerUID: &u0, OwnerGID: &u0, NoXattrs: true}); err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	return tree, meta
}

// build makes the commit a client would: version, ref binding, a growing
// timestamp, signed by signers.
func (f *pubFixture) build(t *testing.T, tree, meta ostree.Checksum, ref, version string, signers []sign.Signer) built {
	t.Helper()
	f.clock = f.clock.Add(time.Minute)
	c := &ostree.Commit{
		Metadata: ostree.Metadata{
			{Key: ostree.MetaVersion, Value: ostree.StringVar(version)},
			{Key: ostree.MetaRefBinding, Value: ostree.StringsVar([]string{ref})},
		},
		Subject: "MxOS " + version, Timestamp: uint64(f.clock.Unix()), RootTree: tree, RootMeta: meta,
	}
	txn, err := f.local.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	cs, err := txn.WriteCommit(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	cb, err := f.local.ReadMetadata(cs, ostree.ObjCommit)
	if err != nil {
		t.Fatal(err)
	}
	md, err := release.SignData(signers, cb, nil)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := ostree.MarshalMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := f.local.Reachable(cs)
	if err != nil {
		t.Fatal(err)
	}
	b := built{commit: cs, commitmeta: mb, objects: []string{cs.String() + ".commit"}}
	for _, o := range objs {
		b.objects = append(b.objects, o.Checksum.String()+"."+o.Type.Ext())
	}
	return b
}

func (f *pubFixture) raw(t *testing.T, name string) []byte {
	t.Helper()
	c, typ, err := ostree.ParseObjectName(name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(f.local.Path(), ostree.ObjectPath(c, typ)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *pubFixture) rel(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	return f.do(t, f.tokens["release"], method, path, body)
}

func (f *pubFixture) session(t *testing.T) string {
	t.Helper()
	code, body := f.rel(t, "POST", "/api/v1/uploads", nil)
	var s api.UploadSession
	if code != http.StatusCreated || json.Unmarshal(body, &s) != nil || s.ID == "" {
		t.Fatalf("create session: %d %s", code, body)
	}
	return s.ID
}

func (f *pubFixture) missing(t *testing.T, id string, names []string) []string {
	t.Helper()
	code, body := f.rel(t, "POST", "/api/v1/uploads/"+id+"/missing", api.MissingRequest{Objects: names})
	var m api.MissingResponse
	if code != http.StatusOK || json.Unmarshal(body, &m) != nil {
		t.Fatalf("missing: %d %s", code, body)
	}
	return m.Missing
}

func (f *pubFixture) put(t *testing.T, id, name string, data []byte) (int, []byte) {
	t.Helper()
	return f.rel(t, "PUT", "/api/v1/uploads/"+id+"/objects/"+name, data)
}

// upload sends what the server lacks and commits the session; it returns
// how many objects were sent.
func (f *pubFixture) upload(t *testing.T, b built) int {
	t.Helper()
	id := f.session(t)
	miss := f.missing(t, id, b.objects)
	for _, name := range miss {
		if code, body := f.put(t, id, name, f.raw(t, name)); code != http.StatusNoContent {
			t.Fatalf("put %s: %d %s", name, code, body)
		}
	}
	if m := f.missing(t, id, b.objects); len(m) != 0 {
		t.Fatalf("still missing after upload: %v", m)
	}
	if code, body := f.rel(t, "POST", "/api/v1/uploads/"+id+"/commit", nil); code != http.StatusNoContent {
		t.Fatalf("commit session: %d %s", code, body)
	}
	return len(miss)
}

func releaseReq(channel, version string, b built, from string) api.ReleaseRequest {
	return api.ReleaseRequest{Channel: channel, Arch: "x86_64", Version: version, Commit: b.commit.String(),
		Commitmeta: b.commitmeta, PromotedFrom: from}
}

// state is everything a refusal must leave unchanged: every visible file
// of the repository (tmp/ aside) and the database's releases, rollouts
// and audit head.
func (f *pubFixture) state(t *testing.T) string {
	t.Helper()
	var sb strings.Builder
	err := filepath.WalkDir(f.repo.Path(), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(f.repo.Path(), p)
		if rel == "tmp" {
			return fs.SkipDir
		}
		if d.IsDir() || rel == ".lock" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(&sb, "%s %x\n", rel, sha256.Sum256(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, ch := range []string{"testing", "stable", "edu"} {
		rs, _ := f.store.ListReleases(ctx, ch, "")
		ros, _ := f.store.ListRollouts(ctx, ch)
		fmt.Fprintf(&sb, "%s %d releases %d rollouts\n", ch, len(rs), len(ros))
	}
	fmt.Fprintf(&sb, "audit %d\n", changesAudited(t, f.store))
	return sb.String()
}

// stockPull pulls ref with the stock ostree client verifying commit and
// summary signatures against both public keys, then fscks.
func (f *pubFixture) stockPull(t *testing.T, ref string) string {
	t.Helper()
	out, err := f.stockPullWith(t, ref, f.release.dir, f.online.dir)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// stockPullWith is stockPull trusting only the keys in keyDirs.
func (f *pubFixture) stockPullWith(t *testing.T, ref string, keyDirs ...string) (string, error) {
	t.Helper()
	bin := requireOstree(t)
	gnupg := filepath.Join(t.TempDir(), "gnupg")
	if err := os.Mkdir(gnupg, 0o700); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "GNUPGHOME="+gnupg, "LC_ALL=C", "NO_PROXY=*", "no_proxy=*")
	client := filepath.Join(t.TempDir(), "client")
	var failed error
	run := func(args ...string) string {
		t.Helper()
		if failed != nil {
			return ""
		}
		cmd := exec.CommandContext(t.Context(), bin, append([]string{"--repo=" + client}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			failed = fmt.Errorf("ostree %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("init", "--mode=archive")
	run("remote", "add", "--set=gpg-verify=true", "--set=gpg-verify-summary=true", "origin", f.url+"/repo")
	imp := []string{"remote", "gpg-import", "origin"}
	for _, d := range keyDirs {
		imp = append(imp, "-k", filepath.Join(d, sign.OpenPGPPublicFile))
	}
	run(imp...)
	run("pull", "origin", ref)
	run("fsck")
	rev := run("rev-parse", "origin:"+ref)
	return rev, failed
}

func TestPublishAndPromoteRemotely(t *testing.T) {
	f := newPubFixture(t)
	tree1, meta1 := f.tree(t, "10.0.1")
	b1 := f.build(t, tree1, meta1, testingRef64, "10.0.1", f.release.signers)

	// Admin and device tokens cannot publish.
	for _, role := range []string{"admin", "device"} {
		if code, body := f.do(t, f.tokens[role], "POST", "/api/v1/uploads", nil); code != http.StatusForbidden {
			t.Fatalf("%s creates a session: %d %s", role, code, body)
		}
		if code, body := f.do(t, f.tokens[role], "POST", "/api/v1/releases", releaseReq("testing", "10.0.1", b1, "")); code != http.StatusForbidden {
			t.Fatalf("%s publishes: %d %s", role, code, body)
		}
	}

	// Resumable: half the objects, an "interruption", then the same
	// session asks only for the rest.
	id := f.session(t)
	miss := f.missing(t, id, b1.objects)
	if len(miss) != len(b1.objects) {
		t.Fatalf("fresh session: %d missing of %d", len(miss), len(b1.objects))
	}
	half := len(miss) / 2
	for _, name := range miss[:half] {
		if code, body := f.put(t, id, name, f.raw(t, name)); code != http.StatusNoContent {
			t.Fatalf("put %s: %d %s", name, code, body)
		}
	}
	rest := f.missing(t, id, b1.objects)
	if len(rest) != len(miss)-half {
		t.Fatalf("after resuming: %d missing, want %d", len(rest), len(miss)-half)
	}
	for _, name := range rest {
		if code, body := f.put(t, id, name, f.raw(t, name)); code != http.StatusNoContent {
			t.Fatalf("put %s: %d %s", name, code, body)
		}
	}
	if m := f.missing(t, id, b1.objects); len(m) != 0 {
		t.Fatalf("missing after upload: %v", m)
	}
	if code, body := f.rel(t, "POST", "/api/v1/uploads/"+id+"/commit", nil); code != http.StatusNoContent {
		t.Fatalf("commit: %d %s", code, body)
	}
	check := func() api.CheckResponse {
		t.Helper()
		code, body := f.do(t, f.tokens["device"], "POST", "/api/v1/check",
			api.CheckRequest{DeviceID: "lab-1", Arch: "x86_64", Channel: "testing", Version: "10.0.0"})
		var cr api.CheckResponse
		if code != http.StatusOK || json.Unmarshal(body, &cr) != nil {
			t.Fatalf("check: %d %s", code, body)
		}
		return cr
	}
	if cr := check(); cr.Update {
		t.Fatalf("update offered before publishing: %+v", cr)
	}
	code, body := f.rel(t, "POST", "/api/v1/releases", releaseReq("testing", "10.0.1", b1, ""))
	if code != http.StatusCreated {
		t.Fatalf("publish: %d %s", code, body)
	}
	// Devices see it at once (testing's ramp is 100%).
	if cr := check(); !cr.Update || cr.Target == nil || cr.Target.Commit != b1.commit.String() {
		t.Fatalf("check after publishing: %+v", cr)
	}
	var got api.Release
	if err := json.Unmarshal(body, &got); err != nil || got.Commit != b1.commit.String() || got.Ref != testingRef64 {
		t.Fatalf("publish answered %s", body)
	}
	if c := f.stockPull(t, testingRef64); c != b1.commit.String() {
		t.Fatalf("stock pull of testing: %s, want %s", c, b1.commit)
	}
	// The keys really are checked: the summary is the online key's, the
	// commit the release key's, so neither key alone will do.
	for _, tc := range []struct{ dir, want string }{
		{f.release.dir, "error: Signature made"}, // the summary's
		{f.online.dir, "error: Commit " + b1.commit.String() + ": Signature made"},
	} {
		if _, err := f.stockPullWith(t, testingRef64, tc.dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("stock pull trusting only %s: %v, want %q", tc.dir, err, tc.want)
		}
	}

	// Promotion: a new commit over the same root tree, nothing re-sent
	// but the commit object itself.
	p1 := f.build(t, tree1, meta1, stableRef64, "10.0.1", f.release.signers)
	if n := f.upload(t, p1); n != 1 {
		t.Fatalf("promotion uploaded %d objects, want only the commit", n)
	}
	if code, body := f.rel(t, "POST", "/api/v1/releases", releaseReq("stable", "10.0.1", p1, "testing")); code != http.StatusCreated {
		t.Fatalf("promote: %d %s", code, body)
	}
	if c := f.stockPull(t, stableRef64); c != p1.commit.String() {
		t.Fatalf("stock pull of stable: %s, want %s", c, p1.commit)
	}

	// The release list, the rollouts and the audit log say what happened.
	code, body = f.do(t, f.tokens["device"], "GET", "/api/v1/releases?channel=stable&arch=x86_64", nil)
	var list []api.Release
	if code != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list) != 1 || list[0].PromotedFrom != "testing" {
		t.Fatalf("releases: %d %s", code, body)
	}
	ros, _ := f.store.ListRollouts(context.Background(), "")
	if len(ros) != 2 || ros[0].State != "active" {
		t.Fatalf("rollouts: %+v", ros)
	}
	entries, _ := f.store.ListAudit(context.Background(), 0, 100)
	var actions []string
	for _, e := range entries {
		if e.Action == "publish" || e.Action == "promote" {
			actions = append(actions, e.Action+" "+e.Subject)
			if !strings.Contains(e.Detail, `"commit"`) {
				t.Errorf("audit detail lacks the commit: %s", e.Detail)
			}
		}
	}
	if strings.Join(actions, ",") != "publish testing/x86_64/10.0.1,promote stable/x86_64/10.0.1" {
		t.Fatalf("audit: %v", actions)
	}

	// A second release over the first: only the changed objects travel.
	tree2, meta2 := f.tree(t, "10.0.2")
	b2 := f.build(t, tree2, meta2, testingRef64, "10.0.2", f.release.signers)
	if n := f.upload(t, b2); n >= len(b2.objects) {
		t.Fatalf("second release uploaded %d of %d objects", n, len(b2.objects))
	}
	req := releaseReq("testing", "10.0.2", b2, "")
	req.Ramp = "none"
	req.Targets = []byte(`{"signed":{"_type":"targets"}}`)
	if code, body := f.rel(t, "POST", "/api/v1/releases", req); code != http.StatusCreated {
		t.Fatalf("publish 10.0.2: %d %s", code, body)
	}
	// Signed channel metadata is off here: targets are ignored, not kept.
	if _, err := os.Stat(filepath.Join(f.data, "metadata")); !os.IsNotExist(err) {
		t.Fatalf("metadata directory written without signed channel metadata: %v", err)
	}
}

func TestPublishRefusalsChangeNothing(t *testing.T) {
	f := newPubFixture(t)
	tree1, meta1 := f.tree(t, "10.0.1")
	b1 := f.build(t, tree1, meta1, testingRef64, "10.0.1", f.release.signers)
	f.upload(t, b1)
	if code, body := f.rel(t, "POST", "/api/v1/releases", releaseReq("testing", "10.0.1", b1, "")); code != http.StatusCreated {
		t.Fatalf("publish: %d %s", code, body)
	}
	tree2, meta2 := f.tree(t, "10.0.2")
	upload := func(b built) built { f.upload(t, b); return b }
	b2 := upload(f.build(t, tree2, meta2, testingRef64, "10.0.2", f.release.signers))
	stranger := upload(f.build(t, tree2, meta2, testingRef64, "10.0.2", f.strange.signers))
	wrongRef := upload(f.build(t, tree2, meta2, stableRef64, "10.0.2", f.release.signers))
	older := upload(f.build(t, tree2, meta2, testingRef64, "10.0.0", f.release.signers))
	// A promotion to stable whose tree is not testing's 10.0.1.
	mismatch := upload(f.build(t, tree2, meta2, stableRef64, "10.0.1", f.release.signers))
	promo := upload(f.build(t, tree1, meta1, stableRef64, "10.0.1", f.release.signers))
	toEdu := upload(f.build(t, tree1, meta1, "mxos/10/x86_64/edu", "10.0.1", f.release.signers))
	unknown := upload(f.build(t, tree1, meta1, stableRef64, "10.0.7", f.release.signers))
	notUploaded := f.build(t, tree2, meta2, testingRef64, "10.0.3", f.release.signers)

	withRamp := func(r api.ReleaseRequest, ramp string) api.ReleaseRequest { r.Ramp = ramp; return r }
	id := f.session(t)
	// The only object of notUploaded the server lacks: its commit.
	good := notUploaded.objects[0]
	cases := []struct {
		name   string
		token  string
		method string
		path   string
		body   any
		status int
		code   api.Code
	}{
		{"admin role", "admin", "POST", "/api/v1/releases", releaseReq("testing", "10.0.2", b2, ""), 403, api.CodeForbidden},
		{"malformed JSON", "release", "POST", "/api/v1/releases", `{"channel": "testing",`, 400, api.CodeBadRequest},
		{"unknown field", "release", "POST", "/api/v1/releases", `{"channel": "testing", "bogus": 1}`, 400, api.CodeBadRequest},
		{"huge body", "release", "POST", "/api/v1/releases", `{"channel": "` + strings.Repeat("x", maxReleaseBody) + `"}`, 413, api.CodeTooLarge},
		{"unknown channel", "release", "POST", "/api/v1/releases", releaseReq("nightly", "10.0.2", b2, ""), 400, api.CodeUnknownChannel},
		{"unknown arch", "release", "POST", "/api/v1/releases", func() api.ReleaseRequest { r := releaseReq("testing", "10.0.2", b2, ""); r.Arch = "riscv64"; return r }(), 400, api.CodeUnknownArch},
		{"bad version", "release", "POST", "/api/v1/releases", releaseReq("testing", "ten", b2, ""), 400, api.CodeBadRequest},
		{"bad ramp", "release", "POST", "/api/v1/releases", withRamp(releaseReq("testing", "10.0.2", b2, ""), "fast"), 400, api.CodeBadRequest},
		{"bad image digest", "release", "POST", "/api/v1/releases", func() api.ReleaseRequest {
			r := releaseReq("testing", "10.0.2", b2, "")
			r.OCIDigest = "sha256:../../x"
			return r
		}(), 400, api.CodeBadRequest},
		{"sha512 image digest", "release", "POST", "/api/v1/releases", func() api.ReleaseRequest {
			r := releaseReq("testing", "10.0.2", b2, "")
			r.OCIDigest = "sha512:" + strings.Repeat("a", 128)
			return r
		}(), 400, api.CodeBadRequest},
		{"duplicate version", "release", "POST", "/api/v1/releases", releaseReq("testing", "10.0.1", b1, ""), 409, api.CodeDuplicateVersion},
		{"older version", "release", "POST", "/api/v1/releases", releaseReq("testing", "10.0.0", older, ""), 409, api.CodeVersionOrder},
		{"open rollout", "release", "POST", "/api/v1/releases", releaseReq("testing", "10.0.2", b2, ""), 409, api.CodeConflict},
		{"unknown key", "release", "POST", "/api/v1/releases", withRamp(releaseReq("testing", "10.0.2", stranger, ""), "none"), 400, api.CodeBadRequest},
		{"bound to another ref", "release", "POST", "/api/v1/releases", withRamp(releaseReq("testing", "10.0.2", wrongRef, ""), "none"), 400, api.CodeBadRequest},
		{"not uploaded", "release", "POST", "/api/v1/releases", withRamp(releaseReq("testing", "10.0.3", notUploaded, ""), "none"), 400, api.CodeBadRequest},
		{"skipping the promotion order", "release", "POST", "/api/v1/releases", releaseReq("edu", "10.0.1", toEdu, "testing"), 409, api.CodePromotion},
		{"promoting into testing", "release", "POST", "/api/v1/releases", releaseReq("testing", "10.0.2", b2, "stable"), 409, api.CodePromotion},
		// Failure 5 of issue 9: stable is reached only by promotion.
		{"publishing to stable", "release", "POST", "/api/v1/releases", releaseReq("stable", "10.0.1", promo, ""), 409, api.CodePromotion},
		{"promoting from an unknown channel", "release", "POST", "/api/v1/releases", releaseReq("stable", "10.0.1", promo, "nightly"), 400, api.CodeUnknownChannel},
		{"promoting an unknown version", "release", "POST", "/api/v1/releases", releaseReq("stable", "10.0.7", unknown, "testing"), 404, api.CodeNotFound},
		{"root mismatch", "release", "POST", "/api/v1/releases", releaseReq("stable", "10.0.1", mismatch, "testing"), 409, api.CodePromotion},
		{"bad object name", "release", "PUT", "/api/v1/uploads/" + id + "/objects/" + strings.Repeat("a", 64) + ".commitmeta", "x", 400, api.CodeBadRequest},
		{"short object name", "release", "PUT", "/api/v1/uploads/" + id + "/objects/abc.filez", "x", 400, api.CodeBadRequest},
		{"corrupt object", "release", "PUT", "/api/v1/uploads/" + id + "/objects/" + good, append(f.raw(t, good), 0), 400, api.CodeBadRequest},
		{"object too large", "release", "PUT", "/api/v1/uploads/" + id + "/objects/" + strings.Repeat("a", 64) + ".filez", make([]byte, 2<<20), 413, api.CodeTooLarge},
		{"unknown session", "release", "PUT", "/api/v1/uploads/" + strings.Repeat("0", 32) + "/objects/" + good, f.raw(t, good), 404, api.CodeNotFound},
		{"session path trick", "release", "POST", "/api/v1/uploads/..%2f..%2fobjects/commit", nil, 400, ""},
		{"bad missing name", "release", "POST", "/api/v1/uploads/" + id + "/missing", api.MissingRequest{Objects: []string{"../config"}}, 400, api.CodeBadRequest},
		{"too many missing", "release", "POST", "/api/v1/uploads/" + id + "/missing", api.MissingRequest{Objects: make([]string, api.MaxMissingObjects+1)}, 413, api.CodeTooLarge},
	}
	for _, tc := range cases {
		before := f.state(t)
		code, body := f.do(t, f.tokens[tc.token], tc.method, tc.path, tc.body)
		if code != tc.status || (tc.code != "" && errCode(body) != tc.code) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, code, body, tc.status, tc.code)
		}
		if after := f.state(t); after != before {
			t.Errorf("%s: something changed:\n%s\n---\n%s", tc.name, before, after)
		}
	}
	if m := f.missing(t, id, []string{good}); len(m) != 1 {
		t.Fatalf("the corrupt PUT staged %s: missing = %v", good, m)
	}
	ents, _ := os.ReadDir(filepath.Join(f.repo.Path(), "tmp", "uploads", id))
	if len(ents) != 0 {
		t.Fatalf("refused objects staged: %v", ents)
	}

	// The good promotion still goes through afterwards.
	if code, body := f.rel(t, "POST", "/api/v1/releases", releaseReq("stable", "10.0.1", promo, "testing")); code != http.StatusCreated {
		t.Fatalf("promote: %d %s", code, body)
	}
}

func TestPublishingDisabledWithoutKeys(t *testing.T) {
	f := newAPIFixture(t) // no keys configured
	code, body := f.do(t, f.tokens["release"], "POST", "/api/v1/uploads", nil)
	if code != http.StatusInternalServerError || !strings.Contains(string(body), "--release-keys") {
		t.Fatalf("without keys: %d %s", code, body)
	}
	if code, body := f.do(t, f.tokens["device"], "GET", "/api/v1/releases?channel=testing&arch=riscv64", nil); code != 400 || errCode(body) != api.CodeUnknownArch {
		t.Fatalf("unknown arch: %d %s", code, body)
	}
	if code, body := f.do(t, f.tokens["device"], "GET", "/api/v1/releases?channel=nightly", nil); code != 400 || errCode(body) != api.CodeUnknownChannel {
		t.Fatalf("unknown channel: %d %s", code, body)
	}
	code, body = f.do(t, f.tokens["release"], "GET", "/api/v1/releases?channel=testing", nil)
	if code != http.StatusOK || !strings.Contains(string(body), "10.0.2") {
		t.Fatalf("list: %d %s", code, body)
	}
}
