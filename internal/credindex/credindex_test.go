package credindex

import (
	"context"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/db"
)

func newStore(t *testing.T) *db.Store {
	t.Helper()
	s, err := db.Open(context.Background(), "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func hashOf(secret string) []byte { h := sha256.Sum256([]byte(secret)); return h[:] }

func mint(t *testing.T, s *db.Store, secret, dev string, expires time.Time) {
	t.Helper()
	now := time.Now()
	err := s.CreateToken(context.Background(), db.Token{ID: "id-" + secret, Name: "n-" + secret, Role: auth.RoleDevice,
		Hash: hashOf(secret), CreatedAt: now.Add(-time.Hour), CreatedBy: "test", DeviceID: dev, ExpiresAt: expires})
	if err != nil {
		t.Fatal(err)
	}
}

var hexDev = strings.Repeat("0f", 16)

// TestIndex: Load holds the live bound credentials with machine-id
// devices (not others); Sync drops what the feed names; an Add whose
// read began before a drop of the same token is refused, one after it is
// kept; a failed Sync makes the index answer nothing until one succeeds.
func TestIndex(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	exp := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	mint(t, s, "a", hexDev, exp)
	mint(t, s, "b", "not-a-machine-id", exp)
	mint(t, s, "c", strings.Repeat("1", 32), time.Time{})
	x := &Index{Store: s}
	t.Cleanup(x.Close) // before the store closes: Sync starts a prune
	if _, ok := x.Get(hashOf("a")); ok {
		t.Fatal("Get answered before Load")
	}
	if err := x.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if c, ok := x.Get(hashOf("a")); !ok || c.DeviceID != hexDev || !c.ExpiresAt.Equal(exp) {
		t.Fatalf("Get(a) = %+v, %v", c, ok)
	}
	if c, ok := x.Get(hashOf("c")); !ok || !c.ExpiresAt.IsZero() {
		t.Fatalf("Get(c) = %+v, %v; want a credential that never expires", c, ok)
	}
	if _, ok := x.Get(hashOf("b")); ok || x.Len() != 2 {
		t.Fatalf("indexed %d credentials, b: %v; want a and c only", x.Len(), ok)
	}

	// A read of a that began before its revocation was synced.
	stale := x.Begin()
	if _, err := s.RevokeToken(ctx, "id-a", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := x.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := x.Get(hashOf("a")); ok {
		t.Fatal("Sync kept a revoked credential")
	}
	x.Add(stale, hashOf("a"), Credential{DeviceID: hexDev, ExpiresAt: exp})
	if _, ok := x.Get(hashOf("a")); ok {
		t.Fatal("a read from before the revocation put the revoked credential back")
	}
	mint(t, s, "d", strings.Repeat("2", 32), exp)
	x.Add(x.Begin(), hashOf("d"), Credential{DeviceID: strings.Repeat("2", 32), ExpiresAt: exp})
	if _, ok := x.Get(hashOf("d")); !ok {
		t.Fatal("a fresh read was not indexed")
	}
	// Rotation cuts c's life: Sync drops it (the caller reads it again).
	next := db.Token{ID: "id-c2", Name: "n-c2", Role: auth.RoleDevice, Hash: hashOf("c2"), CreatedAt: time.Now(), CreatedBy: "test",
		DeviceID: strings.Repeat("1", 32), ExpiresAt: exp}
	if err := s.RotateDeviceCredential(ctx, db.Token{ID: "id-c", DeviceID: next.DeviceID}, next, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := x.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := x.Get(hashOf("c")); ok {
		t.Fatal("Sync kept a credential whose life a rotation cut")
	}

	// The caller's own changes, dropped at once without the feed: a
	// device's credentials wherever they are (loaded or added later).
	mint(t, s, "e", strings.Repeat("3", 32), exp)
	x.Add(x.Begin(), hashOf("e"), Credential{DeviceID: strings.Repeat("3", 32), ExpiresAt: exp})
	x.DropDevice(strings.Repeat("2", 32))
	x.Drop(hashOf("e"))
	if _, ok := x.Get(hashOf("d")); ok {
		t.Fatal("DropDevice kept the device's credential")
	}
	if _, ok := x.Get(hashOf("e")); ok {
		t.Fatal("Drop kept the credential")
	}

	// The feed cannot be read: nothing is answered from memory.
	mint(t, s, "f", strings.Repeat("4", 32), exp)
	x.Add(x.Begin(), hashOf("f"), Credential{DeviceID: strings.Repeat("4", 32), ExpiresAt: exp})
	if _, ok := x.Get(hashOf("f")); !ok {
		t.Fatal("a fresh read was not indexed")
	}
	x.Close() // the prune the first Sync started ends before the store closes
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := x.Sync(ctx); err == nil {
		t.Fatal("Sync on a closed store succeeded")
	}
	if _, ok := x.Get(hashOf("f")); ok || x.Ready() {
		t.Fatal("the index answered after a failed Sync")
	}
}

// TestCompaction: credentials added after the load and dropped ones make
// the index stale; a Load rebuilds it from the database, keeping what is
// live and dropping again what was dropped meanwhile.
func TestCompaction(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	exp := time.Now().Add(time.Hour)
	mint(t, s, "live", hexDev, exp)
	x := &Index{Store: s}
	if err := x.Load(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 1100 {
		dev := strings.Repeat("0", 28) + strings.Repeat(string("0123456789abcdef"[i%16]), 4)
		x.Add(x.Begin(), hashOf(dev+string(rune(i))), Credential{DeviceID: dev, ExpiresAt: exp})
	}
	if !x.Stale() || x.Len() != 1101 {
		t.Fatalf("after 1,100 additions: stale %v, %d credentials", x.Stale(), x.Len())
	}
	if err := x.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if x.Stale() || x.Len() != 1 {
		t.Fatalf("after a reload: stale %v, %d credentials; want the one in the store", x.Stale(), x.Len())
	}
	if _, ok := x.Get(hashOf("live")); !ok {
		t.Fatal("the reload lost a live credential")
	}
}

// TestCloseWaitsForPrune: Close returns only after the prune Sync started
// has ended. The prune is held on SQLite's write lock by an open
// transaction; Close must still be waiting when the transaction ends.
func TestCloseWaitsForPrune(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	x := &Index{Store: s}
	if err := x.Load(ctx); err != nil {
		t.Fatal(err)
	}
	locked, release := make(chan struct{}), make(chan struct{})
	txDone := make(chan error, 1)
	go func() {
		txDone <- s.Tx(ctx, func(*db.Tx) error {
			close(locked)
			<-release
			return nil
		})
	}()
	<-locked
	if err := x.Sync(ctx); err != nil { // reads; starts a prune, which waits for the lock
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() { x.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while the prune Sync started was still waiting for the database")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-txDone; err != nil {
		t.Fatal(err)
	}
	<-closed
}
