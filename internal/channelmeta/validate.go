package channelmeta

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
)

// Input checks. go-tuf trusts the shape of what it parses: an ed25519
// public key of the wrong length, for one, reaches ed25519.Verify, which
// panics. So every metadata file is checked here before go-tuf parses or
// verifies it, on the device (Client: the shipped root, the cache, every
// fetched file) and on the server (AcceptTargets, AcceptRoot, Open). The
// rules are those of the repositories this package writes, no wider:
//
//   - keys: ed25519 (scheme ed25519, 64 lowercase hex digits) or ECDSA
//     P-256 (keytype ecdsa or ecdsa-sha2-nistp256, scheme
//     ecdsa-sha2-nistp256, a PEM PKIX public key on P-256); RSA and
//     anything else is refused. A key's id must be the TUF key id of its
//     content (sha256 of its canonical JSON), so one key cannot be counted
//     twice under two names.
//   - signatures: at most maxSignatures, key ids of 64 lowercase hex
//     digits, each id once, signatures of 1..maxSigBytes bytes in hex.
//   - roles and delegations: 1 <= threshold <= number of key ids, key ids
//     unique and all listed in keys, at most maxRoleKeys of them. Root
//     names exactly the four top-level roles. Targets may delegate only
//     the rollouts role, by path patterns (no hash prefixes, no succinct
//     roles); the rollouts role delegates nothing.
//   - versions at least 1; pinned lengths not negative; hashes sha256 or
//     sha512 of their exact size; timestamp pins only snapshot.json,
//     snapshot pins only targets.json and rollouts.json.
//
// Failures are ErrMalformed and name the file's role and the problem.

const (
	maxSignatures = 32
	maxSigBytes   = 512
	maxRoleKeys   = 32
	maxKeys       = 64
	maxPaths      = 16
	maxPathLen    = 256
	maxKeyValue   = 1024
)

var (
	keyIDRE    = regexp.MustCompile(`^[0-9a-f]{64}$`)
	ed25519Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)
	lowerHexRE = regexp.MustCompile(`^([0-9a-f]{2})+$`)
	// topRoles are the roles root must name, and the only ones.
	topRoles = []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP}
)

type rawFile struct {
	Signed     *rawSigned `json:"signed"`
	Signatures []rawSig   `json:"signatures"`
}

type rawSig struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

type rawSigned struct {
	Type        string                     `json:"_type"`
	Version     int64                      `json:"version"`
	Keys        map[string]json.RawMessage `json:"keys"`
	Roles       map[string]*rawRole        `json:"roles"`
	Meta        map[string]*rawMeta        `json:"meta"`
	Targets     map[string]*rawMeta        `json:"targets"`
	Delegations *rawDelegations            `json:"delegations"`
}

type rawRole struct {
	Name             string          `json:"name"`
	KeyIDs           []string        `json:"keyids"`
	Threshold        int             `json:"threshold"`
	Paths            []string        `json:"paths"`
	PathHashPrefixes json.RawMessage `json:"path_hash_prefixes"`
}

type rawMeta struct {
	Version *int64            `json:"version"`
	Length  *int64            `json:"length"`
	Hashes  map[string]string `json:"hashes"`
}

type rawDelegations struct {
	Keys          map[string]json.RawMessage `json:"keys"`
	Roles         []rawRole                  `json:"roles"`
	SuccinctRoles json.RawMessage            `json:"succinct_roles"`
}

type rawKey struct {
	Type   string `json:"keytype"`
	Scheme string `json:"scheme"`
	Value  struct {
		Public string `json:"public"`
	} `json:"keyval"`
}

// roleOfFile maps a metadata file name a device fetches (root.json,
// N.root.json, timestamp.json, N.snapshot.json, N.targets.json,
// N.rollouts.json, or the same without a version) to its role; "" for
// any other name.
func roleOfFile(name string) string {
	m := metadataFileRE.FindStringSubmatch(name)
	if m == nil {
		return ""
	}
	return m[1]
}

var metadataFileRE = regexp.MustCompile(`^(?:[1-9][0-9]{0,18}\.)?(root|timestamp|snapshot|targets|rollouts)\.json$`)

// CheckFile checks that data is well-formed metadata for role (root,
// timestamp, snapshot, targets or rollouts) under the rules above. It
// checks shape only, not signatures: it is what makes the data safe to
// hand to go-tuf, which then verifies it.
func CheckFile(role string, data []byte) error {
	if err := checkFile(role, data); err != nil {
		return fmt.Errorf("%s: %w: %w", role, ErrMalformed, err)
	}
	return nil
}

func checkFile(role string, data []byte) error {
	if len(data) > MaxFileSize {
		return fmt.Errorf("%d bytes, at most %d", len(data), MaxFileSize)
	}
	var f rawFile
	if err := json.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("not metadata JSON: %w", err)
	}
	if f.Signed == nil {
		return fmt.Errorf("no signed part")
	}
	if err := checkSignatures(f.Signatures); err != nil {
		return err
	}
	s := f.Signed
	wantType := role
	if role == RolloutsRole {
		wantType = metadata.TARGETS
	}
	if s.Type != wantType {
		return fmt.Errorf("type %q, want %q", short(s.Type), wantType)
	}
	if s.Version < 1 {
		return fmt.Errorf("version %d, want at least 1", s.Version)
	}
	switch role {
	case metadata.ROOT:
		return checkRoot(s)
	case metadata.TIMESTAMP:
		return checkMetaMap(s.Meta, []string{SnapshotFile}, true)
	case metadata.SNAPSHOT:
		return checkMetaMap(s.Meta, []string{TargetsFile, RolloutsFile}, false)
	case metadata.TARGETS, RolloutsRole:
		if err := checkTargetsMap(s.Targets); err != nil {
			return err
		}
		return checkDelegations(role, s.Delegations)
	}
	return fmt.Errorf("unknown role %q", short(role))
}

func checkSignatures(sigs []rawSig) error {
	if len(sigs) > maxSignatures {
		return fmt.Errorf("%d signatures, at most %d", len(sigs), maxSignatures)
	}
	seen := map[string]bool{}
	for i, sg := range sigs {
		if !keyIDRE.MatchString(sg.KeyID) {
			return fmt.Errorf("signature %d: key id %q is not 64 lowercase hex digits", i, short(sg.KeyID))
		}
		if seen[sg.KeyID] {
			return fmt.Errorf("signature %d: key id %s signs twice", i, sg.KeyID)
		}
		seen[sg.KeyID] = true
		if !lowerHexRE.MatchString(sg.Sig) || len(sg.Sig) > 2*maxSigBytes {
			return fmt.Errorf("signature %d (key %s): want 1 to %d bytes in lowercase hex", i, sg.KeyID, maxSigBytes)
		}
	}
	return nil
}

func checkRoot(s *rawSigned) error {
	if err := checkKeys(s.Keys); err != nil {
		return err
	}
	if len(s.Roles) != len(topRoles) {
		return fmt.Errorf("root names %d roles, want exactly %s", len(s.Roles), strings.Join(topRoles, ", "))
	}
	for _, name := range topRoles {
		r, ok := s.Roles[name]
		if !ok || r == nil {
			return fmt.Errorf("root does not name the %s role", name)
		}
		if err := checkRoleKeys("root role "+name, r, s.Keys); err != nil {
			return err
		}
	}
	return nil
}

// checkKeys checks every key in a keys map (root's or a delegation's).
func checkKeys(keys map[string]json.RawMessage) error {
	if len(keys) > maxKeys {
		return fmt.Errorf("%d keys, at most %d", len(keys), maxKeys)
	}
	for _, id := range sortedKeys(keys) {
		if err := checkKey(id, keys[id]); err != nil {
			return fmt.Errorf("key %s: %w", short(id), err)
		}
	}
	return nil
}

func checkKey(id string, raw json.RawMessage) error {
	if !keyIDRE.MatchString(id) {
		return fmt.Errorf("id is not 64 lowercase hex digits")
	}
	var k rawKey
	if err := json.Unmarshal(raw, &k); err != nil {
		return fmt.Errorf("not a key: %w", err)
	}
	if len(k.Value.Public) > maxKeyValue {
		return fmt.Errorf("public value longer than %d bytes", maxKeyValue)
	}
	switch k.Type {
	case metadata.KeyTypeEd25519:
		if k.Scheme != metadata.KeySchemeEd25519 {
			return fmt.Errorf("ed25519 key with scheme %q", short(k.Scheme))
		}
		if !ed25519Hex.MatchString(k.Value.Public) {
			return fmt.Errorf("ed25519 public key must be 32 bytes (64 lowercase hex digits), is %d characters", len(k.Value.Public))
		}
	case metadata.KeyTypeECDSA_SHA2_P256, metadata.KeyTypeECDSA_SHA2_P256_COMPAT:
		if k.Scheme != metadata.KeySchemeECDSA_SHA2_P256 {
			return fmt.Errorf("ecdsa key with scheme %q, want %s", short(k.Scheme), metadata.KeySchemeECDSA_SHA2_P256)
		}
		block, rest := pem.Decode([]byte(k.Value.Public))
		if block == nil || block.Type != "PUBLIC KEY" || len(bytes.TrimSpace(rest)) != 0 {
			return fmt.Errorf("ecdsa public key is not one PEM PUBLIC KEY block")
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return fmt.Errorf("ecdsa public key: %w", err)
		}
		ec, ok := pub.(*ecdsa.PublicKey)
		if !ok || ec.Curve != elliptic.P256() {
			return fmt.Errorf("ecdsa public key is not on P-256")
		}
	default:
		return fmt.Errorf("key type %q not accepted (ed25519 or ecdsa P-256)", short(k.Type))
	}
	// The id must be the key's own TUF key id (go-tuf's encoding, so the
	// same bytes as every other TUF implementation computes).
	var tk metadata.Key
	if err := json.Unmarshal(raw, &tk); err != nil {
		return fmt.Errorf("not a key: %w", err)
	}
	got, err := tk.ID()
	if err != nil {
		return err
	}
	if got != id {
		return fmt.Errorf("id does not match the key (its id is %s)", got)
	}
	return nil
}

// checkRoleKeys checks a role's key ids and threshold against keys.
func checkRoleKeys(what string, r *rawRole, keys map[string]json.RawMessage) error {
	if len(r.KeyIDs) == 0 || len(r.KeyIDs) > maxRoleKeys {
		return fmt.Errorf("%s: %d key ids, want 1 to %d", what, len(r.KeyIDs), maxRoleKeys)
	}
	if r.Threshold < 1 || r.Threshold > len(r.KeyIDs) {
		return fmt.Errorf("%s: threshold %d with %d keys", what, r.Threshold, len(r.KeyIDs))
	}
	for i, id := range r.KeyIDs {
		if slices.Contains(r.KeyIDs[:i], id) {
			return fmt.Errorf("%s: key id %s listed twice", what, short(id))
		}
		if _, ok := keys[id]; !ok {
			return fmt.Errorf("%s: key %s is not listed in keys", what, short(id))
		}
	}
	return nil
}

var hashSize = map[string]int{"sha256": 32, "sha512": 64}

func checkHashes(what string, h map[string]string, required bool) error {
	if required && len(h) == 0 {
		return fmt.Errorf("%s: no hashes", what)
	}
	for alg, v := range h {
		n, ok := hashSize[alg]
		if !ok {
			return fmt.Errorf("%s: hash algorithm %q (sha256 or sha512)", what, short(alg))
		}
		if len(v) != 2*n || !lowerHexRE.MatchString(v) {
			return fmt.Errorf("%s: %s hash must be %d lowercase hex digits", what, alg, 2*n)
		}
	}
	return nil
}

// checkMetaMap checks a timestamp's or snapshot's meta: only names from
// allowed, each with a version >= 1 and a valid length and hashes.
func checkMetaMap(meta map[string]*rawMeta, allowed []string, requireAll bool) error {
	if requireAll && len(meta) != len(allowed) {
		return fmt.Errorf("meta lists %d files, want %s", len(meta), strings.Join(allowed, ", "))
	}
	for _, name := range sortedKeys(meta) {
		m := meta[name]
		if !slices.Contains(allowed, name) {
			return fmt.Errorf("meta lists %q (only %s)", short(name), strings.Join(allowed, ", "))
		}
		if m == nil || m.Version == nil || *m.Version < 1 {
			return fmt.Errorf("meta %s: no version of at least 1", name)
		}
		if m.Length != nil && *m.Length < 0 {
			return fmt.Errorf("meta %s: negative length", name)
		}
		if err := checkHashes("meta "+name, m.Hashes, false); err != nil {
			return err
		}
	}
	return nil
}

func checkTargetsMap(targets map[string]*rawMeta) error {
	for _, p := range sortedKeys(targets) {
		t := targets[p]
		if t == nil || t.Length == nil || *t.Length < 0 {
			return fmt.Errorf("target %q: no valid length", short(p))
		}
		if err := checkHashes("target "+short(p), t.Hashes, true); err != nil {
			return err
		}
	}
	return nil
}

// checkDelegations allows, in the top-level targets only, the one
// delegation this package writes: the rollouts role by path patterns.
func checkDelegations(role string, d *rawDelegations) error {
	if d == nil {
		return nil
	}
	if role != metadata.TARGETS {
		return fmt.Errorf("the %s role may not delegate", role)
	}
	if len(d.SuccinctRoles) != 0 && string(d.SuccinctRoles) != "null" {
		return fmt.Errorf("succinct delegations are not accepted")
	}
	if err := checkKeys(d.Keys); err != nil {
		return fmt.Errorf("delegation %w", err)
	}
	if len(d.Roles) > 1 {
		return fmt.Errorf("%d delegated roles, only %q is accepted", len(d.Roles), RolloutsRole)
	}
	for i := range d.Roles {
		r := &d.Roles[i]
		if r.Name != RolloutsRole {
			return fmt.Errorf("delegated role %q, only %q is accepted", short(r.Name), RolloutsRole)
		}
		if len(r.PathHashPrefixes) != 0 && string(r.PathHashPrefixes) != "null" {
			return fmt.Errorf("delegated role %s: path hash prefixes are not accepted", r.Name)
		}
		if len(r.Paths) == 0 || len(r.Paths) > maxPaths {
			return fmt.Errorf("delegated role %s: %d paths, want 1 to %d", r.Name, len(r.Paths), maxPaths)
		}
		for _, p := range r.Paths {
			if p == "" || len(p) > maxPathLen {
				return fmt.Errorf("delegated role %s: path pattern of %d bytes", r.Name, len(p))
			}
			if _, err := path.Match(p, ""); err != nil {
				return fmt.Errorf("delegated role %s: path pattern %q: %w", r.Name, short(p), err)
			}
		}
		if err := checkRoleKeys("delegated role "+r.Name, r, d.Keys); err != nil {
			return err
		}
	}
	return nil
}

// checkedFetcher hands go-tuf only files that pass CheckFile for the role
// their name says; any other name (a delegated role of someone else's
// making, say) is refused before it is fetched.
type checkedFetcher struct {
	inner fetcher.Fetcher
}

func (f *checkedFetcher) DownloadFile(url string, maxLength int64, timeout time.Duration) ([]byte, error) {
	name := path.Base(url)
	role := roleOfFile(name)
	if role == "" {
		return nil, malformedf("%s is not a file of MxOS channel metadata (no other roles are accepted)", short(name))
	}
	data, err := f.inner.DownloadFile(url, maxLength, timeout)
	if err != nil {
		return nil, err
	}
	if err := CheckFile(role, data); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return data, nil
}

// checkCache removes cached files that fail CheckFile before go-tuf reads
// them. go-tuf reads the cache as the trusted baseline and ignores a file
// that does not verify; a malformed one is treated the same way, without
// ever reaching go-tuf's verification.
func (c *Client) checkCache() {
	for _, name := range []string{RootFile, TimestampFile, SnapshotFile, TargetsFile, RolloutsFile} {
		p := filepath.Join(c.cfg.CacheDir, name)
		data, err := ReadFileLimited(p, MaxFileSize)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				_ = os.Remove(p)
			}
			continue
		}
		if CheckFile(roleOfFile(name), data) != nil {
			_ = os.Remove(p)
		}
	}
}
