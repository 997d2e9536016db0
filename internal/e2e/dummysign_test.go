package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
)

// dummyKey is the metadata key of ostree's test signing engine.
const dummyKey = "ostree.sign.dummy"

// dummyEnv enables ostree's dummy engine (compiled in, hidden behind this
// variable).
const dummyEnv = "OSTREE_DUMMY_SIGN_ENABLED=1"

// addDummySignatures adds an ostree.sign.dummy signature (the secret's
// bytes, exactly what `ostree sign --sign-type=dummy` writes) to the
// commit's detached metadata and regenerates summary
// and summary.sig with our signatures plus the dummy one. An empty secret
// leaves that part without a dummy signature.
func addDummySignatures(t testing.TB, s *site, commit ostree.Checksum, commitSecret, summarySecret string) {
	t.Helper()
	txn, err := s.repo.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	md, err := s.repo.ReadCommitMeta(commit)
	if err != nil {
		t.Fatal(err)
	}
	md = md.Delete(dummyKey)
	if commitSecret != "" {
		md = md.Set(dummyKey, ostree.BytesListVar([][]byte{[]byte(commitSecret)}))
	}
	if err := txn.WriteCommitMeta(commit, md); err != nil {
		t.Fatal(err)
	}
	err = txn.WriteSummary(time.Now(), func(summary []byte) (ostree.Metadata, error) {
		sig, err := release.SignData(s.keys.signers, summary, nil)
		if err != nil || summarySecret == "" {
			return sig, err
		}
		return sig.Set(dummyKey, ostree.BytesListVar([][]byte{[]byte(summarySecret)})), nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDummySignEngine exercises ostree's signapi verification path (the
// one ostree.sign.ed25519 takes on newer ostree; Debian 12's 2022.7 only
// has the dummy engine) against our detached metadata and summary.sig:
// commit and summary signatures are found under their engine key next to
// ours, a wrong key is refused, and a missing signature on either is too.
func TestDummySignEngine(t *testing.T) {
	requireTool(t, "ostree")
	const secret = "mxos-dummy-secret"
	keys := newKeys(t)
	s := newSite(t, keys)
	src := filepath.Join(t.TempDir(), "src")
	makeRichTree(t, src, treeSpec{seed: 2})
	res := s.publish(t, "10.0.1", src)
	env := toolEnv(t, dummyEnv)

	// What does ostree itself write? Sign a copy with the real tool.
	ref := filepath.Join(t.TempDir(), "reference-repo")
	copyDir(t, s.repoDir(), ref)
	mustRunCmd(t, env, "ostree", "--repo="+ref, "sign", "--sign-type=dummy", res.Commit.String(), secret)
	mustRunCmd(t, env, "ostree", "--repo="+ref, "summary", "-u", "--sign-type=dummy", "--sign="+secret)
	rr, err := ostree.Open(ref)
	if err != nil {
		t.Fatal(err)
	}
	refMeta, err := rr.ReadCommitMeta(res.Commit)
	if err != nil {
		t.Fatal(err)
	}
	refSigs, ok := refMeta.ByteArrays(dummyKey)
	if !ok || len(refSigs) != 1 || !bytes.Equal(refSigs[0], []byte(secret)) {
		t.Fatalf("ostree sign --sign-type=dummy wrote %s = %q, expected one element holding the secret", dummyKey, refSigs)
	}
	if _, ok := refMeta.ByteArrays("ostree.gpgsigs"); !ok {
		t.Errorf("ostree sign dropped our ostree.gpgsigs from the commitmeta it rewrote")
	}

	url, _ := serve(t, s.data)
	remote := func(key string) []string {
		return []string{"--no-gpg-verify", "--set=sign-verify=dummy", "--set=verification-dummy-key=" + key, "--set=sign-verify-summary=true"}
	}
	cases := []struct {
		name                  string
		commitSig, summarySig string // dummy signatures on the server ("" = none)
		clientKey             string
		wantErr               string // "" = the pull succeeds
		notWant               string // must not be in the error (which check failed)
	}{
		{name: "right key", commitSig: secret, summarySig: secret, clientKey: secret},
		// The summary is verified first, so it is what fails.
		{name: "wrong key", commitSig: secret, summarySig: secret, clientKey: "not-the-secret", wantErr: "dummy: incorrect signatures found", notWant: "verify commit"},
		{name: "forged signature on the commit", commitSig: "forged", summarySig: secret, clientKey: secret, wantErr: "Can't verify commit: signature: dummy: incorrect signatures found"},
		{name: "no dummy signature on the summary", commitSig: secret, summarySig: "", clientKey: secret, wantErr: "No signatures found", notWant: "verify commit"},
		{name: "no dummy signature on the commit", commitSig: "", summarySig: secret, clientKey: secret, wantErr: "Can't verify commit: No signatures found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addDummySignatures(t, s, res.Commit, tc.commitSig, tc.summarySig)
			if tc.commitSig == secret && tc.summarySig == secret {
				md, _ := s.repo.ReadCommitMeta(res.Commit)
				ours, _ := md.ByteArrays(dummyKey)
				if len(ours) != 1 || !bytes.Equal(ours[0], refSigs[0]) {
					t.Errorf("our %s = %q, ostree writes %q", dummyKey, ours, refSigs)
				}
			}
			// Our own signatures are still good next to the dummy ones.
			s.fsck(t)
			if err := verifySummaryPair(s.repoDir(), keys.verifiers); err != nil {
				t.Errorf("summary.sig with a dummy signature added: our signatures: %v", err)
			}

			c := newClient(t, env, url, remote(tc.clientKey)...)
			out, err := c.run("pull", "origin", testRef)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("pull with sign-verify=dummy: %v\n%s", err, out)
				}
				if got := c.revParse("origin:" + testRef); got != res.Commit.String() {
					t.Errorf("pulled %s, want %s", got, res.Commit)
				}
				c.mustRun("fsck")
				return
			}
			if err == nil {
				t.Fatalf("pull succeeded, want a signature failure:\n%s", out)
			}
			if !strings.Contains(out, tc.wantErr) {
				t.Errorf("pull failed without mentioning %q:\n%s", tc.wantErr, out)
			}
			if tc.notWant != "" && strings.Contains(out, tc.notWant) {
				t.Errorf("pull failed at the wrong check (mentions %q):\n%s", tc.notWant, out)
			}
			if _, err := os.Stat(filepath.Join(c.repo, "refs", "remotes", "origin", filepath.FromSlash(testRef))); err == nil {
				t.Errorf("the client stored the ref although verification failed")
			}
			t.Logf("refused as expected: %s", strings.TrimSpace(out))
		})
	}
}
