package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// IdentityState is what admins said about a device id.
type IdentityState string

// Identity states (device_identities.state). An id with no row is
// IdentityNone: it may enroll if it never checked in and no token is
// bound to it.
const (
	IdentityNone       IdentityState = ""
	IdentityAuthorized IdentityState = "authorized"
	IdentityEnrolled   IdentityState = "enrolled"
	IdentityRevoked    IdentityState = "revoked"
)

// DeviceIdentity is a device id's identity record and its live
// credentials.
type DeviceIdentity struct {
	DeviceID  string
	State     IdentityState
	UpdatedAt time.Time
	UpdatedBy string
	// Credentials counts the device's tokens that are not revoked (some
	// may have expired); CredentialExpires is the latest expiry among them.
	Credentials       int
	CredentialExpires time.Time
}

// IdentityState returns what admins said about a device id
// (IdentityNone when nothing).
func (q *Queries) IdentityState(ctx context.Context, id string) (IdentityState, error) {
	return q.deviceIdentityState(ctx, id)
}

func (q *Queries) deviceIdentityState(ctx context.Context, id string) (IdentityState, error) {
	var st string
	err := q.q.QueryRowContext(ctx, `SELECT state FROM device_identities WHERE device_id = $1`, id).Scan(&st)
	if errors.Is(err, sql.ErrNoRows) {
		return IdentityNone, nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the identity of device %s: %w", id, err)
	}
	return IdentityState(st), nil
}

func (q *Queries) setIdentity(ctx context.Context, id string, st IdentityState, by string, at time.Time) error {
	_, err := q.q.ExecContext(ctx, `INSERT INTO device_identities (device_id, state, updated_at, updated_by)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (device_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at,
			updated_by = excluded.updated_by`, id, string(st), micros(at), by)
	if err != nil {
		return fmt.Errorf("recording the identity of device %s: %w", id, err)
	}
	return nil
}

// revokeDeviceTokens revokes every live token bound to the device.
func (q *Queries) revokeDeviceTokens(ctx context.Context, id string, at time.Time) (int, error) {
	if err := q.noteTokenChange(ctx, `SELECT hash, CAST($2 AS BIGINT) FROM tokens WHERE device_id = $1 AND revoked_at IS NULL`, id, micros(at)); err != nil {
		return 0, fmt.Errorf("revoking the credentials of device %s: %w", id, err)
	}
	res, err := q.q.ExecContext(ctx, `UPDATE tokens SET revoked_at = $2 WHERE device_id = $1 AND revoked_at IS NULL`, id, micros(at))
	if err != nil {
		return 0, fmt.Errorf("revoking the credentials of device %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("revoking the credentials of device %s: %w", id, err)
	}
	return int(n), nil
}

func identityCheck(what, id, by string, at time.Time) error {
	c := check{what: what}
	c.key("device id", id)
	c.key("by", by)
	c.time("time", at)
	return c.err
}

// AuthorizeDevice lets the device id enroll (again): a new machine before
// its first contact, a re-imaged one that lost its credential, or a
// revoked one coming back. Credentials the id still holds are revoked, so
// the old disk of a re-imaged machine stops working. It returns how many
// were revoked.
func (q *Queries) AuthorizeDevice(ctx context.Context, id, by string, at time.Time) (int, error) {
	return q.resetIdentity(ctx, "device authorization", id, IdentityAuthorized, by, at)
}

// RevokeDevice revokes every credential of the device id and keeps it
// from enrolling or binding a token until an admin authorizes it again.
// It returns how many credentials were revoked.
func (q *Queries) RevokeDevice(ctx context.Context, id, by string, at time.Time) (int, error) {
	return q.resetIdentity(ctx, "device revocation", id, IdentityRevoked, by, at)
}

// resetIdentity revokes every credential of id and sets its identity
// state, in one transaction; it returns how many credentials it revoked.
func (q *Queries) resetIdentity(ctx context.Context, what, id string, state IdentityState, by string, at time.Time) (int, error) {
	if err := identityCheck(what, id, by, at); err != nil {
		return 0, err
	}
	var n int
	err := q.atomic(ctx, func(q *Queries) error {
		var err error
		if n, err = q.revokeDeviceTokens(ctx, id, at); err != nil {
			return err
		}
		return q.setIdentity(ctx, id, state, by, at)
	})
	return n, err
}

// EnrollDevice records cred (a device token bound to its device id) as
// the device's first credential. An id enrolls once: an id that enrolled
// or was revoked, one that ever checked in, or one a token is bound to is
// ErrConflict unless an admin authorized it, so an enroll token cannot
// take over a machine that is already known. The device's report sequence
// starts again.
func (q *Queries) EnrollDevice(ctx context.Context, cred Token, by string) error {
	if cred.DeviceID == "" || !strings.HasPrefix(cred.Name, DeviceCredentialPrefix) {
		return fmt.Errorf("enrolling: %w: a device credential needs a device id and a %s name", ErrInvalid, DeviceCredentialPrefix)
	}
	if err := identityCheck("enrollment", cred.DeviceID, by, cred.CreatedAt); err != nil {
		return err
	}
	id := cred.DeviceID
	return q.atomic(ctx, func(q *Queries) error {
		st, err := q.deviceIdentityState(ctx, id)
		if err != nil {
			return err
		}
		switch st {
		case IdentityEnrolled, IdentityRevoked:
			return fmt.Errorf("enrolling device %s: %w: it is %s", id, ErrConflict, st)
		case IdentityNone:
			var n int64
			err := q.q.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM devices WHERE id = $1)
				+ (SELECT COUNT(*) FROM tokens WHERE device_id = $1)`, id).Scan(&n)
			if err != nil {
				return fmt.Errorf("enrolling device %s: %w", id, err)
			}
			if n > 0 {
				return fmt.Errorf("enrolling device %s: %w: the id is already in use", id, ErrConflict)
			}
		}
		if err := q.CreateToken(ctx, cred); err != nil {
			return err
		}
		if _, err := q.q.ExecContext(ctx, `UPDATE devices SET report_seq = 0 WHERE id = $1`, id); err != nil {
			return fmt.Errorf("enrolling device %s: %w", id, err)
		}
		return q.setIdentity(ctx, id, IdentityEnrolled, by, cred.CreatedAt)
	})
}

// RotateDeviceCredential stores next, a new credential for old's device,
// and cuts old's life to at most grace from now, so a device that lost
// the answer can rotate again with old. A revoked device is ErrConflict.
func (q *Queries) RotateDeviceCredential(ctx context.Context, old, next Token, grace time.Duration) error {
	if old.DeviceID == "" || next.DeviceID != old.DeviceID {
		return fmt.Errorf("rotating a credential: %w: both tokens must be bound to the same device", ErrInvalid)
	}
	return q.atomic(ctx, func(q *Queries) error {
		st, err := q.deviceIdentityState(ctx, old.DeviceID)
		if err != nil {
			return err
		}
		if st == IdentityRevoked {
			return fmt.Errorf("rotating the credential of device %s: %w: it was revoked", old.DeviceID, ErrConflict)
		}
		if err := q.CreateToken(ctx, next); err != nil {
			return err
		}
		end := micros(next.CreatedAt.Add(grace))
		if err := q.noteTokenChange(ctx, `SELECT hash, CAST($2 AS BIGINT) FROM tokens
			WHERE id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)`, old.ID, end); err != nil {
			return fmt.Errorf("rotating the credential of device %s: %w", old.DeviceID, err)
		}
		_, err = q.q.ExecContext(ctx, `UPDATE tokens SET expires_at = $2
			WHERE id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)`, old.ID, end)
		if err != nil {
			return fmt.Errorf("rotating the credential of device %s: %w", old.DeviceID, err)
		}
		return nil
	})
}

// ListDeviceIdentities returns every device id admins authorized or
// revoked or that enrolled, and every id a live token is bound to, by id.
func (q *Queries) ListDeviceIdentities(ctx context.Context) ([]DeviceIdentity, error) {
	return queryAll(ctx, q.q, "listing device identities", func(r *sql.Rows) (DeviceIdentity, error) {
		var d DeviceIdentity
		var st, by sql.NullString
		var upd, exp sql.NullInt64
		var n int64
		err := r.Scan(&d.DeviceID, &st, &upd, &by, &n, &exp)
		d.State, d.UpdatedAt, d.UpdatedBy = IdentityState(st.String), fromNullMicros(upd), by.String
		d.Credentials, d.CredentialExpires = int(n), fromNullMicros(exp)
		return d, err
	}, `SELECT ids.id, di.state, di.updated_at, di.updated_by,
			(SELECT COUNT(*) FROM tokens t WHERE t.device_id = ids.id AND t.revoked_at IS NULL),
			(SELECT MAX(t.expires_at) FROM tokens t WHERE t.device_id = ids.id AND t.revoked_at IS NULL)
		FROM (SELECT device_id AS id FROM device_identities
		      UNION SELECT device_id FROM tokens WHERE device_id IS NOT NULL AND revoked_at IS NULL) ids
		LEFT JOIN device_identities di ON di.device_id = ids.id
		ORDER BY ids.id`)
}

// CountEnrollments counts the credentials that enrollment issued to the
// actor by (the enroll token's audit name, "token:<name>") at or after
// since; rotations are made by the device's own credential and are not
// counted. A zero since counts them all.
func (q *Queries) CountEnrollments(ctx context.Context, by string, since time.Time) (int, error) {
	var n int64
	err := q.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM tokens
		WHERE created_by = $1 AND created_at >= $2 AND device_id IS NOT NULL AND name LIKE $3`,
		by, micros(since), DeviceCredentialPrefix+"%").Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting enrollments by %s: %w", by, err)
	}
	return int(n), nil
}
