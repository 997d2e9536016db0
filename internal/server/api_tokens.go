package server

// The update and admin API: tokens (routes in api.go).

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/db"
)

func toTokenInfo(t db.Token) api.TokenInfo {
	return api.TokenInfo{ID: t.ID, Name: t.Name, Role: string(t.Role), CreatedAt: t.CreatedAt, CreatedBy: t.CreatedBy,
		RevokedAt: t.RevokedAt, DeviceID: t.DeviceID, ExpiresAt: t.ExpiresAt, MaxDevices: t.MaxDevices}
}

func (a *apiState) handleTokens(w http.ResponseWriter, r *http.Request) error {
	toks, err := a.store.ListTokens(r.Context(), r.URL.Query().Get("credentials") == "1")
	if err != nil {
		return err
	}
	writeList(w, toks, toTokenInfo)
	return nil
}

// handleTokenCreate makes a token over the API: release tokens only for
// the release role, every other role for admins (auth.CanCreate).
func (a *apiState) handleTokenCreate(w http.ResponseWriter, r *http.Request) error {
	var req api.TokenCreateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	role, err := auth.ParseRole(req.Role)
	if err != nil {
		return api.Errorf(api.CodeBadRequest, "%v", err)
	}
	creator, _ := r.Context().Value(tokenKey).(db.Token)
	if !auth.CanCreate(creator.Role, role) {
		if role == auth.RoleRelease {
			return api.Errorf(api.CodeForbidden, "only the release role makes release tokens (or mxos-server token create on the server)")
		}
		return api.Errorf(api.CodeForbidden, "the %s role cannot make %s tokens", creator.Role, role)
	}
	opts := TokenOptions{Name: req.Name, Role: role, By: actor(r), Now: a.now(), DeviceID: req.DeviceID, MaxDevices: req.MaxDevices}
	if req.Expires != "" {
		if opts.TTL, err = auth.ParseTTL(req.Expires); err != nil {
			return api.Errorf(api.CodeBadRequest, "expires: %v", err)
		}
	}
	created, err := CreateTokenWith(r.Context(), a.store, opts)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, created)
	return nil
}

// TokenOptions describes a token to make.
type TokenOptions struct {
	Name string
	Role auth.Role
	By   string // the audit log's actor
	Now  time.Time
	// TTL is the token's lifetime; 0 is auth.DefaultTTL(Role).
	TTL time.Duration
	// DeviceID binds a device token to one device from the start.
	DeviceID string
	// MaxDevices caps an enroll token's enrollments (0: EnrollCap).
	MaxDevices int
}

// CreateToken makes a token with its role's default lifetime; see
// CreateTokenWith.
func CreateToken(ctx context.Context, store *db.Store, name string, role auth.Role, by string, now time.Time) (api.TokenCreated, error) {
	return CreateTokenWith(ctx, store, TokenOptions{Name: name, Role: role, By: by, Now: now})
}

// CreateTokenWith makes a token, stores its hash and records it in the
// audit log. The plain token is returned once and never stored or
// logged. Names starting with db.DeviceCredentialPrefix are kept for
// credentials made by enrollment.
func CreateTokenWith(ctx context.Context, store *db.Store, o TokenOptions) (api.TokenCreated, error) {
	if strings.HasPrefix(o.Name, db.DeviceCredentialPrefix) {
		return api.TokenCreated{}, api.Errorf(api.CodeBadRequest, "token names starting with %q are kept for device credentials", db.DeviceCredentialPrefix)
	}
	if o.DeviceID != "" && o.Role != auth.RoleDevice {
		return api.TokenCreated{}, api.Errorf(api.CodeBadRequest, "only device tokens are bound to a device")
	}
	if o.MaxDevices < 0 || (o.MaxDevices != 0 && o.Role != auth.RoleEnroll) {
		return api.TokenCreated{}, api.Errorf(api.CodeBadRequest, "max devices: only an enroll token has a cap, and it is a positive number")
	}
	if o.DeviceID != "" {
		if err := (&api.EnrollRequest{DeviceID: o.DeviceID}).Validate(); err != nil {
			return api.TokenCreated{}, err
		}
	}
	ttl := o.TTL
	if ttl == 0 {
		ttl = auth.DefaultTTL(o.Role)
	}
	if ttl < 0 || ttl > auth.MaxTTL {
		return api.TokenCreated{}, api.Errorf(api.CodeBadRequest, "a token lives at most %s", auth.MaxTTL)
	}
	plain, hash, err := auth.NewToken()
	if err != nil {
		return api.TokenCreated{}, err
	}
	t := db.Token{ID: newID(), Name: o.Name, Role: o.Role, Hash: hash, CreatedAt: o.Now, CreatedBy: o.By,
		DeviceID: o.DeviceID, ExpiresAt: o.Now.Add(ttl), MaxDevices: o.MaxDevices}
	err = store.Tx(ctx, func(tx *db.Tx) error {
		if o.DeviceID != "" {
			// A token made for a device id counts as that id's binding, so
			// it is refused for a revoked id like any other binding.
			st, err := tx.IdentityState(ctx, o.DeviceID)
			if err != nil {
				return err
			}
			if st == db.IdentityRevoked {
				return api.Errorf(api.CodeConflict, "device %s was revoked; authorize it first", o.DeviceID)
			}
		}
		if err := tx.CreateToken(ctx, t); err != nil {
			return err
		}
		detail, _ := json.Marshal(map[string]string{"role": string(o.Role), "id": t.ID, "device": o.DeviceID,
			"expires": t.ExpiresAt.UTC().Format(time.RFC3339)})
		_, err := tx.AppendAudit(ctx, db.Entry{Actor: o.By, Action: "token.create", Subject: o.Name, Detail: string(detail), At: o.Now})
		return err
	})
	if err != nil {
		return api.TokenCreated{}, err
	}
	return api.TokenCreated{TokenInfo: toTokenInfo(t), Token: plain}, nil
}

// handleTokenRevoke revokes a token by name or id. The last admin token
// that works cannot be revoked over the API (nobody could manage tokens
// afterwards); on the server's machine, mxos-server token revoke can.
func (a *apiState) handleTokenRevoke(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	now := a.now()
	who := actor(r)
	var revoked []byte
	err := a.store.Tx(r.Context(), func(tx *db.Tx) error {
		t, err := tx.RevokeToken(r.Context(), name, now)
		if err != nil {
			return err
		}
		revoked = t.Hash
		if t.Role == auth.RoleAdmin && !t.Expired(now) {
			n, err := tx.CountLiveTokens(r.Context(), auth.RoleAdmin, now)
			if err != nil {
				return err
			}
			if n == 0 {
				return api.Errorf(api.CodeConflict, "%s is the last admin token: create another one first (or use mxos-server token revoke on the server)", t.Name)
			}
		}
		a.forgetTokens()
		_, err = tx.AppendAudit(r.Context(), db.Entry{Actor: who, Action: "token.revoke", Subject: t.Name, At: now})
		return err
	})
	if err != nil {
		return err
	}
	a.creds.Drop(revoked)
	a.tokensChanged(r.Context()) // again after the commit: a lookup in between may have cached it
	w.WriteHeader(http.StatusNoContent)
	return nil
}
