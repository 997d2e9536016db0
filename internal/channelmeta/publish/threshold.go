package publish

import (
	"fmt"
	"slices"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
)

// k-of-n release signatures. A channel may need releases signed by k
// different release keys (channel.Channel.Threshold). The keys are the n
// release keys root names for targets; root's own targets threshold stays
// what it is (usually 1, so testing needs one signature). A release that
// needs k carries k in its record (Release.Threshold), and:
//
//   - the targets listing it must carry valid signatures by k distinct
//     release keys of root (TargetsSigners): the server refuses it
//     otherwise, and devices ignore the release (State.Ignored), so an
//     offer of it is refused as not signed;
//   - the release team signs in turn: the first member signs a partly
//     signed promotion, the next adds a signature (CosignTargets).
//
// Limit: the record's threshold is itself release-signed, so one stolen
// release key can sign a record that says 1 (the server refuses it for a
// channel whose file says more, a hostile server would not). Raising
// root's targets threshold to k closes that for every channel at once.

// TargetsSigners counts the distinct release keys (root's targets keys)
// with a valid signature on targets.
func TargetsSigners(root, targets []byte) (int, error) {
	rootMD, err := parseRoot(root)
	if err != nil {
		return 0, err
	}
	md, err := parseTargets(targets)
	if err != nil {
		return 0, err
	}
	return channelmeta.CountSigners(rootMD, md)
}

// CosignTargets adds the signatures of signers (release keys root names
// that have not signed yet) to targets, without changing what is signed,
// and returns the new bytes with the number of distinct release keys that
// now sign them. It refuses a signer that root does not name for targets.
func CosignTargets(root, targets []byte, signers []signature.Signer) ([]byte, int, error) {
	rootMD, err := parseRoot(root)
	if err != nil {
		return nil, 0, err
	}
	md, err := parseTargets(targets)
	if err != nil {
		return nil, 0, err
	}
	ids, err := signerIDs(signers)
	if err != nil {
		return nil, 0, err
	}
	want, _ := channelmeta.RoleKeyIDs(rootMD, metadata.TARGETS)
	for i, s := range signers {
		if !slices.Contains(want, ids[i]) {
			return nil, 0, invalidf("key %s is not a release key of the signed root", ids[i])
		}
		if slices.ContainsFunc(md.Signatures, func(sg metadata.Signature) bool { return sg.KeyID == ids[i] }) {
			return nil, 0, invalidf("key %s has already signed", ids[i])
		}
		if _, err := md.Sign(s); err != nil {
			return nil, 0, fmt.Errorf("cosign: %w", err)
		}
	}
	out, err := md.ToBytes(false)
	if err != nil {
		return nil, 0, err
	}
	n, err := channelmeta.CountSigners(rootMD, md)
	return out, n, err
}
