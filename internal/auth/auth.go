// Package auth owns API tokens, the role/permission matrix and the
// token lifetimes.
//
// A token is "mxos_" followed by 43 base64url characters (32 random bytes).
// Only its SHA-256 is stored: tokens are high-entropy, so a slow password
// hash would add nothing, and a lookup by hash stays one index probe.
// Tokens never appear in logs or errors; Redact shows a safe prefix.
//
// Roles and what they may do (a role has exactly these permissions):
//
//	permission             release  admin  device  enroll
//	publish                   x
//	promote                   x
//	rollout                   x
//	create-release-tokens     x
//	pin                               x
//	read-devices                      x
//	manage-devices                    x
//	manage-tokens                     x
//	read-audit                x       x
//	read-channels             x       x      x
//	check/report                             x
//	enroll                                          x
//
// So an admin cannot publish, a device cannot pin, and the release team
// cannot list devices: fleet data stays with the fleet's admins. Only the
// release role makes release tokens (an admin token that leaks cannot mint
// a publisher); on the server's own machine `mxos-server token create`
// makes any. manage-tokens covers every other role. An enroll token (one
// baked into a school's image, so assume it leaks) can do nothing but
// enroll: trade itself, once per device id, for that device's own
// credential. Public content (the repository, signed metadata) needs no
// token at all.
//
// # Device identity
//
// A device token is bound to one device id: the one given when it was
// made, or else the first id it checks, reports or takes a reboot slot
// for. Requests for any other id are refused (403). Device credentials
// issued at enrollment are device tokens bound from the start.
//
// # Lifetimes
//
// Every token made now expires. Defaults (DefaultTTL): 90 days for
// people (release, admin); 365 days for enroll tokens (an image lives
// about a school year); DeviceCredentialTTL (180 days) for device
// credentials, which the agent rotates itself once RotateAfter (60 days)
// has passed, so a machine that is switched off for a whole summer
// holiday still comes back with a valid credential. At rotation the old
// credential stays valid for RotationGrace (one day), so a device that
// lost the answer can ask again. MaxTTL (two years) bounds --expires.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Role is what a token may act as.
type Role string

// Roles.
const (
	RoleRelease Role = "release"
	RoleAdmin   Role = "admin"
	RoleDevice  Role = "device"
	RoleEnroll  Role = "enroll"
)

// Roles lists every role.
var Roles = []Role{RoleRelease, RoleAdmin, RoleDevice, RoleEnroll}

// ParseRole validates a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleRelease, RoleAdmin, RoleDevice, RoleEnroll:
		return r, nil
	}
	return "", fmt.Errorf("%w: %q (use release, admin, device or enroll)", ErrBadRole, s)
}

// Permission is one kind of request.
type Permission string

// Permissions checked by the server.
const (
	PermPublish      Permission = "publish"
	PermPromote      Permission = "promote"
	PermRollout      Permission = "rollout"
	PermPin          Permission = "pin"
	PermReadDevices  Permission = "read-devices"
	PermManageTokens Permission = "manage-tokens"
	PermReadAudit    Permission = "read-audit"
	PermDevice       Permission = "device"
	// PermCreateReleaseTokens is making tokens of the release role.
	PermCreateReleaseTokens Permission = "create-release-tokens"
	PermManageDevices       Permission = "manage-devices"
	PermReadChannels        Permission = "read-channels"
	PermEnroll              Permission = "enroll"
)

// Permissions lists every permission.
var Permissions = []Permission{PermPublish, PermPromote, PermRollout, PermPin, PermReadDevices, PermManageTokens,
	PermReadAudit, PermDevice, PermCreateReleaseTokens, PermManageDevices, PermReadChannels, PermEnroll}

var matrix = map[Role]map[Permission]bool{
	RoleRelease: {PermPublish: true, PermPromote: true, PermRollout: true, PermReadAudit: true,
		PermCreateReleaseTokens: true, PermReadChannels: true},
	RoleAdmin: {PermPin: true, PermReadDevices: true, PermManageDevices: true, PermManageTokens: true,
		PermReadAudit: true, PermReadChannels: true},
	RoleDevice: {PermDevice: true, PermReadChannels: true},
	RoleEnroll: {PermEnroll: true},
}

// CanCreate reports whether a token of role creator may make a token of
// role r over the API.
func CanCreate(creator, r Role) bool {
	if r == RoleRelease {
		return Allowed(creator, PermCreateReleaseTokens)
	}
	return Allowed(creator, PermManageTokens)
}

// Token lifetimes; see the package doc.
const (
	PeopleTTL           = 90 * 24 * time.Hour
	EnrollTTL           = 365 * 24 * time.Hour
	DeviceCredentialTTL = 180 * 24 * time.Hour
	RotateAfter         = 60 * 24 * time.Hour
	RotationGrace       = 24 * time.Hour
	MaxTTL              = 2 * 365 * 24 * time.Hour
)

// DefaultTTL is how long a new token of role r lives unless told.
func DefaultTTL(r Role) time.Duration {
	switch r {
	case RoleEnroll:
		return EnrollTTL
	case RoleDevice:
		return DeviceCredentialTTL
	}
	return PeopleTTL
}

// ParseTTL reads a lifetime such as "90d", "12h" or "1h30m" (days are
// 24 hours); it must be positive and at most MaxTTL.
func ParseTTL(s string) (time.Duration, error) {
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		if _, err := fmt.Sscanf(n, "%d", &days); err != nil || fmt.Sprint(days) != n {
			return 0, fmt.Errorf("%w: %q (use e.g. 90d, 36h)", ErrBadTTL, s)
		}
		if days > int(MaxTTL/(24*time.Hour)) {
			return 0, fmt.Errorf("%w: %q is longer than %d days", ErrBadTTL, s, int(MaxTTL/(24*time.Hour)))
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%w: %q (use e.g. 90d, 36h)", ErrBadTTL, s)
		}
	}
	if d <= 0 || d > MaxTTL {
		return 0, fmt.Errorf("%w: %q must be positive and at most %d days", ErrBadTTL, s, int(MaxTTL/(24*time.Hour)))
	}
	return d, nil
}

// Allowed reports whether role may use perm.
func Allowed(role Role, perm Permission) bool { return matrix[role][perm] }

// Errors callers decide on.
var (
	ErrBadRole     = errors.New("unknown role")
	ErrBadTTL      = errors.New("invalid token lifetime")
	ErrBadToken    = errors.New("malformed token")
	ErrNoToken     = errors.New("no token")
	ErrUnknown     = errors.New("unknown or revoked token")
	ErrNotAllowed  = errors.New("not allowed for this role")
	tokenPrefix    = "mxos_"
	tokenRandBytes = 32
)

// NewToken returns a fresh token and the hash to store.
func NewToken() (token string, hash []byte, err error) {
	b := make([]byte, tokenRandBytes)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("new token: %w", err)
	}
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, Hash(token), nil
}

// Hash is the stored form of a token.
func Hash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// CheckFormat rejects strings that cannot be tokens before any lookup.
func CheckFormat(token string) error {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok || len(rest) != base64.RawURLEncoding.EncodedLen(tokenRandBytes) {
		return ErrBadToken
	}
	if _, err := base64.RawURLEncoding.DecodeString(rest); err != nil {
		return ErrBadToken
	}
	return nil
}

// FromHeader extracts a bearer token from an Authorization header value.
func FromHeader(h string) (string, error) {
	if h == "" {
		return "", ErrNoToken
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", ErrBadToken
	}
	tok = strings.TrimSpace(tok)
	if err := CheckFormat(tok); err != nil {
		return "", err
	}
	return tok, nil
}

// Equal compares hashes in constant time.
func Equal(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// Redact shows enough of a token to recognise it in a list, never enough
// to use it.
func Redact(token string) string {
	if len(token) <= len(tokenPrefix)+4 {
		return tokenPrefix + "…"
	}
	return token[:len(tokenPrefix)+4] + "…"
}
