package db

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/auth"
)

// testCredentialFeed: the scan lists exactly the live, bound, unexpired
// device credentials, and every revocation (by token, by device) and
// every rotation's cut life appears in the change feed from its time on,
// until pruned.
func testCredentialFeed(t *testing.T, s *Store) {
	ctx := context.Background()
	cred := func(dev, secret string, created int) Token {
		return Token{ID: "id-" + secret, Name: DeviceCredentialPrefix + dev + "/" + secret, Role: auth.RoleDevice,
			Hash: tokenHash(secret), CreatedAt: at(created), CreatedBy: "token:escuela", DeviceID: dev, ExpiresAt: at(created + 1000)}
	}
	for _, c := range []Token{cred("pc1", "a", 1), cred("pc2", "b", 1), cred("pc3", "c", 1)} {
		if err := s.EnrollDevice(ctx, c, "token:escuela"); err != nil {
			t.Fatal(err)
		}
	}
	for _, o := range []Token{
		{ID: "unbound", Name: "aulas", Role: auth.RoleDevice, Hash: tokenHash("unbound"), CreatedAt: at(1), CreatedBy: "admin"},
		{ID: "adm", Name: "adm", Role: auth.RoleAdmin, Hash: tokenHash("adm"), CreatedAt: at(1), CreatedBy: "admin"},
		{ID: "old", Name: "old", Role: auth.RoleDevice, Hash: tokenHash("old"), CreatedAt: at(1), CreatedBy: "admin", DeviceID: "pc9", ExpiresAt: at(5)},
	} {
		if err := s.CreateToken(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	scan := func(now time.Time) map[string]DeviceCredential {
		got := map[string]DeviceCredential{}
		if err := s.ScanDeviceCredentials(ctx, now, func(c DeviceCredential) error { got[c.DeviceID] = c; return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	got := scan(at(10))
	if len(got) != 3 || !bytes.Equal(got["pc2"].Hash, tokenHash("b")) || !got["pc2"].ExpiresAt.Equal(stored(at(1001))) {
		t.Fatalf("scan = %+v, want pc1..pc3 (not the unbound, admin or expired tokens)", got)
	}
	changes := func(since time.Time) [][]byte {
		hs, err := s.TokenChangesSince(ctx, since)
		if err != nil {
			t.Fatal(err)
		}
		return hs
	}
	if hs := changes(at(0)); len(hs) != 0 {
		t.Fatalf("changes before any: %x", hs)
	}
	if _, err := s.RevokeToken(ctx, "id-a", at(20)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeDevice(ctx, "pc2", "token:admin", at(21)); err != nil {
		t.Fatal(err)
	}
	next := cred("pc3", "c2", 22)
	if err := s.RotateDeviceCredential(ctx, cred("pc3", "c", 1), next, time.Minute); err != nil {
		t.Fatal(err)
	}
	has := func(hs [][]byte, secret string) bool {
		return slices.ContainsFunc(hs, func(h []byte) bool { return bytes.Equal(h, tokenHash(secret)) })
	}
	all := changes(at(20))
	for _, secret := range []string{"a", "b", "c"} {
		if !has(all, secret) {
			t.Errorf("the feed since the first change lacks %s: %x", secret, all)
		}
	}
	if has(all, "c2") || has(all, "unbound") {
		t.Errorf("the feed holds tokens that did not change: %x", all)
	}
	if later := changes(at(21).Add(time.Second)); has(later, "a") || has(later, "b") || !has(later, "c") {
		t.Errorf("the feed since after the revocations = %x, want only the rotated token", later)
	}
	if got := scan(at(10)); len(got) != 1 || !bytes.Equal(got["pc3"].Hash, tokenHash("c2")) && !bytes.Equal(got["pc3"].Hash, tokenHash("c")) {
		t.Errorf("scan after the changes = %+v, want only pc3's credentials", got)
	}
	if err := s.PruneTokenChanges(ctx, at(22)); err != nil {
		t.Fatal(err)
	}
	if hs := changes(at(0)); len(hs) != 1 || !has(hs, "c") {
		t.Errorf("after pruning the feed = %x, want the rotation only", hs)
	}
}
