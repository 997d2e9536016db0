// Package commitsig owns the signatures of OSTree commits and summaries as
// ostree stores them: in detached metadata (.commitmeta, summary.sig), one
// byte-array list per engine (ostree.sign.ed25519, ostree.gpgsigs). It
// joins internal/sign (keys, signers, verifiers) and internal/ostree (the
// metadata format) and nothing else, so the device side can check
// signatures without linking the publishing pipeline (internal/release).
package commitsig

import (
	"fmt"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// Sign signs data with every signer and returns the signatures as ostree
// metadata (one aay per engine), appended to existing.
func Sign(signers []sign.Signer, data []byte, existing ostree.Metadata) (ostree.Metadata, error) {
	byKey := map[string][][]byte{}
	var order []string
	for _, s := range signers {
		sig, err := s.Sign(data)
		if err != nil {
			return nil, err
		}
		k := s.MetaKey()
		if _, ok := byKey[k]; !ok {
			order = append(order, k)
			old, _ := existing.ByteArrays(k)
			byKey[k] = append(byKey[k], old...)
		}
		byKey[k] = append(byKey[k], sig)
	}
	md := append(ostree.Metadata(nil), existing...)
	for _, k := range order {
		md = md.Set(k, ostree.BytesListVar(byKey[k]))
	}
	return md, nil
}

// SignatureMap turns ostree metadata into the map sign.VerifyAll reads.
func SignatureMap(md ostree.Metadata) map[string][][]byte {
	out := map[string][][]byte{}
	for _, k := range []string{sign.Ed25519MetaKey, sign.GPGMetaKey} {
		if v, ok := md.ByteArrays(k); ok {
			out[k] = v
		}
	}
	return out
}

// Verifier returns a check for ostree.FsckOptions.VerifyCommit (and the
// pullers) that requires valid signatures from the given trusted keys.
func Verifier(verifiers []sign.Verifier) func(ostree.Checksum, []byte, ostree.Metadata) error {
	return func(c ostree.Checksum, commit []byte, md ostree.Metadata) error {
		if md == nil {
			return fmt.Errorf("commit %s: %w: no detached metadata", c, sign.ErrNoSignatures)
		}
		return sign.VerifyAll(verifiers, commit, SignatureMap(md))
	}
}
