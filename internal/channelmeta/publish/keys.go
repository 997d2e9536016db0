package publish

import (
	"crypto"
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// RoleKeys is a set of public keys and how many of them must sign.
type RoleKeys struct {
	Keys      []crypto.PublicKey
	Threshold int
}

// Keys names the three key sets of the repository (see the package doc).
type Keys struct {
	// Root signs root.json: the key sets themselves and their rotation.
	Root RoleKeys
	// Release signs targets.json: which releases may be installed.
	Release RoleKeys
	// Online signs timestamp, snapshot and the delegated rollouts role.
	Online RoleKeys
}

// tufKeys converts public keys to TUF keys, keyed by key ID.
func tufKeys(rk RoleKeys) ([]*metadata.Key, error) {
	var out []*metadata.Key
	seen := map[string]bool{}
	for _, pub := range rk.Keys {
		k, err := metadata.KeyFromPublicKey(pub)
		if err != nil {
			return nil, invalidf("public key: %v", err)
		}
		id, err := k.ID()
		if err != nil {
			return nil, invalidf("key id: %v", err)
		}
		if seen[id] {
			return nil, invalidf("key %s listed twice", id)
		}
		seen[id] = true
		out = append(out, k)
	}
	return out, nil
}

func keyIDs(keys []*metadata.Key) []string {
	ids := make([]string, 0, len(keys))
	for _, k := range keys {
		id, _ := k.ID() // computed (and cached) by tufKeys already
		ids = append(ids, id)
	}
	return ids
}

func (rk RoleKeys) validate(name string) error {
	if len(rk.Keys) == 0 {
		return invalidf("%s: no keys", name)
	}
	if rk.Threshold < 1 || rk.Threshold > len(rk.Keys) {
		return invalidf("%s: threshold %d with %d keys", name, rk.Threshold, len(rk.Keys))
	}
	_, err := tufKeys(rk)
	return err
}

// validate checks thresholds and that no online key is also a root or
// release key: the online key lives on the server, and if it could sign
// targets or root a server compromise could install anything.
func (k Keys) validate() error {
	for _, r := range []struct {
		name string
		rk   RoleKeys
	}{{"root keys", k.Root}, {"release keys", k.Release}, {"online keys", k.Online}} {
		if err := r.rk.validate(r.name); err != nil {
			return err
		}
	}
	online, _ := tufKeys(k.Online)
	root, _ := tufKeys(k.Root)
	release, _ := tufKeys(k.Release)
	offline := append(keyIDs(root), keyIDs(release)...)
	for _, id := range keyIDs(online) {
		if slices.Contains(offline, id) {
			return invalidf("online key %s is also a root or release key", id)
		}
	}
	return nil
}

// Ed25519Signer wraps an ed25519 private key as the sigstore signer go-tuf
// signs with. The key is copied.
func Ed25519Signer(key ed25519.PrivateKey) (signature.Signer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, invalidf("ed25519 private key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	s, err := signature.LoadED25519Signer(slices.Clone(key))
	if err != nil {
		return nil, fmt.Errorf("ed25519 signer: %w", err)
	}
	return s, nil
}

// Ed25519Signers parses an ostree-format ed25519.secret file (see
// internal/sign) into signers, one per line.
func Ed25519Signers(secretFile []byte) ([]signature.Signer, error) {
	keys, err := sign.ParseEd25519SecretKeys(secretFile)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, k := range keys {
			clear(k)
		}
	}()
	out := make([]signature.Signer, 0, len(keys))
	for _, k := range keys {
		s, err := Ed25519Signer(k)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Ed25519PublicKeys parses an ostree-format ed25519.pub file.
func Ed25519PublicKeys(pubFile []byte) ([]crypto.PublicKey, error) {
	keys, err := sign.ParseEd25519PublicKeys(pubFile)
	if err != nil {
		return nil, err
	}
	out := make([]crypto.PublicKey, 0, len(keys))
	for _, k := range keys {
		out = append(out, k)
	}
	return out, nil
}

// maxSecretFile bounds a secret key file read; real ones are a few lines.
const maxSecretFile = 1 << 20

// LoadEd25519Signers reads dir/ed25519.secret (the format and permission
// rules of internal/sign: a file readable by group or others is refused,
// because a key others could read must be assumed compromised).
func LoadEd25519Signers(dir string) ([]signature.Signer, error) {
	path := filepath.Join(dir, sign.Ed25519SecretFile)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load signers: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load signers: %w", err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("load signers: %s: must be a regular file with mode 0600 or stricter, is %v", path, st.Mode())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	defer clear(data)
	if err != nil {
		return nil, fmt.Errorf("load signers: read %s: %w", path, err)
	}
	if len(data) > maxSecretFile {
		return nil, fmt.Errorf("load signers: %s is larger than %d bytes", path, maxSecretFile)
	}
	signers, err := Ed25519Signers(data)
	if err != nil {
		return nil, fmt.Errorf("load signers: %s: %w", path, err)
	}
	return signers, nil
}

// PublicKeys returns the public keys of signers, e.g. to build Keys from
// the signers at hand.
func PublicKeys(signers ...signature.Signer) ([]crypto.PublicKey, error) {
	out := make([]crypto.PublicKey, 0, len(signers))
	for _, s := range signers {
		pub, err := s.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("signer public key: %w", err)
		}
		out = append(out, pub)
	}
	return out, nil
}

// signerIDs returns the TUF key IDs of signers.
func signerIDs(signers []signature.Signer) ([]string, error) {
	pubs, err := PublicKeys(signers...)
	if err != nil {
		return nil, err
	}
	keys, err := tufKeys(RoleKeys{Keys: pubs})
	if err != nil {
		return nil, err
	}
	return keyIDs(keys), nil
}

// signAll signs md with every signer. The caller verifies the result
// against the delegating role, so a signer that does not belong there
// only adds an ignored signature.
func signAll[T metadata.Roles](md *metadata.Metadata[T], signers []signature.Signer) error {
	if len(signers) == 0 {
		return invalidf("no signers")
	}
	for _, s := range signers {
		if _, err := md.Sign(s); err != nil {
			return fmt.Errorf("sign: %w", err)
		}
	}
	return nil
}

// onlineDelegation builds the targets→rollouts delegation from the online
// keys root names for timestamp (one source of truth for "the online key").
func onlineDelegation(root *metadata.Metadata[metadata.RootType]) (*metadata.Delegations, error) {
	ids, threshold := channelmeta.RoleKeyIDs(root, metadata.TIMESTAMP)
	if len(ids) == 0 {
		return nil, malformedf("root has no timestamp keys")
	}
	d := &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	for _, id := range ids {
		k, ok := root.Signed.Keys[id]
		if !ok {
			return nil, malformedf("root names timestamp key %s but does not list it", id)
		}
		d.Keys[id] = k
	}
	d.Roles = []metadata.DelegatedRole{{
		Name:        channelmeta.RolloutsRole,
		KeyIDs:      slices.Clone(ids),
		Threshold:   threshold,
		Terminating: true,
		Paths:       []string{channelmeta.RolloutsPattern},
	}}
	return d, nil
}

// checkDelegation verifies that targets delegates exactly rollouts/*/* to
// exactly root's online keys. The server refuses anything else, so a
// release tool bug cannot hand the online key more paths.
func checkDelegation(targets *metadata.Metadata[metadata.TargetsType], root *metadata.Metadata[metadata.RootType]) error {
	d := targets.Signed.Delegations
	if d == nil || len(d.Roles) != 1 || d.SuccinctRoles != nil {
		return malformedf("targets must delegate exactly one role, %q", channelmeta.RolloutsRole)
	}
	role := d.Roles[0]
	if role.Name != channelmeta.RolloutsRole || !role.Terminating || len(role.PathHashPrefixes) != 0 ||
		!slices.Equal(role.Paths, []string{channelmeta.RolloutsPattern}) {
		return malformedf("targets must delegate %q to %q (terminating)", channelmeta.RolloutsPattern, channelmeta.RolloutsRole)
	}
	wantIDs, wantThreshold := channelmeta.RoleKeyIDs(root, metadata.TIMESTAMP)
	if role.Threshold != wantThreshold || len(role.KeyIDs) != len(wantIDs) {
		return malformedf("rollouts delegation keys/threshold differ from root's online keys")
	}
	for _, id := range role.KeyIDs {
		k, ok := d.Keys[id]
		if !ok || k == nil || !slices.Contains(wantIDs, id) {
			return malformedf("rollouts delegation key %s is not an online key of root", id)
		}
		// The map key is only a label: the signature is checked against
		// the key material, so the material must hash to the label.
		if got, err := k.ID(); err != nil || got != id {
			return malformedf("rollouts delegation key %s does not match its id", id)
		}
	}
	if len(d.Keys) != len(role.KeyIDs) {
		return malformedf("rollouts delegation lists unused keys")
	}
	return nil
}
