package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/oci/registry"
)

// The OCI registry is served at /v2/ from DataDir/oci (see package
// internal/oci/registry). Pulling is public; pushing and deleting need a
// token of the release role, sent as the password of HTTP basic auth (what
// skopeo, podman, cosign and the conformance suite send after a 401 with a
// Basic challenge; the user name is ignored) or as a bearer token.

// DefaultRegistryGCInterval is how often the registry is collected when
// Config.RegistryGCInterval is zero.
const DefaultRegistryGCInterval = 24 * time.Hour

// ociState is the registry part of a Server; nil when it is off.
type ociState struct {
	store   *registry.Store
	handler http.Handler
}

func (s *Server) openRegistry() error {
	st, err := registry.Open(filepath.Join(s.cfg.DataDir, "oci"), s.cfg.RegistryOptions)
	if err != nil {
		return fmt.Errorf("opening the OCI registry: %w", err)
	}
	log := s.log.Named("registry")
	s.oci = &ociState{store: st, handler: registry.NewHandler(st, s.authorizeRegistry, log)}
	return nil
}

// Registry returns the registry's content store (nil when it is off), for
// writing images without HTTP.
func (s *Server) Registry() *registry.Store {
	if s.oci == nil {
		return nil
	}
	return s.oci.store
}

// withRegistry sends /v2 and /v2/... to the registry before the mux and
// rejectUncleanPaths see them: the registry parses and validates its own
// paths (names hold slashes) and answers bad ones with the spec's JSON
// errors (DIGEST_INVALID, NAME_INVALID) instead of a plain 400 or a
// redirect.
func (s *Server) withRegistry(next http.Handler) http.Handler {
	if s.oci == nil {
		return next
	}
	reg := s.oci.handler
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; p == "/v2" || strings.HasPrefix(p, "/v2/") {
			reg.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorizeRegistry accepts an API token of a role that may publish. The
// token is never logged or echoed. A bad or expired token, or one whose
// role may not push, is audited like any denied API request; the
// anonymous 401 that tells clients the auth scheme is not.
func (s *Server) authorizeRegistry(r *http.Request) error {
	if s.api == nil {
		return fmt.Errorf("%w: this server has no token database (run it with --channels)", registry.ErrDenied)
	}
	var tok string
	if _, pass, ok := r.BasicAuth(); ok {
		tok = pass
	} else if h := r.Header.Get("Authorization"); h != "" {
		t, err := auth.FromHeader(h)
		if err != nil {
			s.api.auditDenied(r, db.Token{}, api.Errorf(api.CodeUnauthorized, "malformed registry credentials"))
			return registry.ErrUnauthorized
		}
		tok = t
	}
	if tok == "" {
		return registry.ErrUnauthorized
	}
	if auth.CheckFormat(tok) != nil {
		s.api.auditDenied(r, db.Token{}, api.Errorf(api.CodeUnauthorized, "malformed registry credentials"))
		return registry.ErrUnauthorized
	}
	t, err := s.api.lookupToken(r.Context(), auth.Hash(tok))
	if errors.Is(err, db.ErrNotFound) {
		s.api.auditDenied(r, db.Token{}, api.Errorf(api.CodeUnauthorized, "unknown or revoked token"))
		return registry.ErrUnauthorized
	}
	if err != nil {
		return fmt.Errorf("looking up token: %w", err)
	}
	if t.Expired(s.api.now()) {
		s.api.auditDenied(r, t, api.Errorf(api.CodeUnauthorized, "token expired"))
		return registry.ErrUnauthorized
	}
	if !auth.Allowed(t.Role, auth.PermPublish) {
		s.api.auditDenied(r, t, api.Errorf(api.CodeForbidden, "the %s role cannot push", t.Role))
		return registry.ErrDenied
	}
	return nil
}

// registryRoutes adds the collection trigger to the API:
// POST /api/v1/registry/gc (release role) runs GC now and returns its
// counts.
func (s *Server) registryRoutes() {
	if s.oci == nil || s.api == nil {
		return
	}
	s.mux.Handle("POST "+api.Prefix+"/registry/gc", s.api.authed([]auth.Permission{auth.PermPublish},
		func(w http.ResponseWriter, r *http.Request) error {
			st, err := s.RegistryGC(r.Context())
			if err != nil {
				return err
			}
			writeJSON(w, http.StatusOK, st)
			return nil
		}))
}

// RegistryGC collects the registry now (see registry.Store.GC).
func (s *Server) RegistryGC(ctx context.Context) (registry.GCStats, error) {
	if s.oci == nil {
		return registry.GCStats{}, errors.New("the OCI registry is off")
	}
	st, err := s.oci.store.GC(ctx)
	if err != nil {
		return st, err
	}
	s.log.Info("registry garbage collected",
		zap.Int("manifests", st.Manifests), zap.Int("blobs", st.Blobs),
		zap.Int64("bytes", st.BlobBytes), zap.Int("uploads", st.Uploads))
	return st, nil
}

// registryGCLoop runs GC every RegistryGCInterval until ctx ends.
func (s *Server) registryGCLoop(ctx context.Context) {
	every := s.cfg.RegistryGCInterval
	if every == 0 {
		every = DefaultRegistryGCInterval
	}
	if every < 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.RegistryGC(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("registry garbage collection", zap.Error(err))
			}
		}
	}
}
