package db

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/mxos-linux/mxos-update/internal/auth"
)

// Token is an API token's record. The store never sees a token itself,
// only Hash = SHA-256(token) computed by the caller (auth.Hash): tokens
// are 32 random bytes, so a fast unsalted hash is enough (nobody can
// guess a preimage) and lookups stay one index probe.
type Token struct {
	ID        string
	Name      string // unique among tokens not revoked
	Role      auth.Role
	Hash      []byte // 32 bytes; nil in ListTokens
	CreatedAt time.Time
	CreatedBy string
	RevokedAt time.Time // zero while valid
	// DeviceID binds a device token to one device ("" until bound; always
	// "" for other roles).
	DeviceID string
	// ExpiresAt is when the token stops working (zero: never, for tokens
	// made before expiry existed). The store keeps it; the server judges
	// it against its clock.
	ExpiresAt time.Time
	// MaxDevices caps how many devices an enroll token enrolls (0: the
	// server's default; only enroll tokens carry one).
	MaxDevices int
}

// Expired reports whether t has expired at now.
func (t Token) Expired(now time.Time) bool { return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt) }

// CreateToken records a token. A name in use by another valid token, a
// reused id or a reused hash is ErrDuplicate.
func (q *Queries) CreateToken(ctx context.Context, t Token) error {
	c := check{what: "token"}
	c.key("id", t.ID)
	c.key("name", t.Name)
	if _, err := auth.ParseRole(string(t.Role)); err != nil {
		c.fail("%v", err)
	}
	if len(t.Hash) != sha256.Size {
		c.fail("hash is %d bytes, want a %d-byte SHA-256", len(t.Hash), sha256.Size)
	}
	c.time("created at", t.CreatedAt)
	c.key("created by", t.CreatedBy)
	if !t.RevokedAt.IsZero() {
		c.fail("a new token cannot be revoked")
	}
	c.optKey("device id", t.DeviceID)
	if t.DeviceID != "" && t.Role != auth.RoleDevice {
		c.fail("only device tokens are bound to a device")
	}
	if !t.ExpiresAt.IsZero() && !t.ExpiresAt.After(t.CreatedAt) {
		c.fail("a new token must expire after it is created")
	}
	if t.MaxDevices < 0 || (t.MaxDevices != 0 && t.Role != auth.RoleEnroll) {
		c.fail("max devices %d: only an enroll token has a cap, and it is positive", t.MaxDevices)
	}
	if c.err != nil {
		return c.err
	}
	return q.atomic(ctx, func(q *Queries) error {
		var n int64
		err := q.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM tokens WHERE name = $1 AND revoked_at IS NULL`, t.Name).Scan(&n)
		if err != nil {
			return fmt.Errorf("creating token %q: %w", t.Name, err)
		}
		if n > 0 {
			return fmt.Errorf("creating token %q: %w: a valid token has that name", t.Name, ErrDuplicate)
		}
		_, err = q.q.ExecContext(ctx, `INSERT INTO tokens (id, name, role, hash, created_at, created_by, revoked_at, device_id, expires_at, max_devices)
			VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8, $9)`,
			t.ID, t.Name, string(t.Role), hex.EncodeToString(t.Hash), micros(t.CreatedAt), t.CreatedBy,
			nullText(t.DeviceID), nullMicros(t.ExpiresAt), sql.NullInt64{Int64: int64(t.MaxDevices), Valid: t.MaxDevices > 0})
		if isUnique(err) {
			return fmt.Errorf("creating token %q: %w: id, name or hash already used", t.Name, ErrDuplicate)
		}
		if err != nil {
			return fmt.Errorf("creating token %q: %w", t.Name, err)
		}
		return nil
	})
}

const tokenColumns = `id, name, role, hash, created_at, created_by, revoked_at, device_id, expires_at, max_devices`

func scanToken(sc interface{ Scan(...any) error }) (Token, error) {
	var (
		t       Token
		role    string
		hash    string
		created int64
		revoked sql.NullInt64
		device  sql.NullString
		expires sql.NullInt64
		maxDev  sql.NullInt64
	)
	if err := sc.Scan(&t.ID, &t.Name, &role, &hash, &created, &t.CreatedBy, &revoked, &device, &expires, &maxDev); err != nil {
		return Token{}, err
	}
	t.Role, t.CreatedAt, t.RevokedAt = auth.Role(role), fromMicros(created), fromNullMicros(revoked)
	t.DeviceID, t.ExpiresAt, t.MaxDevices = device.String, fromNullMicros(expires), int(maxDev.Int64)
	h, err := hex.DecodeString(hash)
	if err != nil {
		return Token{}, fmt.Errorf("stored hash of token %s: %w", t.ID, err)
	}
	t.Hash = h
	return t, nil
}

// TokenByHash returns the valid token with this hash. Unknown and revoked
// tokens are both ErrNotFound, so an authenticator that only checks the
// error can never accept a revoked token.
func (q *Queries) TokenByHash(ctx context.Context, hash []byte) (Token, error) {
	if len(hash) != sha256.Size {
		return Token{}, fmt.Errorf("token lookup: %w: hash is %d bytes", ErrInvalid, len(hash))
	}
	t, err := scanToken(q.q.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens
		WHERE hash = $1 AND revoked_at IS NULL`, hex.EncodeToString(hash)))
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, fmt.Errorf("token: %w", ErrNotFound) // never echo the hash
	}
	if err != nil {
		return Token{}, fmt.Errorf("looking up token: %w", err)
	}
	return t, nil
}

// BindTokenDevice binds the device token id to deviceID unless it is
// bound already, and returns the device it is bound to (deviceID, or the
// one it was bound to before). A device id an admin revoked is
// ErrConflict: revoked ids get no new credentials. A token that is not a
// valid device token is ErrNotFound.
func (q *Queries) BindTokenDevice(ctx context.Context, tokenID, deviceID string, at time.Time) (string, error) {
	c := check{what: "token binding"}
	c.key("token id", tokenID)
	c.key("device id", deviceID)
	if c.err != nil {
		return "", c.err
	}
	var bound string
	err := q.atomic(ctx, func(q *Queries) error {
		st, err := q.deviceIdentityState(ctx, deviceID)
		if err != nil {
			return err
		}
		if st == IdentityRevoked {
			return fmt.Errorf("binding a token to device %s: %w: the device was revoked", deviceID, ErrConflict)
		}
		if _, err := q.q.ExecContext(ctx, `UPDATE tokens SET device_id = $2
			WHERE id = $1 AND role = 'device' AND device_id IS NULL AND revoked_at IS NULL`, tokenID, deviceID); err != nil {
			return fmt.Errorf("binding token %s: %w", tokenID, err)
		}
		var dev sql.NullString
		err = q.q.QueryRowContext(ctx, `SELECT device_id FROM tokens WHERE id = $1 AND role = 'device' AND revoked_at IS NULL`, tokenID).Scan(&dev)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("binding token %s: %w", tokenID, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("binding token %s: %w", tokenID, err)
		}
		bound = dev.String
		return nil
	})
	return bound, err
}

// CountLiveTokens counts the tokens of role that are neither revoked nor
// expired at now.
func (q *Queries) CountLiveTokens(ctx context.Context, role auth.Role, now time.Time) (int, error) {
	var n int64
	err := q.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM tokens
		WHERE role = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)`, string(role), micros(now)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting %s tokens: %w", role, err)
	}
	return int(n), nil
}

// RevokeToken revokes the valid token with this id, or else with this
// name, and returns it as revoked (for the audit entry). No such valid
// token is ErrNotFound; revoking twice is therefore ErrNotFound too.
func (q *Queries) RevokeToken(ctx context.Context, idOrName string, at time.Time) (Token, error) {
	c := check{what: "token revocation"}
	c.key("id or name", idOrName)
	c.time("time", at)
	if c.err != nil {
		return Token{}, c.err
	}
	var t Token
	err := q.atomic(ctx, func(q *Queries) error {
		var err error
		t, err = scanToken(q.q.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens
			WHERE revoked_at IS NULL AND (id = $1 OR name = $1)
			ORDER BY CASE WHEN id = $1 THEN 0 ELSE 1 END LIMIT 1`, idOrName))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("revoking token %q: %w", idOrName, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("revoking token %q: %w", idOrName, err)
		}
		res, err := q.q.ExecContext(ctx, `UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL`, t.ID, micros(at))
		if err != nil {
			return fmt.Errorf("revoking token %q: %w", idOrName, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("revoking token %q: %w", idOrName, err)
		} else if n == 0 {
			return fmt.Errorf("revoking token %q: %w: revoked concurrently", idOrName, ErrNotFound)
		}
		if err := q.noteTokenChange(ctx, `VALUES (CAST($1 AS TEXT), CAST($2 AS BIGINT))`, hex.EncodeToString(t.Hash), micros(at)); err != nil {
			return fmt.Errorf("revoking token %q: %w", idOrName, err)
		}
		t.RevokedAt = fromMicros(micros(at))
		return nil
	})
	if err != nil {
		return Token{}, err
	}
	return t, nil
}

// ListTokens returns every token, revoked ones included, oldest first,
// without hashes. Device credentials (tokens made by enrollment or
// rotation, named DeviceCredentialPrefix…) are left out unless
// withCredentials: a fleet has thousands; `devices identities` shows them.
func (q *Queries) ListTokens(ctx context.Context, withCredentials bool) ([]Token, error) {
	where := ` WHERE name NOT LIKE '` + DeviceCredentialPrefix + `%'`
	if withCredentials {
		where = ""
	}
	return queryAll(ctx, q.q, "listing tokens", func(r *sql.Rows) (Token, error) {
		t, err := scanToken(r)
		t.Hash = nil // never handed out
		return t, err
	}, `SELECT `+tokenColumns+` FROM tokens`+where+` ORDER BY created_at, id`)
}

// DeviceCredentialPrefix starts the name of every credential issued by
// enrollment or rotation: "device/<device id>/<token id>".
const DeviceCredentialPrefix = "device/"
