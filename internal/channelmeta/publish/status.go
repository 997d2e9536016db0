package publish

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
)

// RenewWarning is how long before an offline role (root, targets)
// expires that the server, mxosctl channels and mxosctl metadata status
// warn: only the holders of the offline keys can renew them (mxosctl
// metadata renew), and they need time to gather.
const RenewWarning = 30 * 24 * time.Hour

// Roles are the roles of the repository, in the order status lists them.
var Roles = []string{metadata.ROOT, metadata.TARGETS, channelmeta.RolloutsRole, metadata.SNAPSHOT, metadata.TIMESTAMP}

// RoleStatus is the version and expiry of one role's current file.
type RoleStatus struct {
	Role    string    `json:"role"`
	Version int64     `json:"version"`
	Expires time.Time `json:"expires"`
}

// Offline reports whether only offline keys (root or release) can renew
// the role; the server renews the others itself.
func (s RoleStatus) Offline() bool { return s.Role == metadata.ROOT || s.Role == metadata.TARGETS }

// ExpiresSoon reports whether an offline role expires within RenewWarning
// of now (or has expired).
func (s RoleStatus) ExpiresSoon(now time.Time) bool {
	return s.Offline() && s.Expires.Sub(now) < RenewWarning
}

// RoleInfo reads a role file's version and expiry, after CheckFile; it
// does not verify signatures (callers show status, they do not trust).
func RoleInfo(role string, data []byte) (RoleStatus, error) {
	if err := channelmeta.CheckFile(role, data); err != nil {
		return RoleStatus{}, err
	}
	var f struct {
		Signed struct {
			Version int64     `json:"version"`
			Expires time.Time `json:"expires"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return RoleStatus{}, fmt.Errorf("%s: %w: %v", role, channelmeta.ErrMalformed, err)
	}
	return RoleStatus{Role: role, Version: f.Signed.Version, Expires: f.Signed.Expires}, nil
}

// Status returns the version and expiry of every role on disk, in Roles
// order; roles not yet written (before the first Refresh) are left out.
func (r *Repo) Status() ([]RoleStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []RoleStatus
	for _, role := range Roles {
		data, err := r.readOptional(role+".json", channelmeta.MaxFileSize)
		if err != nil {
			return nil, err
		}
		if data == nil {
			continue
		}
		st, err := RoleInfo(role, data)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// RootKeys returns the key sets a root names, for building the Keys of a
// renewal or rotation from the current root.
func RootKeys(root []byte) (Keys, error) {
	md, err := parseRoot(root)
	if err != nil {
		return Keys{}, err
	}
	get := func(role string) (RoleKeys, error) {
		ids, threshold := channelmeta.RoleKeyIDs(md, role)
		rk := RoleKeys{Threshold: threshold}
		for _, id := range ids {
			k, ok := md.Signed.Keys[id]
			if !ok {
				return RoleKeys{}, malformedf("root names %s key %s but does not list it", role, id)
			}
			pub, err := k.ToPublicKey()
			if err != nil {
				return RoleKeys{}, malformedf("root %s key %s: %v", role, id, err)
			}
			rk.Keys = append(rk.Keys, pub)
		}
		return rk, nil
	}
	var k Keys
	var err2 error
	if k.Root, err2 = get(metadata.ROOT); err2 != nil {
		return Keys{}, err2
	}
	if k.Release, err2 = get(metadata.TARGETS); err2 != nil {
		return Keys{}, err2
	}
	if k.Online, err2 = get(metadata.TIMESTAMP); err2 != nil {
		return Keys{}, err2
	}
	return k, nil
}

// VerifyRootSignedBy checks that root carries a valid signature of every
// signer's key. mxosctl reads the current root from the server; before it
// re-signs anything derived from it (renew, rotate-keys, sign-existing)
// it requires the root to be one its own keys signed, so a hostile
// server cannot slip keys of its own into the next root.
func VerifyRootSignedBy(root []byte, signers []signature.Signer) error {
	md, err := parseRoot(root)
	if err != nil {
		return err
	}
	pubs, err := PublicKeys(signers...)
	if err != nil {
		return err
	}
	tk, err := tufKeys(RoleKeys{Keys: pubs})
	if err != nil {
		return err
	}
	check := metadata.Root(md.Signed.Expires)
	for _, k := range tk {
		if err := check.Signed.AddKey(k, metadata.ROOT); err != nil {
			return fmt.Errorf("root: %w", err)
		}
	}
	check.Signed.Roles[metadata.ROOT].Threshold = len(tk)
	if err := check.VerifyDelegate(metadata.ROOT, md); err != nil {
		return fmt.Errorf("root version %d is not signed by the given key(s): %w", md.Signed.Version, wrapKind("root", err))
	}
	return nil
}

// VerifyTargets checks that targets are signed by a threshold of the
// release keys root names (expiry is not checked: renew re-signs expired
// targets) and lists valid releases only.
func VerifyTargets(root, targets []byte) ([]channelmeta.Release, error) {
	rootMD, err := parseRoot(root)
	if err != nil {
		return nil, err
	}
	md, err := parseTargets(targets)
	if err != nil {
		return nil, err
	}
	if err := rootMD.VerifyDelegate(metadata.TARGETS, md); err != nil {
		return nil, wrapKind("targets", err)
	}
	return releasesOf(md)
}

// Root returns the current root.json, checked.
func (r *Repo) Root() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	data, err := r.read(channelmeta.RootFile, channelmeta.DefaultRootMax)
	if err != nil {
		return nil, err
	}
	if _, err := parseRoot(data); err != nil {
		return nil, err
	}
	return data, nil
}
