package channelmeta

import (
	"crypto/ed25519"
	"encoding/hex"
	"slices"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// onlineKeys returns the Ed25519 public keys of root's timestamp and
// snapshot roles: the server's online keys, which also sign the OSTree
// summary (mxos-server --online-keys). Keys of another type or scheme, or
// that do not decode to exactly 32 bytes, are left out: this list feeds an
// Ed25519 verifier, and a key of the wrong length must never reach
// ed25519.Verify. Each key is listed once, in root's key ID order.
func onlineKeys(root *metadata.Metadata[metadata.RootType]) []ed25519.PublicKey {
	if root == nil {
		return nil
	}
	var ids []string
	for _, name := range []string{metadata.TIMESTAMP, metadata.SNAPSHOT} {
		if r := root.Signed.Roles[name]; r != nil {
			ids = append(ids, r.KeyIDs...)
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var out []ed25519.PublicKey
	for _, id := range ids {
		k := root.Signed.Keys[id]
		if k == nil || k.Type != metadata.KeyTypeEd25519 || k.Scheme != metadata.KeySchemeEd25519 {
			continue
		}
		b, err := hex.DecodeString(k.Value.PublicKey)
		if err != nil || len(b) != ed25519.PublicKeySize {
			continue
		}
		out = append(out, ed25519.PublicKey(b))
	}
	return out
}
