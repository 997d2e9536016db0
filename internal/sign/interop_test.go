package sign

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/gvariant"
	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// Interop tests against the real GnuPG and ostree. They skip when a tool is
// missing, unless CI is set (see requireTool).

// gpgHome makes a private GnuPG home and stops any agent started in it.
func gpgHome(t *testing.T, gpg string) string {
	t.Helper()
	home := t.TempDir()
	t.Cleanup(func() {
		if gpgconf, err := exec.LookPath("gpgconf"); err == nil {
			_, _ = runTool(t, gpgconf, "--homedir", home, "--kill", "all")
		}
	})
	mustRunTool(t, gpg, "--batch", "--homedir", home, "--list-keys") // initialise quietly
	return home
}

func writeTestFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestInteropGnuPGVerifiesOurSignatures: `gpg --import openpgp.pub.asc` then
// `gpg --verify sig data` accepts our signature and rejects a tampered file
// or another key's signature.
func TestInteropGnuPGVerifiesOurSignatures(t *testing.T) {
	gpg := requireTool(t, "gpg")
	dir, _, pgp := testKeyDir(t, GenerateOptions{})
	_, _, otherPGP := testKeyDir(t, GenerateOptions{Name: "Not imported"})
	home := gpgHome(t, gpg)
	out := mustRunTool(t, gpg, "--batch", "--homedir", home, "--import", filepath.Join(dir, OpenPGPPublicFile))
	if !strings.Contains(out, "imported: 1") {
		t.Fatalf("gpg --import did not import the key:\n%s", out)
	}

	work := t.TempDir()
	data := []byte("ostree commit object\x00with binary\xffbytes\r\n")
	sig, err := pgp.Sign(data)
	if err != nil {
		t.Fatal(err)
	}
	otherSig, err := otherPGP.Sign(data)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(data)
	tampered[3] ^= 0x20
	fpr := pgp.(KeyIdentifier).KeyID()

	tests := []struct {
		name   string
		sig    []byte
		data   []byte
		wantOK bool
	}{
		{"our signature", sig, data, true},
		{"tampered file", sig, tampered, false},
		{"line endings changed", sig, bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n")), false},
		{"key not imported", otherSig, data, false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sigPath := writeTestFile(t, filepath.Join(work, "sig"+string(rune('a'+i))), tc.sig)
			dataPath := writeTestFile(t, filepath.Join(work, "data"+string(rune('a'+i))), tc.data)
			out, err := runTool(t, gpg, "--batch", "--homedir", home, "--status-fd", "1", "--verify", sigPath, dataPath)
			if tc.wantOK {
				if err != nil {
					t.Fatalf("gpg --verify failed: %v\n%s", err, out)
				}
				if !strings.Contains(out, "[GNUPG:] VALIDSIG "+fpr) {
					t.Fatalf("gpg output lacks VALIDSIG for %s:\n%s", fpr, out)
				}
				return
			}
			if err == nil {
				t.Fatalf("gpg --verify accepted it:\n%s", out)
			}
			if strings.Contains(out, "VALIDSIG") {
				t.Fatalf("gpg reported VALIDSIG despite failing:\n%s", out)
			}
		})
	}
}

// TestInteropWeVerifyGnuPGSignatures: signatures made by gpg itself with our
// secret key (imported into GnuPG) are accepted when they are binary with a
// strong hash, and refused otherwise, so ostree-made (`ostree gpg-sign`)
// signatures are interchangeable with ours.
func TestInteropWeVerifyGnuPGSignatures(t *testing.T) {
	gpg := requireTool(t, "gpg")
	dir, _, _ := testKeyDir(t, GenerateOptions{})
	home := gpgHome(t, gpg)
	mustRunTool(t, gpg, "--batch", "--homedir", home, "--import", filepath.Join(dir, OpenPGPSecretFile))
	v := mustOpenPGPVerifier(t, dir)

	work := t.TempDir()
	data := []byte("summary bytes\n")
	dataPath := writeTestFile(t, filepath.Join(work, "data"), data)
	tests := []struct {
		name   string
		args   []string
		wantOK bool
	}{
		{"sha512 binary", []string{"--digest-algo", "SHA512"}, true},
		{"sha256 binary", []string{"--digest-algo", "SHA256"}, true},
		{"sha1 refused", []string{"--digest-algo", "SHA1"}, false},
		{"ripemd160 refused", []string{"--digest-algo", "RIPEMD160"}, false},
		{"text mode refused", []string{"--textmode"}, false},
		{"armored refused", []string{"--armor"}, false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sigPath := filepath.Join(work, "sig"+string(rune('a'+i)))
			args := append([]string{"--batch", "--homedir", home, "--pinentry-mode", "loopback", "--passphrase", "", "--detach-sign", "-o", sigPath}, tc.args...)
			mustRunTool(t, gpg, append(args, dataPath)...)
			err := v.Verify(data, [][]byte{readFile(t, sigPath)})
			if tc.wantOK && err != nil {
				t.Fatalf("gpg signature rejected: %v", err)
			}
			if !tc.wantOK && err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestInteropOstreeRemoteAddGPGImport: a stock ostree accepts openpgp.pub.asc
// as a remote's trusted key.
func TestInteropOstreeRemoteAddGPGImport(t *testing.T) {
	ostree := requireTool(t, "ostree")
	dir, _, pgp := testKeyDir(t, GenerateOptions{})
	repo := filepath.Join(t.TempDir(), "repo")
	mustRunTool(t, ostree, "init", "--repo="+repo, "--mode=archive")
	out := mustRunTool(t, ostree, "remote", "add", "--repo="+repo, "--gpg-import="+filepath.Join(dir, OpenPGPPublicFile), "r", "http://127.0.0.1:1")
	if !strings.Contains(out, "Imported 1 GPG key") {
		t.Fatalf("ostree did not report importing the key:\n%s", out)
	}
	out = mustRunTool(t, ostree, "remote", "gpg-list-keys", "--repo="+repo, "r")
	if fpr := pgp.(KeyIdentifier).KeyID(); !strings.Contains(out, fpr) {
		t.Fatalf("ostree remote gpg-list-keys lacks %s:\n%s", fpr, out)
	}
}

// TestInteropOstreePullVerifiesOurGPGSignatures is the end-to-end proof: a
// stock `ostree pull` with gpg-verify=true and gpg-verify-summary=true accepts
// a commit and summary carrying our signatures in ostree.gpgsigs, and refuses
// them when the signatures are wrong or missing.
func TestInteropOstreePullVerifiesOurGPGSignatures(t *testing.T) {
	ostree := requireTool(t, "ostree")
	requireTool(t, "gpg") // ostree verifies through gpgme, which runs gpg
	dir, _, pgp := testKeyDir(t, GenerateOptions{})
	_, _, otherPGP := testKeyDir(t, GenerateOptions{Name: "Untrusted"})
	pub := filepath.Join(dir, OpenPGPPublicFile)

	good := func(_ *testing.T, b []byte) [][]byte { return [][]byte{mustSign(t, pgp, b)} }
	tests := []struct {
		name       string
		commitSigs func(*testing.T, []byte) [][]byte // nil func: no .commitmeta
		summSigs   func(*testing.T, []byte) [][]byte // nil func: no summary.sig
		wantOK     bool
		wantErr    string
	}{
		{name: "signed commit and summary", commitSigs: good, summSigs: good, wantOK: true},
		{name: "untrusted key on commit", commitSigs: func(t *testing.T, b []byte) [][]byte { return [][]byte{mustSign(t, otherPGP, b)} }, summSigs: good},
		{name: "commit signature over other bytes", commitSigs: func(t *testing.T, b []byte) [][]byte { return [][]byte{mustSign(t, pgp, append(b, 0))} }, summSigs: good},
		{name: "untrusted key on summary", commitSigs: good, summSigs: func(t *testing.T, b []byte) [][]byte { return [][]byte{mustSign(t, otherPGP, b)} }},
		{name: "unsigned commit", summSigs: good},
		{name: "unsigned summary", commitSigs: good},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newOstreeServerRepo(t, ostree)
			if tc.commitSigs != nil {
				writeGVariantFile(t, srv.commitPath+"meta", GPGMetaKey, tc.commitSigs(t, readFile(t, srv.commitPath)))
			}
			if tc.summSigs != nil {
				writeGVariantFile(t, filepath.Join(srv.repo, "summary.sig"), GPGMetaKey, tc.summSigs(t, readFile(t, filepath.Join(srv.repo, "summary"))))
			}
			cli := filepath.Join(t.TempDir(), "cli")
			mustRunTool(t, ostree, "init", "--repo="+cli, "--mode=archive")
			mustRunTool(t, ostree, "remote", "add", "--repo="+cli, "--set=gpg-verify=true", "--set=gpg-verify-summary=true",
				"--gpg-import="+pub, "origin", "file://"+srv.repo)
			out, err := runTool(t, ostree, "pull", "--repo="+cli, "origin", "main")
			if tc.wantOK {
				if err != nil {
					t.Fatalf("ostree pull rejected our signatures: %v\n%s", err, out)
				}
				rev := strings.TrimSpace(mustRunTool(t, ostree, "rev-parse", "--repo="+cli, "origin:main"))
				if rev != srv.commit {
					t.Fatalf("pulled %s, want %s", rev, srv.commit)
				}
				return
			}
			if err == nil {
				t.Fatalf("ostree pull accepted it:\n%s", out)
			}
			t.Logf("ostree refused as expected: %s", strings.TrimSpace(out))
		})
	}
}

// TestInteropOpenSSLVerifiesEd25519 checks our ed25519 signatures with
// another implementation. No stock ostree at hand verifies ed25519
// (Debian 12's 2022.7 and Debian 13's 2025.2 are both built without
// sign-ed25519), so OpenSSL stands in as the peer: a commit made by stock
// `ostree commit` and its summary are signed with the key pair
// GenerateKeys writes, the signatures are stored as ostree.sign.ed25519 in
// the commit's .commitmeta and in summary.sig, read back out of those
// files (the commit's by stock `ostree show`), and `openssl pkeyutl
// -verify -rawin` checks them against the public key from ed25519.pub,
// the file devices are given. A tampered commit, summary or signature,
// and another key, must be refused. (internal/e2e
// TestPublishedEd25519VerifiedByOpenSSL does the same for what the
// release pipeline publishes.)
func TestInteropOpenSSLVerifiesEd25519(t *testing.T) {
	ostree := requireTool(t, "ostree")
	requireTool(t, "openssl")
	dir, ed, _ := testKeyDir(t, GenerateOptions{})
	_, otherEd, _ := testKeyDir(t, GenerateOptions{Name: "Not trusted"})
	srv := newOstreeServerRepo(t, ostree)
	summaryPath := filepath.Join(srv.repo, "summary")
	commit, summary := readFile(t, srv.commitPath), readFile(t, summaryPath)
	// A second element that ends in its only NUL: GLib prints it as a
	// bytestring (b'...'), as it does about one real signature in 300.
	odd := []byte("\x01\xff\\'\"\n\x7fsig\x00")
	writeGVariantFile(t, srv.commitPath+"meta", Ed25519MetaKey, [][]byte{mustSign(t, ed, commit), odd})
	writeGVariantFile(t, summaryPath+".sig", Ed25519MetaKey, [][]byte{mustSign(t, ed, summary)})

	// The signatures as a client finds them in the repository.
	out := mustRunTool(t, ostree, "show", "--repo="+srv.repo, "--print-detached-metadata-key="+Ed25519MetaKey, srv.commit)
	t.Logf("ostree show --print-detached-metadata-key: %s", out)
	commitSigs := testtool.ParseOstreeByteArrays(t, out)
	if len(commitSigs) != 2 || len(commitSigs[0]) != 64 || !bytes.Equal(commitSigs[1], odd) {
		t.Fatalf("ostree show printed %q, read as %q: want a 64-byte signature and %q", out, commitSigs, odd)
	}
	commitSig := commitSigs[0]
	summarySig := summarySignature(t, readFile(t, summaryPath+".sig"))

	pub := filepath.Join(dir, Ed25519PublicFile)
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i%len(b)] ^= 0x01
		return b
	}
	tests := []struct {
		name      string
		data, sig []byte
		wantOK    bool
	}{
		{"commit", commit, commitSig, true},
		{"summary", summary, summarySig, true},
		{"tampered commit", flip(commit, len(commit)/2), commitSig, false},
		{"tampered summary", flip(summary, 7), summarySig, false},
		{"tampered signature", commit, flip(commitSig, 40), false},
		{"summary signature on the commit", commit, summarySig, false},
		{"another key", commit, mustSign(t, otherEd, commit), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := testtool.OpenSSLVerifyEd25519(t, pub, tc.data, tc.sig)
			switch {
			case tc.wantOK && err != nil:
				t.Fatalf("openssl refused our ed25519 signature: %v", err)
			case !tc.wantOK && err == nil:
				t.Fatal("openssl accepted it")
			}
		})
	}
}

// summarySignature reads the one ostree.sign.ed25519 signature out of a
// summary.sig (a{sv}) with the product's GVariant decoder.
func summarySignature(t *testing.T, b []byte) []byte {
	t.Helper()
	v, err := gvariant.Unmarshal("a{sv}", b)
	if err != nil {
		t.Fatalf("summary.sig: %v", err)
	}
	entries, _ := v.([]gvariant.DictEntry)
	for _, de := range entries {
		if de.Key != Ed25519MetaKey {
			continue
		}
		vv, _ := de.Value.(gvariant.Variant)
		sigs, _ := vv.Value.([]any)
		if vv.Type != "aay" || len(sigs) != 1 {
			t.Fatalf("summary.sig: %s is %s with %d values, want aay with one signature", Ed25519MetaKey, vv.Type, len(sigs))
		}
		sig, ok := sigs[0].([]byte)
		if !ok {
			t.Fatalf("summary.sig: signature decoded as %T", sigs[0])
		}
		return sig
	}
	t.Fatalf("summary.sig has no %s", Ed25519MetaKey)
	return nil
}

func mustSign(t *testing.T, s Signer, data []byte) []byte {
	t.Helper()
	sig, err := s.Sign(data)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

type ostreeServerRepo struct {
	repo, commit, commitPath string
}

// newOstreeServerRepo makes an archive repo with one commit on "main" and an
// unsigned summary.
func newOstreeServerRepo(t *testing.T, ostree string) ostreeServerRepo {
	t.Helper()
	base := t.TempDir()
	repo := filepath.Join(base, "srv")
	tree := filepath.Join(base, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "usr", "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(tree, "usr", "lib", "os-release"), []byte("NAME=MxOS\n"))
	mustRunTool(t, ostree, "init", "--repo="+repo, "--mode=archive")
	commit := strings.TrimSpace(mustRunTool(t, ostree, "commit", "--repo="+repo, "-b", "main", "--tree=dir="+tree, "-s", "test", "--owner-uid=0", "--owner-gid=0", "--no-xattrs"))
	if len(commit) != 64 {
		t.Fatalf("unexpected ostree commit output %q", commit)
	}
	mustRunTool(t, ostree, "summary", "--repo="+repo, "-u")
	return ostreeServerRepo{repo: repo, commit: commit, commitPath: filepath.Join(repo, "objects", commit[:2], commit[2:]+".commit")}
}

// writeGVariantFile writes the a{sv} {key: <aay sigs>} that ostree reads as
// detached commit metadata and as summary.sig.
func writeGVariantFile(t *testing.T, path, key string, sigs [][]byte) {
	t.Helper()
	writeTestFile(t, path, gvSignatureDict(key, sigs))
}

// gvSignatureDict serialises a{sv} with one entry mapping key to an aay, in
// GVariant normal form (GLib "GVariant serialisation" spec; see
// notes/ostree-formats.md §2.5). Test-only: the product's GVariant code lives
// elsewhere; this exists so the interop test does not depend on it.
func gvSignatureDict(key string, sigs [][]byte) []byte {
	// aay: elements (alignment 1) followed by their end offsets.
	var aay []byte
	var ends []int
	for _, s := range sigs {
		aay = append(aay, s...)
		ends = append(ends, len(aay))
	}
	aay = gvAppendOffsets(aay, ends)
	// v: child value, NUL, type string.
	v := append(append(aay, 0), "aay"...)
	// {sv}: key string, pad to 8 (alignment of v), value; key end offset last.
	entry := append([]byte(key), 0)
	keyEnd := len(entry)
	for len(entry)%8 != 0 {
		entry = append(entry, 0)
	}
	entry = gvAppendOffsets(append(entry, v...), []int{keyEnd})
	// a{sv} with one variable-size element: element, then its end offset.
	return gvAppendOffsets(bytes.Clone(entry), []int{len(entry)})
}

// gvAppendOffsets appends framing offsets using the smallest width that can
// address the whole container, as normal form requires.
func gvAppendOffsets(body []byte, offsets []int) []byte {
	if len(offsets) == 0 {
		return body
	}
	size := 1
	for _, w := range []int{1, 2, 4, 8} {
		size = w
		if w == 8 || uint64(len(body)+len(offsets)*w) < uint64(1)<<(8*w) {
			break
		}
	}
	for _, o := range offsets {
		for i := 0; i < size; i++ {
			body = append(body, byte(o>>(8*i)))
		}
	}
	return body
}
