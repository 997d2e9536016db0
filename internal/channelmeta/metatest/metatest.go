// Package metatest forges hostile channel metadata for tests: files that
// are validly signed by keys a device trusts (the online key, or the root
// key) but carry input that go-tuf must never see, such as an ed25519
// public key of the wrong length. It is imported only from _test.go files
// (channelmeta's own tests, and the black-box tests of mxos-updater) and
// uses go-tuf's public API only.
package metatest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// ShortKey is an ed25519 TUF key whose public value has n bytes, with
// its correct key id. go-tuf v2.4.2 hands such a key to ed25519.Verify,
// which panics on any length but 32.
func ShortKey(n int) (*metadata.Key, string, error) {
	k := &metadata.Key{Type: metadata.KeyTypeEd25519, Scheme: metadata.KeySchemeEd25519,
		Value: metadata.KeyVal{PublicKey: hex.EncodeToString(make([]byte, n))}}
	id, err := k.ID()
	return k, id, err
}

// ForgeBadKeyRoot writes the next N.root.json into the metadata
// directory dir, signed by rootSigners (the current root keys, so a
// device follows it), whose timestamp key is a 31-byte ed25519 key.
func ForgeBadKeyRoot(dir string, now time.Time, rootSigners ...signature.Signer) error {
	data, err := os.ReadFile(filepath.Join(dir, "root.json"))
	if err != nil {
		return err
	}
	md, err := metadata.Root().FromBytes(data)
	if err != nil {
		return err
	}
	md.ClearSignatures()
	md.Signed.Version++
	md.Signed.Expires = now.Add(365 * 24 * time.Hour).UTC().Truncate(time.Second)
	key, id, err := ShortKey(31)
	if err != nil {
		return err
	}
	md.Signed.Keys[id] = key
	md.Signed.Roles[metadata.TIMESTAMP].KeyIDs = []string{id}
	for _, s := range rootSigners {
		if _, err := md.Sign(s); err != nil {
			return err
		}
	}
	raw, err := md.ToBytes(false)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, strconv.FormatInt(md.Signed.Version, 10)+".root.json"), raw, 0o644)
}

// ForgeBadRolloutsDelegation rewrites dir as a holder of the online key
// alone could: the next rollouts role delegates rollouts/*/* to a role
// "evil" whose key is 31 bytes long (1.evil.json is written too), and a
// new snapshot (pinning evil.json as well when pinEvil) and timestamp are
// signed with online. go-tuf would load evil while looking for a rollouts
// path and panic verifying it.
func ForgeBadRolloutsDelegation(dir string, now time.Time, online signature.Signer, pinEvil bool) error {
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, name)) }
	write := func(name string, data []byte) error { return os.WriteFile(filepath.Join(dir, name), data, 0o644) }
	expires := now.Add(24 * time.Hour).UTC().Truncate(time.Second)

	data, err := read("rollouts.json")
	if err != nil {
		return err
	}
	ro, err := metadata.Targets().FromBytes(data)
	if err != nil {
		return err
	}
	key, id, err := ShortKey(31)
	if err != nil {
		return err
	}
	ro.ClearSignatures()
	ro.Signed.Version++
	ro.Signed.Expires = expires
	ro.Signed.Delegations = &metadata.Delegations{
		Keys:  map[string]*metadata.Key{id: key},
		Roles: []metadata.DelegatedRole{{Name: "evil", KeyIDs: []string{id}, Threshold: 1, Paths: []string{"rollouts/*/*"}}},
	}
	if _, err := ro.Sign(online); err != nil {
		return err
	}
	roRaw, err := ro.ToBytes(false)
	if err != nil {
		return err
	}
	if err := write(strconv.FormatInt(ro.Signed.Version, 10)+".rollouts.json", roRaw); err != nil {
		return err
	}
	if err := write("rollouts.json", roRaw); err != nil {
		return err
	}

	evil := metadata.Targets(expires)
	evil.Signatures = []metadata.Signature{{KeyID: id, Signature: make([]byte, 64)}}
	evilRaw, err := evil.ToBytes(false)
	if err != nil {
		return err
	}
	if err := write("1.evil.json", evilRaw); err != nil {
		return err
	}

	tgRaw, err := read("targets.json")
	if err != nil {
		return err
	}
	tg, err := metadata.Targets().FromBytes(tgRaw)
	if err != nil {
		return err
	}
	snapRaw0, err := read("snapshot.json")
	if err != nil {
		return err
	}
	snap0, err := metadata.Snapshot().FromBytes(snapRaw0)
	if err != nil {
		return err
	}
	snap := metadata.Snapshot(expires)
	snap.Signed.Version = snap0.Signed.Version + 1
	snap.Signed.Meta = map[string]*metadata.MetaFiles{
		"targets.json":  pin(tgRaw, tg.Signed.Version),
		"rollouts.json": pin(roRaw, ro.Signed.Version),
	}
	if pinEvil {
		snap.Signed.Meta["evil.json"] = pin(evilRaw, 1)
	}
	if _, err := snap.Sign(online); err != nil {
		return err
	}
	snapRaw, err := snap.ToBytes(false)
	if err != nil {
		return err
	}
	if err := write(strconv.FormatInt(snap.Signed.Version, 10)+".snapshot.json", snapRaw); err != nil {
		return err
	}
	if err := write("snapshot.json", snapRaw); err != nil {
		return err
	}

	tsRaw0, err := read("timestamp.json")
	if err != nil {
		return err
	}
	ts0, err := metadata.Timestamp().FromBytes(tsRaw0)
	if err != nil {
		return err
	}
	ts := metadata.Timestamp(expires)
	ts.Signed.Version = ts0.Signed.Version + 1
	ts.Signed.Meta = map[string]*metadata.MetaFiles{"snapshot.json": pin(snapRaw, snap.Signed.Version)}
	if _, err := ts.Sign(online); err != nil {
		return err
	}
	tsRaw, err := ts.ToBytes(false)
	if err != nil {
		return fmt.Errorf("timestamp: %w", err)
	}
	return write("timestamp.json", tsRaw)
}

func pin(raw []byte, version int64) *metadata.MetaFiles {
	sum := sha256.Sum256(raw)
	return &metadata.MetaFiles{Version: version, Length: int64(len(raw)), Hashes: metadata.Hashes{"sha256": sum[:]}}
}
