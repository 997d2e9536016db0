// Package auth owns API tokens and the role/permission matrix.
//
// A token is "mxos_" followed by 43 base64url characters (32 random bytes).
// Only its SHA-256 is stored: tokens are high-entropy, so a slow password
// hash would add nothing, and a lookup by hash stays one index probe.
// Tokens never appear in logs or errors; Redact shows a safe prefix.
//
// Roles and what they may do (a role has exactly these permissions):
//
//	permission        release  admin  device
//	publish              x
//	promote              x
//	rollout              x
//	pin                           x
//	read-devices                  x
//	manage-tokens                 x
//	read-audit           x        x
//	check/report                         x
//
// So an admin cannot publish, a device cannot pin, and the release team
// cannot list devices: fleet data stays with the fleet's admins. Public
// content (the repository, signed metadata) needs no token at all.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Role is what a token may act as.
type Role string

// Roles.
const (
	RoleRelease Role = "release"
	RoleAdmin   Role = "admin"
	RoleDevice  Role = "device"
)

// ParseRole validates a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleRelease, RoleAdmin, RoleDevice:
		return r, nil
	}
	return "", fmt.Errorf("%w: %q (use release, admin or device)", ErrBadRole, s)
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
)

var matrix = map[Role]map[Permission]bool{
	RoleRelease: {PermPublish: true, PermPromote: true, PermRollout: true, PermReadAudit: true},
	RoleAdmin:   {PermPin: true, PermReadDevices: true, PermManageTokens: true, PermReadAudit: true},
	RoleDevice:  {PermDevice: true},
}

// Allowed reports whether role may use perm.
func Allowed(role Role, perm Permission) bool { return matrix[role][perm] }

// Errors callers decide on.
var (
	ErrBadRole     = errors.New("unknown role")
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
