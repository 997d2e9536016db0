// Package sign owns the cryptographic identity of MxOS Update: it generates,
// stores and loads the signing keys, signs OSTree commits and summaries, and
// verifies those signatures against pinned public keys.
//
// Two signature forms are supported, both byte-compatible with stock ostree so
// that an unmodified ostree client can verify what the server publishes:
//
//   - Ed25519 (metadata key "ostree.sign.ed25519"): raw 64-byte RFC 8032
//     signatures over the exact bytes of the signed object; key files hold one
//     base64 key per line, as ostree's verification-ed25519-file expects.
//   - OpenPGP (metadata key "ostree.gpgsigs"): binary detached signatures over
//     the exact bytes, verifiable by GnuPG/gpgme; the public key is exported
//     ASCII-armored for `ostree remote add --gpg-import`.
//
// This package deals only in bytes: it does not know how the signatures are
// stored (detached commit metadata, summary.sig), which is the job of the
// GVariant/repository code that calls it.
//
// A key directory holds up to four files (see the *File constants). Secret
// files must not be readable by group or others; LoadSigners refuses them
// otherwise, as ssh does. Error messages never contain key material.
package sign
