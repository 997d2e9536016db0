// Package publish is the server and release-team side of the signed
// channel metadata whose format and device-side verifier are package
// channelmeta (see its doc for the files, roles, keys and records). It
// owns the key files, building and signing roles, the repository on disk
// and its status. The device binary never links it.
//
// # Repository
//
// Init (offline keys) writes root 1 and an empty targets 1. Open gives a
// Repo with the online signers; Refresh creates and renews rollouts,
// snapshot and timestamp (each is re-signed with a new version when it is
// missing, changed, no longer verifies under root, or past half its
// lifetime) and is meant to be called periodically. PublishTargets /
// AcceptTargets and PublishRollouts change content (PublishRolloutsIfChanged
// only when the states differ from the signed ones, for replicas that
// re-publish periodically); versions only grow.
// Every function takes the clock as an argument.
//
// # Lifecycle
//
// Status reports each role's version and expiry; RenewWarning (30 days)
// is when the offline roles need renewing. mxosctl metadata renew,
// sign-existing and rotate-keys build root and targets offline with
// RotateRoot and BuildTargets, after VerifyRootSignedBy and VerifyTargets
// check what the server served, and the server installs them with
// AcceptRoot and AcceptTargets.
//
// Errors: ErrInvalid, ErrExists, ErrNoOnlineKey and ErrNeedTargets are
// this package's own; verification failures wrap the kinds of
// channelmeta (ErrMalformed, ErrBadSignature, ErrRollback, …).
package publish
