package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// TestStockPullRejectsBadSignatures shows that stock ostree, with GPG
// verification on, refuses what we serve when the signatures are not by
// the key it trusts or are missing: a different imported key, a commit
// without detached metadata, a summary without summary.sig. The trusted-key
// case passes, so each failure is caused by its condition alone.
func TestStockPullRejectsBadSignatures(t *testing.T) {
	requireOstreeGPG(t)
	keys := newKeys(t)
	other := newKeys(t)
	src := filepath.Join(t.TempDir(), "src")
	makeRichTree(t, src, treeSpec{seed: 3})

	cases := []struct {
		name          string
		clientKey     *keySet
		verifySummary bool
		mutate        func(t *testing.T, s *site, commit ostree.Checksum)
		wantErr       []string // nil: the pull succeeds
		notWant       string   // must not be in the error (which check failed)
	}{
		{name: "trusted key", clientKey: keys, verifySummary: true},
		{
			name: "different key, summary verified", clientKey: other, verifySummary: true,
			wantErr: []string{"public key not found"}, notWant: "Commit ",
		},
		{
			name: "different key, commit verified", clientKey: other, verifySummary: false,
			wantErr: []string{"Commit ", "public key not found"},
		},
		{
			name: "commitmeta removed", clientKey: keys, verifySummary: true,
			mutate: func(t *testing.T, s *site, c ostree.Checksum) {
				if err := os.Remove(objectFile(s.repoDir(), c, ostree.ObjCommitMeta)); err != nil {
					t.Fatal(err)
				}
				// Our own fsck notices too.
				rep, err := s.repo.Fsck(t.Context(), ostree.FsckOptions{VerifyCommit: release.CommitVerifier(s.keys.verifiers)})
				if err != nil || len(rep.Errors) != 1 || !errors.Is(rep.Errors[0], sign.ErrNoSignatures) {
					t.Errorf("fsck of a commit without commitmeta: %v, %v; want one ErrNoSignatures", rep, err)
				}
			},
			wantErr: []string{"GPG verification enabled, but no signatures found"},
		},
		{
			name: "summary.sig removed", clientKey: keys, verifySummary: true,
			mutate: func(t *testing.T, s *site, _ ostree.Checksum) {
				if err := os.Remove(filepath.Join(s.repoDir(), "summary.sig")); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: []string{"no summary.sig found"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSite(t, keys)
			res := s.publish(t, "10.0.1", src)
			if tc.mutate != nil {
				tc.mutate(t, s, res.Commit)
			}
			url, _ := serve(t, s.data)
			opts := []string{"--set=gpg-verify=true", "--gpg-import=" + tc.clientKey.pgpPub}
			if tc.verifySummary {
				opts = append(opts, "--set=gpg-verify-summary=true")
			} else {
				opts = append(opts, "--set=gpg-verify-summary=false")
			}
			c := newClient(t, toolEnv(t), url, opts...)
			out, err := c.run("pull", "origin", testRef)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("pull with the trusted key: %v\n%s", err, out)
				}
				return
			}
			if err == nil {
				t.Fatalf("pull succeeded, want it refused:\n%s", out)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(out, want) {
					t.Errorf("pull failed without mentioning %q:\n%s", want, out)
				}
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
