package api

// Remote publishing and promotion. The release key never leaves the release
// team's machine: mxosctl builds and signs commits (and the TUF targets
// metadata) locally, uploads only the objects the server lacks, and asks
// the server to move the channel. The server verifies every object on
// arrival, the commit's signatures against the release keys it trusts, the
// ref binding, the version and the timestamp before it moves anything.
//
//	POST /api/v1/uploads                       release  → UploadSession
//	POST /api/v1/uploads/{id}/missing          release  MissingRequest → MissingResponse
//	PUT  /api/v1/uploads/{id}/objects/{name}   release  raw object bytes (archive form) → 204
//	POST /api/v1/uploads/{id}/commit           release  → 204 (staged objects become visible)
//	POST /api/v1/releases                      release  ReleaseRequest → Release
//	GET  /api/v1/releases?channel=C&arch=A     any role → []Release
//
// Object names are "<64 hex>.<type>" with type commit, dirtree, dirmeta or
// filez. An upload session lives on disk until committed or until it is a
// day old, so an interrupted upload resumes: "missing" leaves out objects
// already in the repository or staged in the session.

// UploadSession names a staging area for objects.
type UploadSession struct {
	ID string `json:"id"`
}

// MissingRequest lists objects the client is about to need.
type MissingRequest struct {
	Objects []string `json:"objects"`
}

// MissingResponse lists those the server has neither stored nor staged.
type MissingResponse struct {
	Missing []string `json:"missing"`
}

// MaxMissingObjects bounds one MissingRequest; clients batch.
const MaxMissingObjects = 10000

// ReleaseRequest publishes (PromotedFrom empty) or promotes a commit that
// is already stored (upload committed) onto a channel's ref. Commitmeta is
// the commit's detached metadata (a{sv} with ostree.sign.ed25519 and
// ostree.gpgsigs), base64 in JSON. Targets is the new TUF targets
// metadata signed by the release key, listing this release (channel, arch,
// version, ref, commit); a server that publishes signed channel metadata
// (GET /metadata/targets.json answers) requires it and installs it with the
// release, and a server without ignores it.
type ReleaseRequest struct {
	Channel      string `json:"channel"`
	Arch         string `json:"arch"`
	Version      string `json:"version"`
	Commit       string `json:"commit"`
	Commitmeta   []byte `json:"commitmeta"`
	PromotedFrom string `json:"promoted_from,omitempty"`
	Targets      []byte `json:"targets,omitempty"`
	// OCIDigest is the manifest digest of the release's bootable image
	// (sha256:<hex>), "" when none was made. With signed channel metadata
	// it must equal the digest the signed targets list for the release.
	OCIDigest string `json:"oci_digest,omitempty"`
	// Ramp overrides the channel's default rollout plan; "none" publishes
	// without starting a rollout.
	Ramp string `json:"ramp,omitempty"`
}

// ImageImportRequest is POST /api/v1/images (release role), sent by
// mxosctl image import after it copied and signed an image: the audit log
// records the import, and the release of that channel, arch and version,
// if published, gets the image as its bootable image.
type ImageImportRequest struct {
	Channel string `json:"channel"`
	Arch    string `json:"arch"`
	Version string `json:"version"`
	Digest  string `json:"digest"`           // sha256:<hex> manifest digest
	Source  string `json:"source,omitempty"` // where it came from, for the audit log
}

// ImageImport answers POST /api/v1/images: the release the image now
// belongs to, nil when that version is not (yet) published on the
// channel (devices are offered images only of releases).
type ImageImport struct {
	Release *Release `json:"release,omitempty"`
}
