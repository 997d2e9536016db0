package release

import (
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

const (
	testingRef = "mxos/10/x86_64/testing"
	stableRef  = "mxos/10/x86_64/stable"
)

type keyset struct {
	signers   []sign.Signer
	verifiers []sign.Verifier
}

func newKeyset(t *testing.T) keyset {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if err := sign.GenerateKeys(dir, sign.GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := sign.LoadSigners(dir)
	if err != nil {
		t.Fatal(err)
	}
	v, err := sign.LoadVerifiers(dir)
	if err != nil {
		t.Fatal(err)
	}
	return keyset{s, v}
}

type acceptFixture struct {
	repo                     *ostree.Repo
	acc                      *Acceptor
	release, online, strange keyset
	tree, meta               ostree.Checksum
}

func newAcceptFixture(t *testing.T) *acceptFixture {
	t.Helper()
	repo, err := ostree.Create(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	f := &acceptFixture{repo: repo, release: newKeyset(t), online: newKeyset(t), strange: newKeyset(t)}
	f.acc = &Acceptor{Repo: repo, Trusted: f.release.verifiers, Online: f.online.signers,
		Now: func() time.Time { return time.Unix(2000, 0) }}
	f.tree, f.meta = f.writeTree(t, "one")
	return f
}

func (f *acceptFixture) writeTree(t *testing.T, content string) (tree, meta ostree.Checksum) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	os.WriteFile(filepath.Join(src, "etc/os-release"), []byte("NAME=MxOS\n"+content+"\n"), 0o644)
	txn, err := f.repo.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	tree, meta, err = txn.WriteTreeFromDir(context.Background(), src, ostree.CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	return tree, meta
}

// commit stores a commit as an uploaded one would be (no ref, no
// commitmeta) and returns it with commitmeta signed by signers.
func (f *acceptFixture) commit(t *testing.T, tree, meta ostree.Checksum, ref, version string, ts uint64, signers []sign.Signer) (ostree.Checksum, []byte) {
	t.Helper()
	c := &ostree.Commit{
		Metadata: ostree.Metadata{
			{Key: ostree.MetaVersion, Value: ostree.StringVar(version)},
			{Key: ostree.MetaRefBinding, Value: ostree.StringsVar([]string{ref})},
		},
		Subject: "MxOS " + version, Timestamp: ts, RootTree: tree, RootMeta: meta,
	}
	txn, err := f.repo.Begin()
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
	b, err := f.repo.ReadMetadata(cs, ostree.ObjCommit)
	if err != nil {
		t.Fatal(err)
	}
	md, err := SignData(signers, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := ostree.MarshalMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	return cs, mb
}

// snapshot hashes every file a client can see (all but tmp/ and the lock).
func snapshot(t *testing.T, r *ostree.Repo) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(r.Path(), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(r.Path(), p)
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
		out[rel] = sha256.Sum256(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameSnapshot(a, b map[string][32]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestAcceptPublishAndPromote(t *testing.T) {
	f := newAcceptFixture(t)
	ctx := context.Background()
	c1, m1 := f.commit(t, f.tree, f.meta, testingRef, "10.0.1", 1000, f.release.signers)
	res, err := f.acc.Accept(ctx, AcceptRequest{Ref: testingRef, Version: "10.0.1", Commit: c1, Commitmeta: m1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Commit != c1 || !res.Parent.IsZero() {
		t.Fatalf("result = %+v", res)
	}
	if got, _ := f.repo.ResolveRef(testingRef); got != c1 {
		t.Fatalf("ref = %s, want %s", got, c1)
	}
	// Commits verify with the release key; the summary with the online key
	// and not with the release key (the server does not hold it).
	rep, err := f.repo.Fsck(ctx, ostree.FsckOptions{VerifyCommit: CommitVerifier(f.release.verifiers)})
	if err != nil || len(rep.Errors) != 0 {
		t.Fatalf("fsck: %v %v", err, rep.Errors)
	}
	s, sb, err := f.repo.ReadSummary()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Lookup(testingRef); !ok {
		t.Fatal("summary lacks the ref")
	}
	sig, err := os.ReadFile(filepath.Join(f.repo.Path(), "summary.sig"))
	if err != nil {
		t.Fatal(err)
	}
	smd, err := ostree.ParseMetadata(sig)
	if err != nil {
		t.Fatal(err)
	}
	if err := sign.VerifyAll(f.online.verifiers, sb, SignatureMap(smd)); err != nil {
		t.Fatalf("summary.sig by the online key: %v", err)
	}
	if err := sign.VerifyAll(f.release.verifiers, sb, SignatureMap(smd)); err == nil {
		t.Fatal("summary.sig verifies with the release key")
	}

	// Promotion: same root tree, bound to stable; found through history
	// and by the checksum the caller passes.
	p1, pm1 := f.commit(t, f.tree, f.meta, stableRef, "10.0.1", 1001, f.release.signers)
	if _, err := f.acc.Accept(ctx, AcceptRequest{Ref: stableRef, Version: "10.0.1", Commit: p1, Commitmeta: pm1,
		PromotedFromRef: testingRef}); err != nil {
		t.Fatal(err)
	}
	tree2, meta2 := f.writeTree(t, "two")
	c2, m2 := f.commit(t, tree2, meta2, testingRef, "10.0.2", 1100, f.release.signers)
	if _, err := f.acc.Accept(ctx, AcceptRequest{Ref: testingRef, Version: "10.0.2", Commit: c2, Commitmeta: m2}); err != nil {
		t.Fatal(err)
	}
	p2, pm2 := f.commit(t, tree2, meta2, stableRef, "10.0.2", 1101, f.release.signers)
	if _, err := f.acc.Accept(ctx, AcceptRequest{Ref: stableRef, Version: "10.0.2", Commit: p2, Commitmeta: pm2,
		PromotedFromRef: testingRef, SourceCommit: c2}); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.repo.ResolveRef(stableRef); got != p2 {
		t.Fatalf("stable = %s, want %s", got, p2)
	}
}

func TestAcceptRefusalsChangeNothing(t *testing.T) {
	f := newAcceptFixture(t)
	ctx := context.Background()
	c1, m1 := f.commit(t, f.tree, f.meta, testingRef, "10.0.1", 1000, f.release.signers)
	if _, err := f.acc.Accept(ctx, AcceptRequest{Ref: testingRef, Version: "10.0.1", Commit: c1, Commitmeta: m1}); err != nil {
		t.Fatal(err)
	}
	tree2, meta2 := f.writeTree(t, "two")
	good := func(ts uint64) (ostree.Checksum, []byte) {
		return f.commit(t, tree2, meta2, testingRef, "10.0.2", ts, f.release.signers)
	}
	c2, m2 := good(1100)
	strangeC, strangeM := f.commit(t, tree2, meta2, testingRef, "10.0.2", 1101, f.strange.signers)
	_, mixed := f.commit(t, tree2, meta2, testingRef, "10.0.2", 1101, append(f.strange.signers[:1:1], f.release.signers...))
	var edOnly []sign.Signer
	for _, s := range f.release.signers {
		if s.MetaKey() == sign.Ed25519MetaKey {
			edOnly = append(edOnly, s)
		}
	}
	edC, edM := f.commit(t, tree2, meta2, testingRef, "10.0.2", 1102, edOnly)
	otherRef, otherRefM := f.commit(t, tree2, meta2, stableRef, "10.0.2", 1103, f.release.signers)
	older, olderM := good(999)
	sameTS, sameTSM := good(1000)
	sameV, sameVM := f.commit(t, tree2, meta2, testingRef, "10.0.1", 1104, f.release.signers)
	// A promotion whose tree is not its source's.
	badPromo, badPromoM := f.commit(t, tree2, meta2, stableRef, "10.0.1", 1105, f.release.signers)
	unknownPromo, unknownPromoM := f.commit(t, f.tree, f.meta, stableRef, "10.0.9", 1106, f.release.signers)
	empty, _ := ostree.MarshalMetadata(ostree.Metadata{})
	var missing ostree.Checksum
	missing[0] = 1
	cases := []struct {
		name string
		req  AcceptRequest
		want error
	}{
		{"unknown key", AcceptRequest{Ref: testingRef, Version: "10.0.2", Commit: strangeC, Commitmeta: strangeM}, sign.ErrBadSignature},
		{"bad signature beside good ones", AcceptRequest{Ref: testingRef, Version: "10.0.2", Commit: c2, Commitmeta: mixed}, sign.ErrBadSignature},
		{"signatures of another commit", AcceptRequest{Ref: testingRef, Version: "10.0.2", Commit: c2, Commitmeta: strangeM}, sign.ErrBadSignature},
		{"OpenPGP signature missing", AcceptRequest{Ref: testingRef, Version: "10.0.2", Commit: edC, Commitmeta: edM}, ErrUnsigned},
		{"no signatures", AcceptRequest{Ref: testingRef, Version: "10.0.2", Commit: c2, Commitmeta: empty}, ErrUnsigned},
		{"malformed commitmeta", AcceptRequest{Ref: testingRef, Version: "10.0.2", Commit: c2, Commitmeta: []byte("junk")}, ErrBadCommit},
		{"wrong version", AcceptRequest{Ref: testingRef, Version: "10.0.3", Commit: c2, Commitmeta: m2}, ErrBinding},
		{"bound to another ref", AcceptRequest{Ref: testingRef, Version: "10.0.2", Commit: otherRef, Commitmeta: otherRefM}, ErrBinding},
		{"older timestamp", AcceptRequest{Ref: testingRef, Version: "10.0.2", Commit: older, Commitmeta: olderM}, ErrOlder},
		{"same timestamp", AcceptRequest{Ref: testingRef, Version: "10.0.2", Commit: sameTS, Commitmeta: sameTSM}, ErrOlder},
		{"same version", AcceptRequest{Ref: testingRef, Version: "10.0.1", Commit: sameV, Commitmeta: sameVM}, ErrSameVersion},
		{"not stored", AcceptRequest{Ref: testingRef, Version: "10.0.2", Commit: missing, Commitmeta: m2}, ErrIncomplete},
		{"root mismatch", AcceptRequest{Ref: stableRef, Version: "10.0.1", Commit: badPromo, Commitmeta: badPromoM, PromotedFromRef: testingRef}, ErrRootMismatch},
		{"root mismatch by checksum", AcceptRequest{Ref: stableRef, Version: "10.0.1", Commit: badPromo, Commitmeta: badPromoM, PromotedFromRef: testingRef, SourceCommit: c1}, ErrRootMismatch},
		{"unknown source version", AcceptRequest{Ref: stableRef, Version: "10.0.9", Commit: unknownPromo, Commitmeta: unknownPromoM, PromotedFromRef: testingRef}, ErrSourceNotFound},
		{"source checksum of another version", AcceptRequest{Ref: stableRef, Version: "10.0.9", Commit: unknownPromo, Commitmeta: unknownPromoM, PromotedFromRef: testingRef, SourceCommit: c1}, ErrSourceNotFound},
	}
	for _, tc := range cases {
		before := snapshot(t, f.repo)
		_, err := f.acc.Accept(ctx, tc.req)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
		if !sameSnapshot(before, snapshot(t, f.repo)) {
			t.Errorf("%s: the repository changed", tc.name)
		}
	}
	if got, _ := f.repo.ResolveRef(testingRef); got != c1 {
		t.Fatalf("ref moved to %s", got)
	}

	// A commit whose objects are not all stored: remove one from a copy.
	objs, err := f.repo.Reachable(c2)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.Type == ostree.ObjFile {
			p := filepath.Join(f.repo.Path(), ostree.ObjectPath(o.Checksum, o.Type))
			os.Rename(p, p+".away")
			before := snapshot(t, f.repo)
			_, err := f.acc.Accept(ctx, AcceptRequest{Ref: testingRef, Version: "10.0.2", Commit: c2, Commitmeta: m2})
			if !errors.Is(err, ErrIncomplete) {
				t.Errorf("incomplete: err = %v", err)
			}
			if !sameSnapshot(before, snapshot(t, f.repo)) {
				t.Error("incomplete: the repository changed")
			}
			os.Rename(p+".away", p)
			break
		}
	}
	// Without keys nothing is accepted.
	noKeys := *f.acc
	noKeys.Trusted = nil
	if _, err := noKeys.Accept(ctx, AcceptRequest{Ref: testingRef, Version: "10.0.2", Commit: c2, Commitmeta: m2}); !errors.Is(err, sign.ErrNoKeys) {
		t.Errorf("no trusted keys: %v", err)
	}
	noOnline := *f.acc
	noOnline.Online = nil
	if _, err := noOnline.Accept(ctx, AcceptRequest{Ref: testingRef, Version: "10.0.2", Commit: c2, Commitmeta: m2}); !errors.Is(err, ErrNoSigners) {
		t.Errorf("no online key: %v", err)
	}
	// And the good one still goes through.
	if _, err := f.acc.Accept(ctx, AcceptRequest{Ref: testingRef, Version: "10.0.2", Commit: c2, Commitmeta: m2}); err != nil {
		t.Fatal(err)
	}
}
