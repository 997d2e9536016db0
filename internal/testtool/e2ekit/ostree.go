package e2ekit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// ToolTimeout bounds every external command RunCmd runs.
const ToolTimeout = 2 * time.Minute

// RequireOstreeGPG requires both peers of the GPG tests (testtool.Require).
func RequireOstreeGPG(t testing.TB) {
	t.Helper()
	testtool.Require(t, "ostree")
	testtool.Require(t, "gpg")
}

// ToolEnv is the environment of external commands: a fresh GNUPGHOME, a
// UTF-8 locale for the non-ASCII file names, and no HTTP proxy (the server
// is on loopback).
func ToolEnv(t testing.TB, extra ...string) []string {
	t.Helper()
	gnupg := filepath.Join(t.TempDir(), "gnupg")
	if err := os.Mkdir(gnupg, 0o700); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "http_proxy", "https_proxy", "all_proxy", "no_proxy", "gnupghome", "lc_all", "lang", "ostree_dummy_sign_enabled":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "GNUPGHOME="+gnupg, "LC_ALL=C.UTF-8", "LANG=C.UTF-8", "NO_PROXY=*", "no_proxy=*")
	return append(env, extra...)
}

// RunCmd runs a program with env and returns its combined output.
func RunCmd(env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ToolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (timed out after %s)", err, ToolTimeout)
	}
	return out.String(), err
}

// MustRunCmd is RunCmd that fails the test on error.
func MustRunCmd(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	out, err := RunCmd(env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// Client is a repository of the stock ostree CLI with one remote, "origin".
type Client struct {
	T    testing.TB
	Repo string
	Env  []string
}

// NewClient creates an archive repository and adds the remote origin at
// url with the given `ostree remote add` options.
func NewClient(t testing.TB, env []string, url string, remoteOpts ...string) *Client {
	t.Helper()
	c := &Client{T: t, Repo: filepath.Join(t.TempDir(), "client"), Env: env}
	c.MustRun("init", "--mode=archive")
	args := append([]string{"remote", "add"}, remoteOpts...)
	c.MustRun(append(args, "origin", url)...)
	return c
}

// GPGRemote are the remote options of a client that verifies commits and
// the summary with the OpenPGP public key file pub.
func GPGRemote(pub string) []string {
	return []string{"--set=gpg-verify=true", "--set=gpg-verify-summary=true", "--gpg-import=" + pub}
}

// Run runs ostree --repo=REPO with args.
func (c *Client) Run(args ...string) (string, error) {
	return RunCmd(c.Env, "ostree", append([]string{"--repo=" + c.Repo}, args...)...)
}

// MustRun is Run that fails the test on error.
func (c *Client) MustRun(args ...string) string {
	c.T.Helper()
	out, err := c.Run(args...)
	if err != nil {
		c.T.Fatalf("ostree --repo=%s %s: %v\n%s", c.Repo, strings.Join(args, " "), err, out)
	}
	return out
}

// RevParse returns what ostree says a ref or remote:ref points at.
func (c *Client) RevParse(ref string) string {
	c.T.Helper()
	return strings.TrimSpace(c.MustRun("rev-parse", ref))
}
