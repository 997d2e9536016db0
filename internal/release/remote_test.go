package release

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// fakeServer is a Server over a second local repository: enough to check
// what the client sends, not how mxos-server stores it.
type fakeServer struct {
	t         *testing.T
	repo      *ostree.Repo
	verifiers []sign.Verifier
	staged    map[string]map[string][]byte
	releases  []api.Release // newest first per channel
	puts      int
	nextID    int
}

func newFakeServer(t *testing.T, verifiers []sign.Verifier) *fakeServer {
	repo, err := ostree.Create(filepath.Join(t.TempDir(), "server"))
	if err != nil {
		t.Fatal(err)
	}
	return &fakeServer{t: t, repo: repo, verifiers: verifiers, staged: map[string]map[string][]byte{}}
}

func parseName(name string) (ostree.Checksum, ostree.ObjectType, error) {
	hex, ext, _ := strings.Cut(name, ".")
	c, err := ostree.ParseChecksum(hex)
	types := map[string]ostree.ObjectType{"commit": ostree.ObjCommit, "dirtree": ostree.ObjDirTree, "dirmeta": ostree.ObjDirMeta, "filez": ostree.ObjFile}
	t, ok := types[ext]
	if !ok {
		return c, 0, fmt.Errorf("bad name %q", name)
	}
	return c, t, err
}

func (f *fakeServer) NewUpload(context.Context) (api.UploadSession, error) {
	f.nextID++
	id := fmt.Sprint(f.nextID)
	f.staged[id] = map[string][]byte{}
	return api.UploadSession{ID: id}, nil
}

func (f *fakeServer) Missing(_ context.Context, id string, names []string) ([]string, error) {
	var out []string
	for _, n := range names {
		c, t, err := parseName(n)
		if err != nil {
			return nil, err
		}
		if _, ok := f.staged[id][n]; !ok && !f.repo.HasObject(c, t) {
			out = append(out, n)
		}
	}
	return out, nil
}

func (f *fakeServer) PutObject(_ context.Context, id, name string, body io.Reader, size int64) error {
	b, err := io.ReadAll(body)
	if err != nil || int64(len(b)) != size {
		return fmt.Errorf("short body")
	}
	f.puts++
	f.staged[id][name] = b
	return nil
}

func (f *fakeServer) CommitUpload(_ context.Context, id string) error {
	txn, err := f.repo.Begin()
	if err != nil {
		return err
	}
	defer txn.Close()
	for name, b := range f.staged[id] {
		c, t, _ := parseName(name)
		if t == ostree.ObjFile {
			err = txn.WriteFilez(c, bytes.NewReader(b))
		} else {
			_, err = txn.WriteMetadata(t, b, c)
		}
		if err != nil {
			return err
		}
	}
	delete(f.staged, id)
	return txn.Commit()
}

func (f *fakeServer) PublishRelease(_ context.Context, req api.ReleaseRequest) (api.Release, error) {
	c, err := ostree.ParseChecksum(req.Commit)
	if err != nil {
		return api.Release{}, err
	}
	if err := f.repo.CheckComplete(c); err != nil {
		return api.Release{}, err
	}
	cb, _ := f.repo.ReadMetadata(c, ostree.ObjCommit)
	md, err := ostree.ParseMetadata(req.Commitmeta)
	if err != nil {
		return api.Release{}, err
	}
	if err := CommitVerifier(f.verifiers)(c, cb, md); err != nil {
		return api.Release{}, err
	}
	cm, _ := ostree.ParseCommit(cb)
	rel := api.Release{Channel: req.Channel, Arch: req.Arch, Version: req.Version, Ref: cm.RefBindings()[0], Commit: req.Commit, PromotedFrom: req.PromotedFrom}
	f.releases = append([]api.Release{rel}, f.releases...)
	return rel, nil
}

func (f *fakeServer) Releases(_ context.Context, channel, arch string) ([]api.Release, error) {
	var out []api.Release
	for _, r := range f.releases {
		if r.Channel == channel && r.Arch == arch {
			out = append(out, r)
		}
	}
	return out, nil
}

func (f *fakeServer) RepoObject(_ context.Context, path string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(f.repo.Path(), path))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ostree.ErrNotFound
	}
	return b, err
}

// Metadata: the fake server publishes no signed channel metadata.
func (f *fakeServer) Metadata(context.Context, string) ([]byte, error) { return nil, nil }

func TestRemotePublishAndPromote(t *testing.T) {
	fx := newFixture(t)
	srv := newFakeServer(t, fx.verifiers)
	work, err := ostree.Create(filepath.Join(t.TempDir(), "work"))
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	rem := &Remote{Server: srv, Work: work, Signers: fx.pub.Signers, Now: func() time.Time { return clock }}
	ctx := context.Background()
	for i := 0; i < 30; i++ {
		os.WriteFile(filepath.Join(fx.src, fmt.Sprintf("etc/f%d", i)), []byte(strings.Repeat("x", i)), 0o644)
	}
	req := RemoteRequest{Channel: "testing", Arch: "x86_64", Ref: "mxos/10/x86_64/testing", Version: "10.0.1", Source: fx.src}
	_, c1, err := rem.Publish(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	firstPuts := srv.puts
	objs, _ := work.Reachable(c1)
	if firstPuts != len(objs)+1 {
		t.Fatalf("first publish sent %d objects, want %d", firstPuts, len(objs)+1)
	}
	// A second release changes one file: only the changed objects travel.
	os.WriteFile(filepath.Join(fx.src, "etc/f1"), []byte("changed"), 0o644)
	clock = clock.Add(-time.Hour) // a clock going backwards still makes a newer commit
	req.Version = "10.0.2"
	_, c2, err := rem.Publish(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if sent := srv.puts - firstPuts; sent > 5 {
		t.Fatalf("second publish sent %d objects; only the changed file, its dirtrees and the commit should travel", sent)
	}
	cm1, _ := srv.repo.ReadCommit(c1)
	cm2, _ := srv.repo.ReadCommit(c2)
	if cm2.Parent != c1 || cm2.Timestamp <= cm1.Timestamp {
		t.Fatalf("second commit: parent %s ts %d (first ts %d)", cm2.Parent, cm2.Timestamp, cm1.Timestamp)
	}
	// Promotion: same root tree, new ref binding, one object uploaded.
	before := srv.puts
	_, p, err := rem.Promote(ctx, "testing", "stable", "x86_64", "mxos/10/x86_64/stable", "10.0.2", "")
	if err != nil {
		t.Fatal(err)
	}
	if srv.puts-before != 1 {
		t.Fatalf("promotion uploaded %d objects, want only the commit", srv.puts-before)
	}
	pc, err := srv.repo.ReadCommit(p)
	if err != nil {
		t.Fatal(err)
	}
	if pc.RootTree != cm2.RootTree || pc.RootMeta != cm2.RootMeta {
		t.Fatal("promotion changed the root tree")
	}
	if b := pc.RefBindings(); len(b) != 1 || b[0] != "mxos/10/x86_64/stable" || pc.Version() != "10.0.2" {
		t.Fatalf("promoted commit binds %v, version %q", b, pc.Version())
	}
	// Unknown version.
	if _, _, err := rem.Promote(ctx, "testing", "stable", "x86_64", "mxos/10/x86_64/stable", "9.9", ""); !errors.Is(err, &api.Error{Code: api.CodeNotFound}) {
		t.Fatalf("promoting an unknown version: %v", err)
	}
	// A server handing back a commit that does not hash to its name is caught.
	srv.releases[0].Commit = strings.Repeat("0", 64)
	if _, _, err := rem.Promote(ctx, "stable", "edu", "x86_64", "mxos/10/x86_64/edu", "10.0.2", ""); err == nil {
		t.Fatal("promotion from a bogus commit succeeded")
	}
}
