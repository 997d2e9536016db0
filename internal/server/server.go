package server

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/changefeed"
	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/credindex"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/fastget"
	"github.com/mxos-linux/mxos-update/internal/oci/registry"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/storage/object"
	"github.com/mxos-linux/mxos-update/internal/tlogstore"
	"github.com/mxos-linux/mxos-update/internal/updates"
)

// Defaults for the zero values of Config.
const (
	DefaultListen            = "127.0.0.1:8080"
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultShutdownTimeout   = 15 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultObjectMemory      = 128 << 20
)

// Config configures a Server. Only DataDir is required.
type Config struct {
	// DataDir holds the server's state; the OSTree repository is DataDir/repo.
	DataDir string
	// Listen is the TCP address used by ListenAndServe (DefaultListen if empty).
	Listen string
	// Logger receives one Debug line per request and errors at Warn and
	// Error; nil disables logging.
	Logger *zap.Logger

	// ReadHeaderTimeout bounds how long a client may take to send headers.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle for this long.
	IdleTimeout time.Duration
	// ShutdownTimeout bounds how long Serve waits for in-flight requests
	// after its context is cancelled.
	ShutdownTimeout time.Duration
	// MaxHeaderBytes limits the size of request headers.
	MaxHeaderBytes int
	// ObjectMemory bounds the bytes of small repository objects (up to
	// 16 KiB each) kept in memory for serving; 0 means
	// DefaultObjectMemory and a negative value keeps none.
	ObjectMemory int64
	// RepoLoops is how many event loops serve repository GETs on plain
	// TCP (internal/fastget, Linux): 0 chooses (half of GOMAXPROCS; none
	// with one P, where a loop would keep the only one, or when the
	// repository is in a bucket, whose reads would stall a loop), and a
	// negative value means none (a goroutine per connection).
	RepoLoops int

	// Store and Channels enable the update and admin API under /api/v1;
	// without them the server only serves the repository.
	Store    *db.Store
	Channels *channel.Set
	// Now is the clock of the API (time.Now when nil).
	Now func() time.Time

	// TrustedKeys are the release public keys a published commit must be
	// signed with; OnlineSigners hold the online key, which signs only the
	// summary. Without both the publishing endpoints refuse every request.
	TrustedKeys   []sign.Verifier
	OnlineSigners []sign.Signer
	// OnlineVerifiers are the online keys' public halves: with RepoStore,
	// they verify the summary another replica wrote to the bucket.
	OnlineVerifiers []sign.Verifier
	// MaxObjectSize caps one uploaded content object (DefaultMaxObjectSize
	// when zero); metadata objects are capped at ostree.MaxMetadataSize.
	MaxObjectSize int64

	// Metadata, when set, turns on signed channel metadata: its directory
	// (DATA/metadata) is served at /metadata/, releases must come with
	// release-signed targets listing them, rollout changes are signed, and
	// check answers only name signed releases. It must be opened with the
	// online signers.
	Metadata *publish.Repo
	// MetadataDir, when Metadata is nil, is a directory of channel
	// metadata served read-only at /metadata/: a school mirror's verified
	// copy (internal/mirror), which signs nothing.
	MetadataDir string

	// Registry turns on the OCI registry at /v2/, stored in DataDir/oci
	// (registry.go); RegistryOptions tune its GC grace period and upload
	// expiry. RegistryGCInterval is how often it is garbage collected
	// (DefaultRegistryGCInterval when zero, never when negative).
	Registry           bool
	RegistryOptions    registry.Options
	RegistryGCInterval time.Duration

	// RepoStore, when set, serves /repo/ from this object store (an S3
	// bucket) instead of DataDir/repo, which publishing still writes and
	// which is mirrored to the store (repostore.go). RepoRedirect answers
	// content-addressed files with a presigned redirect instead of a
	// stream.
	RepoStore    object.Store
	RepoRedirect bool
	// RepoFetch verifies and brings in releases another server wrote to
	// RepoStore (pull.FetchVerified); needed when several servers publish.
	RepoFetch RepoFetchFunc
	// StorageErrors, when set, counts the object store's failures
	// (object.CountErrors), exported as mxos_storage_errors_total.
	StorageErrors func() int64

	// TransparencyLog, when set, is served at /log/ and every release and
	// promotion is appended to it before its ref moves (tlog.go).
	TransparencyLog *tlogstore.Log
}

// There is deliberately no write timeout: repository objects and deltas can
// be large and devices are often on slow links. Handlers that read request
// bodies set their own deadlines with http.ResponseController.

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.ObjectMemory == 0 {
		c.ObjectMemory = DefaultObjectMemory
	}
}

// Server is mxos-server's HTTP server. Create it with New; it is safe for
// concurrent use.
type Server struct {
	cfg Config
	// fast is the repository's request loop while Serve runs.
	fast atomic.Pointer[fastget.Server]
	log  *zap.Logger
	repo *repoHandler
	// repoStore serves /repo/ from Config.RepoStore; nil without one.
	repoStore *storeRepo
	mux       *http.ServeMux
	handler   http.Handler
	api       *apiState
	metrics   *metrics
	meta      *metaState // nil without Config.Metadata
	// metaFollow asks metaFollowLoop to pull the shared metadata.
	metaFollow chan struct{}
	metaDir    *os.Root
	oci        *ociState // nil without Config.Registry
}

// New opens DataDir/repo (which must exist) and builds the routes.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if cfg.DataDir == "" {
		return nil, errors.New("server: no data directory configured")
	}
	repoDir := filepath.Join(cfg.DataDir, "repo")
	root, err := os.OpenRoot(repoDir)
	if err != nil {
		return nil, fmt.Errorf("opening repository directory: %w", err)
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		repo:      newRepoHandler(root, cfg.Logger.Named("repo"), cfg.ObjectMemory),
		repoStore: newStoreRepo(cfg),
		mux:       http.NewServeMux(),
		metrics:   newMetrics(),
	}
	if cfg.Store != nil && cfg.Channels != nil {
		now := cfg.Now
		if now == nil {
			now = time.Now
		}
		s.api = &apiState{store: cfg.Store, channels: cfg.Channels, now: now, log: cfg.Logger.Named("api"), metrics: s.metrics,
			updates: &updates.Service{Store: cfg.Store, Channels: cfg.Channels, Now: now, Log: cfg.Logger.Named("updates"), CacheTTL: time.Second},
			creds:   &credindex.Index{Store: cfg.Store}, changes: &changefeed.Follower{Store: cfg.Store}}
		s.metrics.deviceIndex(s.api.updates)   // metrics.go
		s.metrics.credentialIndex(s.api.creds) // metrics.go
		s.metrics.reg.MustRegister(newFleetCollector(s.api))
		s.metrics.errorCounter("mxos_db_errors_total", "Database statements and transactions that failed (not counting expected answers: no rows, duplicates, conflicts).", cfg.Store.Errors)
	}
	if cfg.Metadata != nil {
		if s.metaDir, err = os.OpenRoot(cfg.Metadata.Dir); err != nil {
			_ = s.repo.close()
			return nil, fmt.Errorf("opening the channel metadata directory: %w", err)
		}
		now := cfg.Now
		if now == nil {
			now = time.Now
		}
		s.meta = &metaState{repo: cfg.Metadata, log: cfg.Logger.Named("metadata"), now: now}
		if err := s.meta.reloadSigned(); err != nil {
			_ = s.metaDir.Close()
			_ = s.repo.close()
			return nil, fmt.Errorf("channel metadata: %w", err)
		}
		if s.api != nil {
			s.api.meta = s.meta
			s.api.updates.OnRolloutChange = s.api.rolloutsChanged // auto-halts
		}
		if cfg.RepoStore != nil && cfg.Store != nil { // replicas share it: metastore.go
			s.meta.share = &metaShare{store: cfg.RepoStore, db: cfg.Store, dir: cfg.Metadata.Dir, log: s.meta.log,
				pulled: s.metadataPulled}
			s.metaFollow = make(chan struct{}, 1)
		}
		s.metrics.reg.MustRegister(newMetadataCollector(cfg.Metadata)) // metadata.go
	}
	if cfg.Metadata == nil && cfg.MetadataDir != "" {
		if s.metaDir, err = os.OpenRoot(cfg.MetadataDir); err != nil {
			_ = s.repo.close()
			return nil, fmt.Errorf("opening the channel metadata directory: %w", err)
		}
	}
	if cfg.Registry {
		if err := s.openRegistry(); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	s.routes()
	if s.api != nil {
		if err := s.consoleRoutes(); err != nil { // console.go
			_ = s.Close()
			return nil, err
		}
	}
	if cfg.StorageErrors != nil {
		s.metrics.errorCounter("mxos_storage_errors_total", "Object storage calls that failed (not counting expected answers: not found, lost conditional writes).", cfg.StorageErrors)
	}
	s.handler = s.instrument(s.logRequests(s.withRegistry(rejectUncleanPaths(s.repoFirst(recordRoute(s.mux))))))
	return s, nil
}

// routes registers every endpoint. Each area keeps its handlers in its own
// file and adds its patterns here, so the full URL space is visible at once.
func (s *Server) routes() {
	s.mux.HandleFunc("GET /healthz", s.handleHealthz)
	s.mux.HandleFunc("GET /readyz", s.handleReadyz)
	// "GET" also matches HEAD; other methods get 405 with an Allow header
	// from the mux.
	if s.repoStore != nil {
		s.mux.Handle("GET "+repoPrefix, s.repoStore)
	} else {
		s.mux.Handle("GET "+repoPrefix, s.repo)
	}
	s.mux.Handle("GET /metrics", s.metrics.handler())
	if s.metaDir != nil {
		s.mux.Handle("GET "+metadataPrefix, &metadataHandler{root: s.metaDir, log: s.log.Named("metadata")})
	}
	if s.api != nil {
		s.apiRoutes()
		s.metadataRoutes() // metadata.go
	}
	s.registryRoutes()
	s.logRoutes() // tlog.go
}

// Handler returns the root handler with all routes and middleware.
func (s *Server) Handler() http.Handler { return s.handler }

// Close releases the repository directory and the descriptors cached for
// serving it. Call it after Serve has returned.
func (s *Server) Close() error {
	if s.api != nil {
		s.api.changes.Close() // prunes under way, before the caller closes the store
		s.api.creds.Close()
		if err := s.api.updates.Flush(context.Background()); err != nil {
			s.log.Warn("recording last-seen times", zap.Error(err))
		}
	}
	if s.metaDir != nil {
		_ = s.metaDir.Close()
	}
	return s.repo.close()
}

func (s *Server) httpServer() *http.Server {
	return &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          newStdLog(s.log.Named("http")),
		ConnContext:       connContext, // for TCP_CORK in writeBody
	}
}

// repoLoops is Config.RepoLoops resolved.
func (s *Server) repoLoops() int {
	switch n := s.cfg.RepoLoops; {
	case n > 0:
		return n
	case n < 0 || s.repoStore != nil:
		return 0
	}
	return runtime.GOMAXPROCS(0) / 2
}

// Serve accepts connections on ln until ctx is cancelled, then shuts down
// gracefully: it stops accepting, lets in-flight requests finish for up to
// ShutdownTimeout, and returns. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.meta != nil {
		// Before accepting: a fresh repository has no timestamp yet, and
		// rollout state may have changed while the server was down.
		s.refreshMetadata(ctx)
	}
	if s.cfg.TransparencyLog != nil && s.api != nil {
		if err := s.clampAuditMark(ctx); err != nil { // tlog_audit.go
			s.log.Warn("checking the transparency log's audit mark", zap.Error(err))
		}
	}
	hs := s.httpServer()
	// Repository GETs on plain TCP take the short loop (fastget's doc
	// says why); everything else is net/http's.
	fg := fastget.New(fastget.Config{
		Handler:           hs.Handler,
		Prefix:            repoPrefix,
		ReadHeaderTimeout: hs.ReadHeaderTimeout,
		IdleTimeout:       hs.IdleTimeout,
		MaxHeaderBytes:    hs.MaxHeaderBytes,
		ErrorLog:          hs.ErrorLog,
		Loops:             s.repoLoops(),
	})
	s.fast.Store(fg)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(fg.Listen(ln)) }()
	if s.api != nil {
		s.api.changes.Start() // before the device index loads: changes from now on apply
		go s.flushLoop(ctx)
		go s.deviceIndexLoop(ctx)
		go s.credentialLoop(ctx)
		go s.changeLoop(ctx) // changes.go
	}
	if s.meta != nil {
		go s.metadataLoop(ctx)
	}
	if s.metaFollow != nil {
		go s.metaFollowLoop(ctx) // metastore.go
	}
	if s.oci != nil {
		go s.registryGCLoop(ctx)
	}
	if s.cfg.TransparencyLog != nil && s.api != nil {
		go s.tlogAuditLoop(ctx) // tlog_audit.go
	}

	select {
	case err := <-errc:
		return fmt.Errorf("serving HTTP on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	fgDone := make(chan error, 1)
	go func() { fgDone <- fg.Shutdown(sctx) }()
	err := hs.Shutdown(sctx)
	<-errc // returns http.ErrServerClosed as soon as Shutdown starts
	err = errors.Join(err, <-fgDone)
	if err != nil {
		// Timed out: cut the remaining connections.
		_ = hs.Close()
		_ = fg.Close()
		return fmt.Errorf("shutting down HTTP server: %w", err)
	}
	return nil
}

// LastSeenFlushInterval is how often queued last-seen times are written.
// Each write is one transaction; a longer interval makes fewer of them
// and lets more devices share a written page (at a million devices, 5 s
// cost about a third less CPU per check than 1 s in mxos-bench check).
// Last-seen times are kept to the minute (updates.LastSeenPrecision),
// so the delay is not seen; a crash loses at most this much of them,
// and each device's next check records it again.
const LastSeenFlushInterval = 5 * time.Second

// flushLoop writes queued last-seen times every LastSeenFlushInterval
// until ctx ends; Close writes the rest.
func (s *Server) flushLoop(ctx context.Context) {
	t := time.NewTicker(LastSeenFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.api.updates.Flush(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("recording last-seen times", zap.Error(err))
			}
		}
	}
}

// GroupRefreshInterval is how often the device index re-reads every
// device's group. Groups an admin sets through any replica arrive within
// a second through the cache change feed (changes.go); this catches the
// rest (a device's own check naming a new group through another replica).
const GroupRefreshInterval = time.Minute

// deviceIndexLoop loads the update service's device index (checks read
// device rows until it is loaded), then refreshes its groups every
// GroupRefreshInterval until ctx ends.
func (s *Server) deviceIndexLoop(ctx context.Context) {
	start := time.Now()
	if err := s.api.updates.LoadIndex(ctx); err != nil {
		if ctx.Err() == nil {
			s.log.Error("loading the device index; checks read device rows", zap.Error(err))
		}
		return
	}
	s.log.Info("device index loaded", zap.Int("devices", s.api.updates.IndexedDevices()), zap.Duration("took", time.Since(start)))
	// The scan's rows are garbage now: give their memory back at once
	// rather than over the next minutes.
	debug.FreeOSMemory()
	t := time.NewTicker(GroupRefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.api.updates.RefreshGroups(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("refreshing device groups", zap.Error(err))
			}
		}
	}
}

// credentialLoop loads the credential index (until then device requests
// read their token row), then follows the token change feed every
// second until ctx ends, reloading the index if it could not follow the
// feed for half its retention.
func (s *Server) credentialLoop(ctx context.Context) {
	x := s.api.creds
	start := time.Now()
	for {
		err := x.Load(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Error("loading the credential index; device requests read their token", zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Second):
		}
	}
	s.log.Info("credential index loaded", zap.Int("credentials", x.Len()), zap.Duration("took", time.Since(start)))
	t := time.NewTicker(time.Second)
	defer t.Stop()
	failing := time.Time{}
	var compacting atomic.Bool
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := x.Sync(ctx)
		switch {
		case err == nil:
			failing = time.Time{}
			if x.Stale() && compacting.CompareAndSwap(false, true) {
				// Rotations leave dropped and added credentials behind:
				// rebuild the array while the index keeps answering.
				go func() {
					defer compacting.Store(false)
					if err := x.Load(ctx); err != nil && ctx.Err() == nil {
						s.log.Warn("compacting the credential index", zap.Error(err))
					}
				}()
			}
		case ctx.Err() != nil:
			return
		case failing.IsZero():
			failing = time.Now()
			s.log.Warn("following token changes; device requests read their token until it works again", zap.Error(err))
		case time.Since(failing) > credindex.Retention/2:
			if lerr := x.Load(ctx); lerr == nil {
				failing = time.Time{}
			}
		}
	}
}

// ListenAndServe listens on Config.Listen and calls Serve.
func (s *Server) ListenAndServe(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// newStdLog adapts log for net/http's internal messages (accept errors,
// TLS handshake failures, handler panics), which deserve Warn.
func newStdLog(log *zap.Logger) *stdlog.Logger {
	l, err := zap.NewStdLogAt(log, zap.WarnLevel)
	if err != nil { // only for invalid levels
		return zap.NewStdLog(log)
	}
	return l
}
