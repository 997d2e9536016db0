package server

// The web console at /console/ (internal/console): it calls this
// server's own API routes in-process with the signed-in person's token.

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/console"
	"github.com/mxos-linux/mxos-update/internal/db"
)

func (s *Server) consoleRoutes() error {
	cfg := console.Config{API: s.mux, Channels: s.cfg.Channels, Identify: s.api.identify, Now: s.api.now,
		Log: s.log.Named("console"), MetadataWarn: publish.RenewWarning,
		// Refusals are audited as auth.denied, within the same rate
		// limit as the API's (auth.go).
		Denied: func(r *http.Request, token string, status int, reason string) {
			code := api.CodeForbidden
			if status == http.StatusUnauthorized {
				code = api.CodeUnauthorized
			}
			s.api.auditDenied(r, db.Token{Name: token}, api.Errorf(code, "%s", reason))
		}}
	if s.cfg.Metadata != nil {
		repo := s.cfg.Metadata
		cfg.Metadata = func() ([]api.MetadataRole, error) {
			st, err := repo.Status()
			if err != nil {
				return nil, err
			}
			out := make([]api.MetadataRole, 0, len(st))
			for _, rs := range st {
				// Online roles renew themselves; only offline ones warn.
				if rs.Offline() {
					out = append(out, api.MetadataRole{Role: rs.Role, Version: rs.Version, Expires: rs.Expires})
				}
			}
			return out, nil
		}
	}
	c, err := console.New(cfg)
	if err != nil {
		return err
	}
	s.mux.Handle(console.Prefix, c)
	return nil
}

// identify is the console's sign-in check: the token's name and role, or
// an error for an unknown, revoked or expired token.
func (a *apiState) identify(ctx context.Context, tok string) (console.Identity, error) {
	if err := auth.CheckFormat(tok); err != nil {
		return console.Identity{}, err
	}
	t, err := a.lookupToken(ctx, auth.Hash(tok))
	if err != nil {
		if errors.Is(err, db.ErrNotFound) {
			return console.Identity{}, errors.New("unknown or revoked token")
		}
		return console.Identity{}, fmt.Errorf("looking up token: %w", err)
	}
	if t.Expired(a.now()) {
		return console.Identity{}, errors.New("token expired")
	}
	return console.Identity{Name: t.Name, Role: t.Role}, nil
}
