package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/testserver"
	"github.com/mxos-linux/mxos-update/internal/testtool"
	"github.com/mxos-linux/mxos-update/internal/testtool/e2ekit"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/server"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// testRef is the channel ref the tests publish on.
const testRef = "mxos/10/x86_64/testing"

// toolTimeout bounds every external command.
const toolTimeout = e2ekit.ToolTimeout

// requireTool returns the path of an external program; see testtool.Require.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	return testtool.Require(t, name)
}

// requireOstreeGPG is requireTool for both peers of the GPG tests.
func requireOstreeGPG(t testing.TB) {
	t.Helper()
	e2ekit.RequireOstreeGPG(t)
}

// toolEnv is the environment of external commands (e2ekit.ToolEnv).
func toolEnv(t testing.TB, extra ...string) []string {
	t.Helper()
	return e2ekit.ToolEnv(t, extra...)
}

// runCmd runs a program with env and returns its combined output.
func runCmd(env []string, name string, args ...string) (string, error) {
	return e2ekit.RunCmd(env, name, args...)
}

// mustRunCmd is runCmd that fails the test on error.
func mustRunCmd(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	return e2ekit.MustRunCmd(t, env, name, args...)
}

// client is a repository of the stock ostree CLI with one remote,
// "origin" (e2ekit.Client).
type client struct {
	*e2ekit.Client
	repo string
}

// newClient creates an archive repository and adds the remote origin at
// url with the given `ostree remote add` options.
func newClient(t testing.TB, env []string, url string, remoteOpts ...string) *client {
	t.Helper()
	c := e2ekit.NewClient(t, env, url, remoteOpts...)
	return &client{Client: c, repo: c.Repo}
}

// gpgRemote are the remote options of a client that verifies commits and
// the summary with the OpenPGP public key file pub.
func gpgRemote(pub string) []string { return e2ekit.GPGRemote(pub) }

func (c *client) run(args ...string) (string, error) { return c.Run(args...) }

func (c *client) mustRun(args ...string) string {
	c.T.Helper()
	return c.MustRun(args...)
}

// revParse returns what ostree says a ref or remote:ref points at.
func (c *client) revParse(ref string) string {
	c.T.Helper()
	return c.RevParse(ref)
}

// reqCounter counts the repository requests the server answers.
type reqCounter struct {
	objects    atomic.Int64 // GET /repo/objects/… other than .commitmeta
	commitmeta atomic.Int64
	total      atomic.Int64
	deltas     atomic.Int64 // GET /repo/deltas/… (superblocks and parts)
	fromDeltas atomic.Int64 // of which deltas from a commit (not from scratch)
}

func (c *reqCounter) reset() {
	c.objects.Store(0)
	c.commitmeta.Store(0)
	c.total.Store(0)
	c.deltas.Store(0)
	c.fromDeltas.Store(0)
}

func (c *reqCounter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.total.Add(1)
		if rest, ok := strings.CutPrefix(r.URL.Path, "/repo/deltas/"); ok && r.Method == http.MethodGet {
			c.deltas.Add(1)
			if strings.Contains(rest, "-") {
				c.fromDeltas.Add(1)
			}
		}
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/repo/objects/") {
			if strings.HasSuffix(r.URL.Path, ".commitmeta") {
				c.commitmeta.Add(1)
			} else {
				c.objects.Add(1)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// serve runs the in-process server for dataDir (which must hold repo/) on
// a random loopback port and returns the remote URL for ostree.
func serve(t testing.TB, dataDir string) (string, *reqCounter) {
	t.Helper()
	srv, err := server.New(server.Config{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	cnt := &reqCounter{}
	ts := httptest.NewServer(cnt.wrap(srv.Handler()))
	t.Cleanup(func() {
		ts.Close()
		srv.Close()
	})
	return ts.URL + "/repo", cnt
}

// keySet is a generated release key directory.
type keySet struct {
	dir       string
	pgpPub    string // openpgp.pub.asc
	signers   []sign.Signer
	verifiers []sign.Verifier
}

func newKeys(t testing.TB) *keySet { return keySetOf(testserver.GenerateKeys(t)) }

func keySetOf(k testserver.Keys) *keySet {
	return &keySet{dir: k.Dir, pgpPub: filepath.Join(k.Dir, sign.OpenPGPPublicFile), signers: k.Signers, verifiers: k.Verifiers}
}

// server side of a test: a data directory with its repository.
type site struct {
	data string
	repo *ostree.Repo
	keys *keySet
}

func newSite(t testing.TB, keys *keySet) *site {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	repo, err := ostree.Create(filepath.Join(data, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	return &site{data: data, repo: repo, keys: keys}
}

func (s *site) repoDir() string { return s.repo.Path() }

// publish runs the release pipeline in-process.
func (s *site) publish(t testing.TB, version, source string) *release.Result {
	t.Helper()
	p := &release.Publisher{Repo: s.repo, Signers: s.keys.signers}
	res, err := p.Publish(context.Background(), release.Request{Ref: testRef, Version: version, Source: source})
	if err != nil {
		t.Fatalf("publish %s: %v", version, err)
	}
	return res
}

// fsck runs our own fsck with signature checks and fails on any problem.
func (s *site) fsck(t testing.TB) {
	t.Helper()
	rep, err := s.repo.Fsck(context.Background(), ostree.FsckOptions{VerifyCommit: release.CommitVerifier(s.keys.verifiers)})
	if err != nil {
		t.Fatalf("fsck: %v", err)
	}
	if len(rep.Errors) > 0 {
		t.Fatalf("fsck found %d problems: %v", len(rep.Errors), errors.Join(rep.Errors...))
	}
}

// verifySummaryPair checks that summary.sig in repoDir signs summary.
func verifySummaryPair(repoDir string, verifiers []sign.Verifier) error {
	sum, err := os.ReadFile(filepath.Join(repoDir, "summary"))
	if err != nil {
		return err
	}
	sig, err := os.ReadFile(filepath.Join(repoDir, "summary.sig"))
	if err != nil {
		return err
	}
	return verifySummaryBytes(sum, sig, verifiers)
}

func verifySummaryBytes(sum, sig []byte, verifiers []sign.Verifier) error {
	md, err := ostree.ParseMetadata(sig)
	if err != nil {
		return fmt.Errorf("summary.sig: %w", err)
	}
	return sign.VerifyAll(verifiers, sum, release.SignatureMap(md))
}

// objectFile is the path of an object in an archive repository.
func objectFile(repoDir string, c ostree.Checksum, typ ostree.ObjectType) string {
	return filepath.Join(repoDir, filepath.FromSlash(ostree.ObjectPath(c, typ)))
}

// flipByte inverts the low bit of the byte at off (negative: from the end)
// in place, keeping the file's inode.
func flipByte(t testing.TB, path string, off int64) {
	t.Helper()
	e2ekit.FlipByte(t, path, off)
}

// copyDir copies a tree of regular files, directories and symlinks.
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		switch {
		case fi.IsDir():
			return os.MkdirAll(out, fi.Mode().Perm()|0o700)
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, out)
		case fi.Mode().IsRegular():
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			o, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
			if err != nil {
				return err
			}
			if _, err := io.Copy(o, in); err != nil {
				o.Close()
				return err
			}
			return o.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers.
type lockedBuffer = e2ekit.LockedBuffer
