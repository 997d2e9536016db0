package auth

import (
	"errors"
	"strings"
	"testing"
)

func TestTokensRoundTrip(t *testing.T) {
	tok, hash, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckFormat(tok); err != nil {
		t.Fatalf("fresh token malformed: %v", err)
	}
	if !Equal(Hash(tok), hash) {
		t.Fatal("hash does not match")
	}
	other, _, _ := NewToken()
	if other == tok || Equal(Hash(other), hash) {
		t.Fatal("two tokens collide")
	}
	if r := Redact(tok); strings.Contains(r, tok[10:]) || !strings.HasPrefix(tok, strings.TrimSuffix(r, "…")) {
		t.Fatalf("Redact(%q) = %q", tok, r)
	}
}

func TestFromHeader(t *testing.T) {
	tok, _, _ := NewToken()
	cases := []struct {
		h    string
		want error
	}{
		{"Bearer " + tok, nil},
		{"bearer " + tok, nil},
		{"", ErrNoToken},
		{"Basic abc", ErrBadToken},
		{"Bearer", ErrBadToken},
		{"Bearer mxos_short", ErrBadToken},
		{"Bearer " + strings.Replace(tok, "mxos_", "mxox_", 1), ErrBadToken},
		{"Bearer " + tok[:len(tok)-1] + "!", ErrBadToken},
	}
	for _, c := range cases {
		got, err := FromHeader(c.h)
		if !errors.Is(err, c.want) {
			t.Errorf("FromHeader(%q) err = %v, want %v", c.h, err, c.want)
		}
		if err == nil && got != tok {
			t.Errorf("FromHeader(%q) = %q", c.h, got)
		}
	}
}

func TestMatrix(t *testing.T) {
	all := []Permission{PermPublish, PermPromote, PermRollout, PermPin, PermReadDevices, PermManageTokens, PermReadAudit, PermDevice}
	want := map[Role][]Permission{
		RoleRelease: {PermPublish, PermPromote, PermRollout, PermReadAudit},
		RoleAdmin:   {PermPin, PermReadDevices, PermManageTokens, PermReadAudit},
		RoleDevice:  {PermDevice},
	}
	for role, perms := range want {
		allowed := map[Permission]bool{}
		for _, p := range perms {
			allowed[p] = true
		}
		for _, p := range all {
			if Allowed(role, p) != allowed[p] {
				t.Errorf("Allowed(%s, %s) = %v", role, p, !allowed[p])
			}
		}
	}
	// The three examples, spelled out.
	if Allowed(RoleAdmin, PermPublish) || Allowed(RoleDevice, PermPin) || Allowed(RoleRelease, PermReadDevices) {
		t.Fatal("matrix lets a role do what it must not")
	}
	if Allowed(Role("root"), PermPublish) {
		t.Fatal("unknown role allowed")
	}
	if _, err := ParseRole("root"); !errors.Is(err, ErrBadRole) {
		t.Fatalf("ParseRole(root) = %v", err)
	}
}
