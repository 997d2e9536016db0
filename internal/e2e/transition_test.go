package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
)

// A summary.sig signing both the old and the new summary would make the
// summary swap safe for clients fetching the two files around it, but
// stock ostree (2022.7) judges a GPG summary.sig by its first signature:
// with [old, new] the old summary verifies and the new one gets "BAD
// signature". No order serves both, which is why WriteSummary swaps the
// two files plainly. This test pins the fact; if ostree changes, the swap
// can be improved.
func TestStockPullRejectsSummarySigWithExtraSignature(t *testing.T) {
	requireOstreeGPG(t)
	keys := newKeys(t)
	s := newSite(t, keys)
	src := filepath.Join(t.TempDir(), "src")
	makeRichTree(t, src, treeSpec{seed: 5})
	v1 := s.publish(t, "10.0.1", src)
	oldSum, err := os.ReadFile(filepath.Join(s.repoDir(), "summary"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "new-file"), []byte("v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	v2 := s.publish(t, "10.0.2", src)
	newSum, err := os.ReadFile(filepath.Join(s.repoDir(), "summary"))
	if err != nil {
		t.Fatal(err)
	}
	md, err := release.SignData(keys.signers, oldSum, nil)
	if err != nil {
		t.Fatal(err)
	}
	md, err = release.SignData(keys.signers, newSum, md)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := ostree.MarshalMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.repoDir(), "summary.sig"), sig, 0o644); err != nil {
		t.Fatal(err)
	}
	url, _ := serve(t, s.data)
	env := toolEnv(t)
	for _, tc := range []struct {
		name    string
		summary []byte
		want    ostree.Checksum
		ok      bool
	}{
		{"new summary, second signature", newSum, v2.Commit, false},
		{"old summary, first signature", oldSum, v1.Commit, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(s.repoDir(), "summary"), tc.summary, 0o644); err != nil {
				t.Fatal(err)
			}
			c := newClient(t, env, url, gpgRemote(keys.pgpPub)...)
			out, err := c.run("pull", "origin", testRef)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("pull refused a summary whose first signature is good:\n%s", out)
			case tc.ok:
				if got := c.revParse("origin:" + testRef); got != tc.want.String() {
					t.Fatalf("pulled %s, want %s", got, tc.want)
				}
			case err == nil:
				t.Fatal("pull accepted a summary signed only by the second signature: a transitional summary.sig would now work")
			case !strings.Contains(out, "BAD signature"):
				t.Fatalf("pull failed for another reason:\n%s", out)
			}
		})
	}
}
