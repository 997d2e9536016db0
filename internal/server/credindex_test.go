package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/db"
)

// waitCredentials waits for the credential index to be loaded.
func waitCredentials(t *testing.T, srv *Server) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !srv.api.creds.Ready(); {
		if time.Now().After(deadline) {
			t.Fatal("the credential index was not loaded within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCredentialIndexFollowsTheDatabase: with the credential index
// loaded, device checks are authorized from memory, yet the database
// decides: a credential registered in the store after the load (by
// another process) is accepted; one revoked through this server is
// refused by the very next request; one revoked by another process
// (mxos-server token revoke, another replica: straight in the store) is
// refused within two seconds.
func TestCredentialIndexFollowsTheDatabase(t *testing.T) {
	ctx := context.Background()
	dev := func(n int) string { return strings.Repeat(string(rune('a'+n)), 32) }
	mint := func(store *db.Store, n int) string {
		tc, err := CreateTokenWith(ctx, store, TokenOptions{Name: "cred-" + dev(n), Role: auth.RoleDevice, By: "test",
			Now: time.Now(), DeviceID: dev(n)})
		if err != nil {
			t.Fatal(err)
		}
		return tc.Token
	}
	var early string
	f, srv := newIndexedFixture(t, func(store *db.Store) { early = mint(store, 0) })
	waitCredentials(t, srv)
	if _, ok := srv.api.creds.Get(auth.Hash(early)); !ok {
		t.Fatal("a credential in the store at start is not in the index")
	}
	f.checkAs(t, early, dev(0))

	// Registered after the load: read from the store, then indexed.
	late := mint(f.store, 1)
	if _, ok := srv.api.creds.Get(auth.Hash(late)); ok {
		t.Fatal("the index holds a credential it never read")
	}
	f.checkAs(t, late, dev(1))
	if _, ok := srv.api.creds.Get(auth.Hash(late)); !ok {
		t.Fatal("a credential read from the store was not indexed")
	}
	// A credential cannot act for another device, from the index too.
	code, body := f.do(t, late, "POST", "/api/v1/check", api.CheckRequest{DeviceID: dev(0), Arch: "x86_64", Channel: "stable", Version: "10.0.1"})
	if code != 403 {
		t.Fatalf("check for another device: %d %s", code, body)
	}

	refused := func(token, id string) bool {
		code, _ := f.do(t, token, "POST", "/api/v1/check", api.CheckRequest{DeviceID: id, Arch: "x86_64", Channel: "stable", Version: "10.0.1"})
		return code == 401
	}
	// Revoked through this server: the next request is refused, even
	// when this server's clock is far behind (the change feed is read by
	// time; this server drops what it changed itself).
	f.setNow(t, func() time.Time { return time.Now().Add(-3 * time.Hour) })
	if code, body := f.do(t, f.tokens["admin"], "DELETE", "/api/v1/tokens/cred-"+dev(1), nil); code != 204 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if !refused(late, dev(1)) {
		t.Fatal("a credential revoked through this server was accepted by the next check")
	}
	// A device revoked through this server: all its credentials at once.
	both := mint(f.store, 2)
	f.checkAs(t, both, dev(2))
	if code, body := f.do(t, f.tokens["admin"], "DELETE", "/api/v1/identities/"+dev(2), nil); code != 200 {
		t.Fatalf("revoke device: %d %s", code, body)
	}
	if !refused(both, dev(2)) {
		t.Fatal("a credential of a device revoked through this server was accepted by the next check")
	}
	f.setNow(t, nil)

	// Revoked by another process: refused within two seconds.
	f.checkAs(t, early, dev(0))
	if _, err := f.store.RevokeToken(ctx, "cred-"+dev(0), time.Now()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !refused(early, dev(0)) {
		if time.Now().After(deadline) {
			t.Fatal("a credential revoked in the store by another process was still accepted after 2 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, ok := srv.api.creds.Get(auth.Hash(early)); ok {
		t.Fatal("the index still holds a revoked credential")
	}
}
