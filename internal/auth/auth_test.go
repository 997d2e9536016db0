package auth

import (
	"errors"
	"strings"
	"testing"
	"time"
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
	want := map[Role][]Permission{
		RoleRelease: {PermPublish, PermPromote, PermRollout, PermReadAudit, PermCreateReleaseTokens, PermReadChannels},
		RoleAdmin:   {PermPin, PermReadDevices, PermManageDevices, PermManageTokens, PermReadAudit, PermReadChannels},
		RoleDevice:  {PermDevice, PermReadChannels},
		RoleEnroll:  {PermEnroll},
	}
	if len(want) != len(Roles) {
		t.Fatalf("test covers %d roles, there are %d", len(want), len(Roles))
	}
	for role, perms := range want {
		allowed := map[Permission]bool{}
		for _, p := range perms {
			allowed[p] = true
		}
		for _, p := range Permissions {
			if Allowed(role, p) != allowed[p] {
				t.Errorf("Allowed(%s, %s) = %v", role, p, !allowed[p])
			}
		}
	}
	// The examples, spelled out.
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

func TestCanCreate(t *testing.T) {
	cases := []struct {
		creator, r Role
		want       bool
	}{
		{RoleRelease, RoleRelease, true},
		{RoleAdmin, RoleRelease, false}, // failure 6: an admin minted a publisher
		{RoleAdmin, RoleAdmin, true},
		{RoleAdmin, RoleDevice, true},
		{RoleAdmin, RoleEnroll, true},
		{RoleRelease, RoleAdmin, false},
		{RoleRelease, RoleDevice, false},
		{RoleDevice, RoleDevice, false},
		{RoleEnroll, RoleDevice, false},
	}
	for _, c := range cases {
		if got := CanCreate(c.creator, c.r); got != c.want {
			t.Errorf("CanCreate(%s, %s) = %v", c.creator, c.r, got)
		}
	}
}

func TestTTL(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
	}{
		{"90d", 90 * 24 * time.Hour},
		{"36h", 36 * time.Hour},
		{"1h30m", 90 * time.Minute},
		{"730d", MaxTTL},
		{"731d", 0},
		{"0d", 0},
		{"-1h", 0},
		{"d", 0},
		{"1.5d", 0},
		{"+3d", 0},
		{"never", 0},
		{"", 0},
	}
	for _, c := range cases {
		got, err := ParseTTL(c.in)
		if c.want == 0 {
			if !errors.Is(err, ErrBadTTL) {
				t.Errorf("ParseTTL(%q) = %v, %v; want ErrBadTTL", c.in, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseTTL(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	if DefaultTTL(RoleAdmin) != 90*24*time.Hour || DefaultTTL(RoleRelease) != 90*24*time.Hour {
		t.Error("people's tokens must default to 90 days")
	}
	if !(RotateAfter+RotationGrace < DeviceCredentialTTL) {
		t.Error("a credential must be rotated well before it expires")
	}
}

func FuzzParseTTL(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseTTL(s)
		if err == nil && (d <= 0 || d > MaxTTL) {
			t.Fatalf("ParseTTL(%q) = %v", s, d)
		}
		if err != nil && !errors.Is(err, ErrBadTTL) {
			t.Fatalf("ParseTTL(%q) error %v is not ErrBadTTL", s, err)
		}
	})
}
