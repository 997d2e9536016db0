package tlogmon

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/testserver"
	"github.com/mxos-linux/mxos-update/internal/tlog"
)

const (
	testingRef = "mxos/10/x86_64/testing"
	stableRef  = "mxos/10/x86_64/stable"
)

// logged starts a server with the transparency log and publishes 10.0.1
// on testing and promotes it to stable, through the API as the release
// team does.
func logged(t *testing.T) (*testserver.Server, Options, *release.Remote) {
	t.Helper()
	ts := testserver.Start(t, testserver.Options{Roles: []auth.Role{auth.RoleRelease}, TransparencyLog: true, OnlineSummaryKey: true})
	work, err := ostree.Create(filepath.Join(t.TempDir(), "work"))
	if err != nil {
		t.Fatal(err)
	}
	rem := &release.Remote{Server: ts.Client(t, auth.RoleRelease), Work: work, Signers: ts.Release.Signers}
	publish(t, rem, "10.0.1")
	if _, _, err := rem.Promote(context.Background(), "testing", "stable", "x86_64", stableRef, "10.0.1", "100%"); err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(ts.LogKey)
	if err != nil {
		t.Fatal(err)
	}
	set, err := channel.LoadDir(testserver.ChannelsDir())
	if err != nil {
		t.Fatal(err)
	}
	return ts, Options{Server: ts.URL, Verifier: v, Channels: set}, rem
}

func publish(t *testing.T, rem *release.Remote, version string) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "tree")
	if err := os.MkdirAll(filepath.Join(src, "usr", "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "usr", "etc", "os-release"), []byte("VERSION="+version+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	u0 := uint32(0)
	if _, _, err := rem.Publish(context.Background(), release.RemoteRequest{Channel: "testing", Arch: "x86_64", Ref: testingRef,
		Version: version, Source: src, Ramp: "none", Options: ostree.CommitOptions{OwnerUID: &u0, OwnerGID: &u0, NoXattrs: true}}); err != nil {
		t.Fatalf("publish %s: %v", version, err)
	}
}

func TestMonitorCleanLog(t *testing.T) {
	_, o, _ := logged(t)
	rep, err := Verify(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 {
		t.Fatalf("problems in a clean log: %q", rep.Problems)
	}
	var kinds []string
	for _, l := range rep.Entries {
		kinds = append(kinds, string(l.Entry.Kind))
	}
	if got := strings.Join(kinds, ","); got != "release,promotion,rollout-start" {
		t.Fatalf("entries: %s", got)
	}
	if rep.Entries[1].Entry.From != "testing" || rep.Entries[0].Entry.Key == "" {
		t.Fatalf("promotion entry: %+v", rep.Entries[1].Entry)
	}
	// Consistent with itself, and with a later, larger log.
	if _, err := Verify(context.Background(), o, rep.Checkpoint.Raw); err != nil {
		t.Fatal(err)
	}
}

// TestMonitorFindsUnloggedCommits: a commit moved onto a channel by
// someone holding the release key (or the server's disk) but not through
// the logged API is reported, as is a signed release that never went
// through the log.
func TestMonitorFindsUnloggedCommits(t *testing.T) {
	ts, o, rem := logged(t)
	ctx := context.Background()
	publish(t, rem, "10.0.2") // logged on testing only
	rels, err := ts.Client(t, auth.RoleRelease).Releases(ctx, "testing", "x86_64")
	if err != nil || len(rels) == 0 {
		t.Fatalf("releases: %v %v", rels, err)
	}
	next, err := ostree.ParseChecksum(rels[0].Commit)
	if err != nil || rels[0].Version != "10.0.2" {
		t.Fatalf("newest testing release: %+v %v", rels[0], err)
	}
	// The stable ref moved to the testing commit without a promotion.
	setRef(t, ts.Repo, stableRef, next)
	rep, err := Verify(ctx, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !hasProblem(rep, stableRef+" (channel stable, x86_64) is at commit "+next.String()[:12]) {
		t.Fatalf("moved commit not reported: %q", rep.Problems)
	}

	// A correctly signed release published straight into the repository.
	u0 := uint32(0)
	if _, err := ts.Publisher.Publish(ctx, release.Request{Ref: "mxos/10/x86_64/edu", Version: "10.0.9", Source: treeDir(t),
		Options: ostree.CommitOptions{OwnerUID: &u0, OwnerGID: &u0, NoXattrs: true}}); err != nil {
		t.Fatal(err)
	}
	rep, err = Verify(ctx, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !hasProblem(rep, "mxos/10/x86_64/edu (channel edu, x86_64) is at commit") {
		t.Fatalf("unlogged release not reported: %q", rep.Problems)
	}
}

func treeDir(t *testing.T) string {
	src := filepath.Join(t.TempDir(), "tree")
	if err := os.MkdirAll(filepath.Join(src, "usr"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "usr", "evil"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return src
}

func setRef(t *testing.T, r *ostree.Repo, ref string, c ostree.Checksum) {
	t.Helper()
	txn, err := r.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	if err := txn.SetRef(ref, c); err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
}

func hasProblem(rep *Report, s string) bool {
	for _, p := range rep.Problems {
		if strings.Contains(p, s) {
			return true
		}
	}
	return false
}

// TestMonitorRefusesFork: a remembered checkpoint of the same size with
// another root, or of a larger tree, signed by the log key, is a fork.
func TestMonitorRefusesFork(t *testing.T) {
	ts, o, _ := logged(t)
	ctx := context.Background()
	rep, err := Verify(ctx, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	skey, err := os.ReadFile(filepath.Join(ts.Data, "log-key"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		t.Fatal(err)
	}
	forge := func(size string, root string) []byte {
		b, err := note.Sign(&note.Note{Text: signer.Name() + "\n" + size + "\n" + root + "\n"}, signer)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	otherRoot := "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	for name, tc := range map[string]struct {
		cp   []byte
		want error
	}{
		"same size, other root": {forge("3", otherRoot), tlog.ErrFork},
		"smaller size served":   {forge("7", otherRoot), tlog.ErrShrunk},
		"other prefix":          {forge("2", otherRoot), tlog.ErrFork},
	} {
		t.Run(name, func(t *testing.T) {
			if rep.Checkpoint.Size != 3 {
				t.Fatalf("log size %d", rep.Checkpoint.Size)
			}
			_, err := Verify(ctx, o, tc.cp)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), "remembered checkpoint:") {
				t.Fatalf("no evidence in %v", err)
			}
		})
	}
	// A checkpoint signed by another key is no checkpoint of this log.
	_, vkey, _ := note.GenerateKey(rand.Reader, signer.Name())
	v, _ := note.NewVerifier(vkey)
	o.Verifier = v
	if _, err := Verify(ctx, o, nil); !errors.Is(err, tlog.ErrCheckpoint) {
		t.Fatalf("other key: %v", err)
	}
}

// TestDeviceProofFromServer: /log/proof gives, for the release a device
// is offered, a proof tlog.CheckOffer accepts; a commit the log does not
// list gets 404.
func TestDeviceProofFromServer(t *testing.T) {
	ts, o, _ := logged(t)
	stable, err := ts.Repo.ResolveRef(stableRef)
	if err != nil {
		t.Fatal(err)
	}
	get := func(q string) (int, []byte) {
		t.Helper()
		resp, err := http.Get(ts.URL + "/log/proof?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	code, b := get("channel=stable&arch=x86_64&commit=" + stable.String())
	if code != http.StatusOK || len(b) > 10<<10 {
		t.Fatalf("proof: %d, %d bytes: %s", code, len(b), b)
	}
	p, err := tlog.ParseProof(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tlog.CheckOffer(p, o.Verifier, nil, tlog.Offer{Channel: "stable", Arch: "x86_64", Version: "10.0.1", Commit: stable.String()}); err != nil {
		t.Fatal(err)
	}
	if code, b := get("channel=edu&arch=x86_64&commit=" + stable.String()); code != http.StatusNotFound || !strings.Contains(string(b), "not in the transparency log") {
		t.Fatalf("unlogged: %d %s", code, b)
	}
}
