// Package testserver starts an in-process mxos-server for tests: an
// SQLite store, this repository's channels, freshly generated keys, a
// token per role and a release.Publisher on the server's repository. It
// is imported only from _test.go files (never from internal/server's own
// tests: that would be an import cycle).
package testserver

import (
	"context"
	"net"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/release"
	"github.com/mxos-linux/mxos-update/internal/server"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/storage/object"
	"github.com/mxos-linux/mxos-update/internal/tlogstore"
)

// Options says what the server has on; the zero value is the update and
// admin API with no registry and no signed channel metadata.
type Options struct {
	// DataDir is the server's data directory (a t.TempDir() when empty).
	DataDir string
	// Roles each get an API token, named "t-<role>", in Server.Tokens.
	Roles []auth.Role
	// RepoOnly leaves out the store and channels: the server serves its
	// repository (and registry) only, with no API.
	RepoOnly bool
	// Registry turns on the OCI registry at /v2/.
	Registry bool
	// Metadata turns on signed channel metadata: the release key is the
	// root and release role, a second key the online role.
	Metadata bool
	// OnlineSummaryKey signs the summary with the online key (the
	// metadata's online role when Metadata is on), as mxos-server
	// --online-keys does; by default the release key signs it, as a local
	// publish does. A device set up as the README says (release keys in
	// trusted_keys, root.json) needs Metadata and OnlineSummaryKey.
	OnlineSummaryKey bool
	// ChannelsDir replaces this repository's channels/ (e.g. a copy with
	// one file changed).
	ChannelsDir string
	// TransparencyLog turns on the public release log at /log/, in
	// DATA/log with its key generated in DATA/log-key.
	TransparencyLog bool
	// LogKeyFile, when set, is the log's key file (else DATA/log-key);
	// LogWitnessPolicy the witnesses that must cosign its checkpoints.
	LogKeyFile       string
	LogWitnessPolicy []byte
	// RepoStore serves /repo/ from this object store (an S3 bucket),
	// mirrored from the data directory after every release;
	// RepoRedirect answers content-addressed files with presigned
	// redirects (server.Config).
	RepoStore    object.Store
	RepoRedirect bool
	// Serve runs Server.Serve on a listener (background loops, metadata
	// refreshed before the first request) instead of its handler under
	// httptest.
	Serve bool
}

// Keys is a generated key directory with its signers and verifiers.
type Keys struct {
	Dir       string
	Signers   []sign.Signer
	Verifiers []sign.Verifier
}

// GenerateKeys makes a key directory in a t.TempDir().
func GenerateKeys(t testing.TB) Keys {
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
	return Keys{Dir: dir, Signers: s, Verifiers: v}
}

// Server is a running server; it stops when the test ends.
type Server struct {
	URL  string // http://127.0.0.1:port
	Host string // 127.0.0.1:port
	Srv  *server.Server
	Data string
	// Store is nil with RepoOnly.
	Store *db.Store
	// Repo is the server's repository; Publisher signs into it with the
	// release key.
	Repo      *ostree.Repo
	Publisher *release.Publisher
	// Release is the release key: what publishes and what devices trust.
	Release Keys
	// Online is the online key, made with Metadata or OnlineSummaryKey.
	Online Keys
	Tokens map[auth.Role]string

	// With Metadata: its directory, the repository and the release key as
	// TUF signers.
	MetaDir     string
	Meta        *publish.Repo
	MetaSigners []signature.Signer

	// With TransparencyLog: the log and its public key.
	Log    *tlogstore.Log
	LogKey string
}

// ChannelsDir is this repository's channels directory.
func ChannelsDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "channels")
}

// Start starts a server as opts says.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	ctx := context.Background()
	s := &Server{Data: opts.DataDir, Tokens: map[auth.Role]string{}}
	if s.Data == "" {
		s.Data = t.TempDir()
	}
	var err error
	if s.Repo, err = ostree.Create(filepath.Join(s.Data, "repo")); err != nil {
		t.Fatal(err)
	}
	s.Release = GenerateKeys(t)
	s.Publisher = &release.Publisher{Repo: s.Repo, Signers: s.Release.Signers}
	cfg := server.Config{DataDir: s.Data, TrustedKeys: s.Release.Verifiers, OnlineSigners: s.Release.Signers, Registry: opts.Registry,
		RepoRedirect: opts.RepoRedirect}
	if opts.RepoStore != nil { // counted, as mxos-server --storage does
		c := object.CountErrors(opts.RepoStore)
		cfg.RepoStore, cfg.StorageErrors, cfg.RepoFetch = c, c.Errors, pull.FetchVerified
	}
	if opts.OnlineSummaryKey || opts.Metadata {
		s.Online = GenerateKeys(t)
	}
	cfg.OnlineVerifiers = s.Release.Verifiers
	if opts.OnlineSummaryKey {
		cfg.OnlineSigners, cfg.OnlineVerifiers = s.Online.Signers, s.Online.Verifiers
	}
	if !opts.RepoOnly {
		if s.Store, err = db.Open(ctx, "", s.Data); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Store.Close() })
		dir := opts.ChannelsDir
		if dir == "" {
			dir = ChannelsDir()
		}
		if cfg.Channels, err = channel.LoadDir(dir); err != nil {
			t.Fatal(err)
		}
		cfg.Store = s.Store
	}
	if opts.Metadata {
		s.startMetadata(t)
		cfg.Metadata = s.Meta
	}
	if opts.TransparencyLog {
		keyFile := opts.LogKeyFile
		if keyFile == "" {
			keyFile = filepath.Join(s.Data, "log-key")
		}
		if s.Log, err = tlogstore.Open(ctx, tlogstore.Options{Dir: filepath.Join(s.Data, "log"), KeyFile: keyFile,
			Origin: "test.mxos.example/releases", CheckpointInterval: 100 * time.Millisecond, WitnessPolicy: opts.LogWitnessPolicy, WitnessWait: 5 * time.Second}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Log.Close(context.Background()) })
		cfg.TransparencyLog, s.LogKey = s.Log, s.Log.VerifierKey()
	}
	if s.Srv, err = server.New(cfg); err != nil {
		t.Fatal(err)
	}
	if opts.Serve {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Srv.Serve(sctx, ln) }()
		t.Cleanup(func() { cancel(); <-done; s.Srv.Close() })
		s.Host = ln.Addr().String()
		s.URL = "http://" + s.Host
	} else {
		ts := httptest.NewServer(s.Srv.Handler())
		t.Cleanup(func() { ts.Close(); s.Srv.Close() })
		s.URL = ts.URL
		s.Host = ts.Listener.Addr().String()
	}
	for _, role := range opts.Roles {
		tc, err := server.CreateToken(ctx, s.Store, "t-"+string(role), role, "test", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		s.Tokens[role] = tc.Token
	}
	return s
}

// startMetadata makes DATA/metadata: root and release signed by the
// release key, online by the online key.
func (s *Server) startMetadata(t testing.TB) {
	t.Helper()
	var err error
	if s.MetaSigners, err = publish.LoadEd25519Signers(s.Release.Dir); err != nil {
		t.Fatal(err)
	}
	online, err := publish.LoadEd25519Signers(s.Online.Dir)
	if err != nil {
		t.Fatal(err)
	}
	roleKeys := func(signers []signature.Signer) publish.RoleKeys {
		k, err := publish.PublicKeys(signers...)
		if err != nil {
			t.Fatal(err)
		}
		return publish.RoleKeys{Keys: k, Threshold: 1}
	}
	rel := roleKeys(s.MetaSigners)
	s.MetaDir = filepath.Join(s.Data, "metadata")
	keys := publish.Keys{Root: rel, Release: rel, Online: roleKeys(online)}
	if err := publish.Init(s.MetaDir, keys, s.MetaSigners, s.MetaSigners, publish.Options{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if s.Meta, err = publish.Open(s.MetaDir, online, publish.Options{}); err != nil {
		t.Fatal(err)
	}
}

// DeviceToken makes a device token bound to id (a machine of the fleet;
// one device token speaks for one device only).
func (s *Server) DeviceToken(t testing.TB, id string) string {
	t.Helper()
	tc, err := server.CreateTokenWith(context.Background(), s.Store, server.TokenOptions{Name: "dev-" + id, Role: auth.RoleDevice,
		By: "test", Now: time.Now(), DeviceID: id})
	if err != nil {
		t.Fatal(err)
	}
	return tc.Token
}

// Client is an API client with role's token.
func (s *Server) Client(t testing.TB, role auth.Role) *client.Client {
	t.Helper()
	c, err := client.New(s.URL, s.Tokens[role])
	if err != nil {
		t.Fatal(err)
	}
	return c
}
