package channelmeta

import (
	"fmt"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// CountSigners counts the distinct release keys (root's targets keys)
// with a valid signature on targets: a release whose record asks for k
// signatures (Release.Threshold) is accepted only when this is at least k.
// channelmeta/publish documents k-of-n signing.
func CountSigners(root *metadata.Metadata[metadata.RootType], md *metadata.Metadata[metadata.TargetsType]) (int, error) {
	ids, _ := RoleKeyIDs(root, metadata.TARGETS)
	n := 0
	for _, id := range ids {
		k, ok := root.Signed.Keys[id]
		if !ok {
			continue
		}
		one := metadata.Root(root.Signed.Expires)
		if err := one.Signed.AddKey(k, metadata.TARGETS); err != nil {
			return 0, fmt.Errorf("count signers: %w", err)
		}
		if one.VerifyDelegate(metadata.TARGETS, md) == nil {
			n++
		}
	}
	return n, nil
}

// RoleKeyIDs returns the key IDs and threshold root assigns to role.
func RoleKeyIDs(root *metadata.Metadata[metadata.RootType], role string) ([]string, int) {
	r, ok := root.Signed.Roles[role]
	if !ok || r == nil {
		return nil, 0
	}
	return r.KeyIDs, r.Threshold
}
