package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/testtool"
	"github.com/mxos-linux/mxos-update/internal/testtool/e2ekit"
)

// TestPublishedEd25519VerifiedByOpenSSL checks the ed25519 signatures the
// release pipeline publishes with another implementation, since no stock
// ostree in Debian verifies ed25519 (see testtool.OpenSSLVerifyEd25519):
// stock ostree pulls a release from our server (OpenPGP-verified, as
// Debian's ostree can) and prints the commit's ostree.sign.ed25519 from
// the detached metadata it pulled; summary and summary.sig are fetched
// from the server as a client does. `openssl pkeyutl -verify` must accept
// each signature over the exact bytes with the release key's ed25519.pub,
// and refuse it over bytes one bit off.
func TestPublishedEd25519VerifiedByOpenSSL(t *testing.T) {
	requireTool(t, "ostree")
	requireTool(t, "openssl")
	keys := newKeys(t)
	s := newSite(t, keys)
	src := filepath.Join(t.TempDir(), "src")
	makeRichTree(t, src, treeSpec{seed: 4})
	res := s.publish(t, "10.0.1", src)
	url, _ := serve(t, s.data)

	c := newClient(t, toolEnv(t), url, gpgRemote(keys.pgpPub)...)
	c.mustRun("pull", "origin", testRef)
	out := c.mustRun("show", "--print-detached-metadata-key="+sign.Ed25519MetaKey, res.Commit.String())
	commitSigs := testtool.ParseOstreeByteArrays(t, out)
	commitBytes, err := os.ReadFile(objectFile(c.repo, res.Commit, ostree.ObjCommit))
	if err != nil {
		t.Fatal(err)
	}

	summary, summarySig := httpGet(t, url+"/summary"), httpGet(t, url+"/summary.sig")
	md, err := ostree.ParseMetadata(summarySig)
	if err != nil {
		t.Fatalf("summary.sig: %v", err)
	}
	summarySigs, _ := md.ByteArrays(sign.Ed25519MetaKey)

	pub := filepath.Join(keys.dir, sign.Ed25519PublicFile)
	for _, tc := range []struct {
		what string
		data []byte
		sigs [][]byte
	}{
		{"commit " + res.Commit.String(), commitBytes, commitSigs},
		{"summary", summary, summarySigs},
	} {
		if len(tc.sigs) != 1 {
			t.Errorf("%s: %d ed25519 signatures, want one (one release key)", tc.what, len(tc.sigs))
			continue
		}
		if err := testtool.OpenSSLVerifyEd25519(t, pub, tc.data, tc.sigs[0]); err != nil {
			ours := sign.VerifyAll(keys.verifiers, tc.data, map[string][][]byte{sign.Ed25519MetaKey: tc.sigs})
			t.Errorf("%s: openssl refused our ed25519 signature %x (our verifier: %v): %v", tc.what, tc.sigs[0], ours, err)
		}
		off := bytes.Clone(tc.data)
		off[len(off)/2] ^= 0x01
		if err := testtool.OpenSSLVerifyEd25519(t, pub, off, tc.sigs[0]); err == nil {
			t.Errorf("%s: openssl accepted the signature over tampered bytes", tc.what)
		}
	}
}

func httpGet(t *testing.T, url string) []byte {
	t.Helper()
	return e2ekit.HTTPGet(t, url)
}
