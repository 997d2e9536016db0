package release

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

const ref = "mxos/10/x86_64/testing"

type fixture struct {
	repo      *ostree.Repo
	pub       *Publisher
	verifiers []sign.Verifier
	src       string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	if err := sign.GenerateKeys(keys, sign.GenerateOptions{}); err != nil {
		t.Fatal(err)
	}
	signers, err := sign.LoadSigners(keys)
	if err != nil {
		t.Fatal(err)
	}
	verifiers, err := sign.LoadVerifiers(keys)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := ostree.Create(filepath.Join(dir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(src, "etc"), 0o755)
	os.WriteFile(filepath.Join(src, "etc/os-release"), []byte("NAME=MxOS\n"), 0o644)
	return &fixture{repo: repo, pub: &Publisher{Repo: repo, Signers: signers}, verifiers: verifiers, src: src}
}

func (f *fixture) publish(t *testing.T, version string) *Result {
	t.Helper()
	res, err := f.pub.Publish(context.Background(), Request{Ref: ref, Version: version, Source: f.src})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestPublishMakesSignedBoundCommit(t *testing.T) {
	f := newFixture(t)
	res := f.publish(t, "10.0.1")
	got, err := f.repo.ResolveRef(ref)
	if err != nil || got != res.Commit {
		t.Fatalf("ref = %s (%v), want %s", got, err, res.Commit)
	}
	cm, err := f.repo.ReadCommit(res.Commit)
	if err != nil {
		t.Fatal(err)
	}
	if cm.Version() != "10.0.1" {
		t.Errorf("version = %q", cm.Version())
	}
	if b := cm.RefBindings(); len(b) != 1 || b[0] != ref {
		t.Errorf("ref binding = %v", b)
	}
	rep, err := f.repo.Fsck(context.Background(), ostree.FsckOptions{VerifyCommit: CommitVerifier(f.verifiers)})
	if err != nil || len(rep.Errors) != 0 {
		t.Fatalf("fsck with signatures: %v %v", err, rep.Errors)
	}
	// The summary lists the ref and is signed by both engines.
	s, sb, err := f.repo.ReadSummary()
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := s.Lookup(ref); !ok || e.Checksum != res.Commit {
		t.Fatalf("summary entry = %+v %v", e, ok)
	}
	sigb, err := os.ReadFile(filepath.Join(f.repo.Path(), "summary.sig"))
	if err != nil {
		t.Fatal(err)
	}
	sigmd, err := ostree.ParseMetadata(sigb)
	if err != nil {
		t.Fatal(err)
	}
	sm := SignatureMap(sigmd)
	if len(sm[sign.Ed25519MetaKey]) != 1 || len(sm[sign.GPGMetaKey]) != 1 {
		t.Fatalf("summary.sig has %d ed25519 and %d gpg signatures", len(sm[sign.Ed25519MetaKey]), len(sm[sign.GPGMetaKey]))
	}
	if err := sign.VerifyAll(f.verifiers, sb, sm); err != nil {
		t.Fatalf("summary signature: %v", err)
	}
}

func TestPublishTimestampsGrowAndChain(t *testing.T) {
	f := newFixture(t)
	frozen := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f.pub.Now = func() time.Time { return frozen }
	first := f.publish(t, "10.0.1")
	// The clock goes backwards (a badly set build machine): the new commit
	// must still be newer than the current one.
	f.pub.Now = func() time.Time { return frozen.Add(-time.Hour) }
	os.WriteFile(filepath.Join(f.src, "etc/new"), []byte("x"), 0o644)
	second := f.publish(t, "10.0.2")
	if !second.Timestamp.After(first.Timestamp) {
		t.Fatalf("timestamps %v then %v", first.Timestamp, second.Timestamp)
	}
	if second.Parent != first.Commit {
		t.Fatalf("parent = %s, want %s", second.Parent, first.Commit)
	}
	cm, _ := f.repo.ReadCommit(second.Commit)
	if cm.Parent != first.Commit {
		t.Fatalf("commit parent = %s", cm.Parent)
	}
}

func TestPublishRefusals(t *testing.T) {
	f := newFixture(t)
	first := f.publish(t, "10.0.1")
	cases := []struct {
		name string
		req  Request
		pub  *Publisher
		want error
	}{
		{"same-version", Request{Ref: ref, Version: "10.0.1", Source: f.src}, f.pub, ErrSameVersion},
		{"bad-ref", Request{Ref: "../x", Version: "1", Source: f.src}, f.pub, ostree.ErrBadName},
		{"no-version", Request{Ref: ref, Source: f.src}, f.pub, nil},
		{"missing-source", Request{Ref: ref, Version: "9", Source: "/nonexistent"}, f.pub, os.ErrNotExist},
		{"no-signers", Request{Ref: ref, Version: "9", Source: f.src}, &Publisher{Repo: f.repo}, ErrNoSigners},
		{"bad-ostree-source", Request{Ref: ref, Version: "9", Source: "ostree:/nonexistent"}, f.pub, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.pub.Publish(context.Background(), c.req)
			if err == nil {
				t.Fatal("publish succeeded")
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if got, _ := f.repo.ResolveRef(ref); got != first.Commit {
				t.Fatalf("ref moved to %s", got)
			}
		})
	}
}

func TestCommitVerifierRejects(t *testing.T) {
	f := newFixture(t)
	res := f.publish(t, "10.0.1")
	other := newFixture(t)
	cb, _ := f.repo.ReadMetadata(res.Commit, ostree.ObjCommit)
	md, _ := f.repo.ReadCommitMeta(res.Commit)

	if err := CommitVerifier(f.verifiers)(res.Commit, cb, md); err != nil {
		t.Fatalf("good signatures refused: %v", err)
	}
	if err := CommitVerifier(other.verifiers)(res.Commit, cb, md); !errors.Is(err, sign.ErrBadSignature) {
		t.Errorf("unknown key: %v", err)
	}
	if err := CommitVerifier(f.verifiers)(res.Commit, cb, nil); !errors.Is(err, sign.ErrNoSignatures) {
		t.Errorf("no commitmeta: %v", err)
	}
	if err := CommitVerifier(f.verifiers)(res.Commit, cb, ostree.Metadata{}); err == nil {
		t.Error("empty commitmeta accepted")
	}
	tampered := append([]byte(nil), cb...)
	tampered[0] ^= 1
	if err := CommitVerifier(f.verifiers)(res.Commit, tampered, md); !errors.Is(err, sign.ErrBadSignature) {
		t.Errorf("tampered commit: %v", err)
	}
	// fsck with the wrong keys names the problem.
	rep, err := f.repo.Fsck(context.Background(), ostree.FsckOptions{VerifyCommit: CommitVerifier(other.verifiers)})
	if err != nil || len(rep.Errors) != 1 {
		t.Fatalf("fsck with wrong keys: %v %v", err, rep.Errors)
	}
}

func TestSignDataAppends(t *testing.T) {
	f := newFixture(t)
	md, err := SignData(f.pub.Signers, []byte("data"), nil)
	if err != nil {
		t.Fatal(err)
	}
	md2, err := SignData(f.pub.Signers, []byte("data"), md)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(SignatureMap(md2)[sign.Ed25519MetaKey]); n != 2 {
		t.Fatalf("%d ed25519 signatures after appending, want 2", n)
	}
}
