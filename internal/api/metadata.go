package api

import "time"

// MetadataUpdate is PUT /api/v1/metadata: signed channel metadata made on
// the release team's machine (mxosctl metadata renew, sign-existing,
// rotate-keys). Root, when set, is the next root version (a renewal or a
// key rotation, signed by the old and the new root keys); Targets, when
// set, is the next targets version signed by the release key(s). A
// rotation that changes the release or online keys must carry both.
type MetadataUpdate struct {
	Root    []byte `json:"root,omitempty"`
	Targets []byte `json:"targets,omitempty"`
}

// MetadataRole is the version and expiry of one role of the signed
// channel metadata, as PUT /api/v1/metadata answers after installing.
type MetadataRole struct {
	Role    string    `json:"role"`
	Version int64     `json:"version"`
	Expires time.Time `json:"expires"`
}
