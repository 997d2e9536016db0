package channelmeta_test

import (
	"crypto/ed25519"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
)

// State.OnlineKeys follows the trusted root: the online key of the
// shipped root, then the new one after an online key rotation.
func TestStateOnlineKeysFollowRotation(t *testing.T) {
	s := newScene(t)
	same := func(got []ed25519.PublicKey, want signature.Signer) bool {
		w := pub(t, want).(ed25519.PublicKey)
		return len(got) == 1 && got[0].Equal(w)
	}
	if !same(s.first.OnlineKeys, s.f.online) {
		t.Fatalf("online keys of root 1: %x", s.first.OnlineKeys)
	}
	online2 := newSigner(t)
	keys2 := publish.Keys{Root: s.f.keys.Root, Release: s.f.keys.Release, Online: roleKeys(t, 1, online2)}
	both, err := publish.Open(s.f.dir, []signature.Signer{s.f.online, online2}, publish.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := both.RotateRoot(keys2, []signature.Signer{s.f.release}, []signature.Signer{s.f.release}, s.now); err != nil {
		t.Fatal(err)
	}
	repo2, err := publish.Open(s.f.dir, []signature.Signer{online2}, publish.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo2.Refresh(s.now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	copyDir(t, s.f.dir, s.mirror)
	if st := mustLoad(t, s.dev); st.RootVersion != 2 || !same(st.OnlineKeys, online2) {
		t.Fatalf("online keys of root %d: %x", st.RootVersion, st.OnlineKeys)
	}
}

// onlineKeys keeps only well-formed Ed25519 keys of the online roles.
func TestOnlineKeysFilter(t *testing.T) {
	good := make([]byte, ed25519.PublicKeySize)
	good[0] = 1
	other := make([]byte, ed25519.PublicKeySize)
	other[0] = 2
	key := func(typ, scheme string, b []byte) *metadata.Key {
		return &metadata.Key{Type: typ, Scheme: scheme, Value: metadata.KeyVal{PublicKey: hex.EncodeToString(b)}}
	}
	root := metadata.Root(time.Now().Add(time.Hour))
	root.Signed.Keys = map[string]*metadata.Key{
		"a-good":  key("ed25519", "ed25519", good),
		"b-short": key("ed25519", "ed25519", good[:31]),
		"c-long":  key("ed25519", "ed25519", append(slices.Clone(good), 0)),
		"d-rsa":   key("rsa", "rsassa-pss-sha256", good),
		"e-odd":   {Type: "ed25519", Scheme: "ed25519", Value: metadata.KeyVal{PublicKey: "zz"}},
		"f-root":  key("ed25519", "ed25519", other),
	}
	root.Signed.Roles[metadata.TIMESTAMP].KeyIDs = []string{"a-good", "b-short", "c-long", "missing"}
	root.Signed.Roles[metadata.SNAPSHOT].KeyIDs = []string{"a-good", "d-rsa", "e-odd"}
	root.Signed.Roles[metadata.ROOT].KeyIDs = []string{"f-root"}
	got := channelmeta.OnlineKeys(root)
	if len(got) != 1 || !got[0].Equal(ed25519.PublicKey(good)) {
		t.Fatalf("onlineKeys = %x, want only the good key once", got)
	}
	if channelmeta.OnlineKeys(nil) != nil {
		t.Fatal("nil root")
	}
}
