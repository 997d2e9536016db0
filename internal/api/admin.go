package api

import "time"

// Routes of the update and admin API, all JSON, all under /api/v1. The
// role each needs is in internal/auth; the repository and signed metadata
// are static files and need none.
//
//	POST   /api/v1/check                  device   CheckRequest → CheckResponse
//	POST   /api/v1/report                 device   ReportRequest → 204
//	POST   /api/v1/enroll                 enroll   EnrollRequest → Credential
//	POST   /api/v1/credential/rotate      device   → Credential
//	GET    /api/v1/channels               release, admin, device → []ChannelStatus
//	GET    /api/v1/rollouts?channel=C     release, admin → []RolloutStatus
//	POST   /api/v1/rollouts               release  RolloutStartRequest → []RolloutStatus
//	POST   /api/v1/rollouts/{id}/{action} release  RolloutActionRequest → RolloutStatus (pause, resume, halt, complete)
//	GET    /api/v1/pins                   admin    → []Pin
//	PUT    /api/v1/pins                   admin    Pin → Pin
//	DELETE /api/v1/pins/{scope}/{target}  admin    → 204
//	GET    /api/v1/devices                admin    ?channel=&group=&limit=&after= → DeviceList
//	PUT    /api/v1/devices/{id}/group     admin    GroupRequest → 204
//	GET    /api/v1/devices/{id}/reports   admin    ?limit= → []DeviceReport (newest first)
//	GET    /api/v1/identities             admin    → []DeviceIdentity
//	PUT    /api/v1/identities/{id}        admin    → DeviceIdentity (authorize: may enroll once)
//	DELETE /api/v1/identities/{id}        admin    → DeviceIdentity (revoke its credentials)
//	GET    /api/v1/reports/timeline       release, admin ?rollout=&days= → ReportTimeline
//	GET    /api/v1/audit                  release, admin ?after=&limit= → AuditList
//	GET    /api/v1/tokens                 admin    ?credentials=1 → []TokenInfo
//	POST   /api/v1/tokens                 admin; release for release tokens only
//	                                               TokenCreateRequest → TokenCreated
//	DELETE /api/v1/tokens/{name}          admin    → 204
//	POST   /api/v1/registry/gc            release  → the registry's GC figures (also daily)
//	POST   /api/v1/images                 release  ImageImportRequest → ImageImport (mxosctl image import)
const Prefix = "/api/v1"

// Release is a published release of one channel and architecture.
type Release struct {
	Channel      string    `json:"channel"`
	Arch         string    `json:"arch"`
	Version      string    `json:"version"`
	Ref          string    `json:"ref"`
	Commit       string    `json:"commit"`
	OCIDigest    string    `json:"oci_digest,omitempty"`
	PublishedAt  time.Time `json:"published_at"`
	PublishedBy  string    `json:"published_by"`
	PromotedFrom string    `json:"promoted_from,omitempty"`
}

// RolloutStatus is a rollout and where its ramp stands.
type RolloutStatus struct {
	ID         string    `json:"id"`
	Channel    string    `json:"channel"`
	Arch       string    `json:"arch"`
	Version    string    `json:"version"`
	Ramp       string    `json:"ramp"`
	State      string    `json:"state"`
	Fraction   float64   `json:"fraction"` // share of devices admitted now
	StartedAt  time.Time `json:"started_at,omitzero"`
	UpdatedAt  time.Time `json:"updated_at,omitzero"`
	HaltReason string    `json:"halt_reason,omitempty"`
	Successes  int       `json:"successes"` // within the channel's halt window
	Failures   int       `json:"failures"`
	CreatedBy  string    `json:"created_by"`
}

// ArchStatus is one architecture of a channel.
type ArchStatus struct {
	Arch    string         `json:"arch"`
	Ref     string         `json:"ref"`
	Latest  *Release       `json:"latest,omitempty"`
	Rollout *RolloutStatus `json:"rollout,omitempty"`
}

// ChannelStatus is a channel with its current release and rollout.
type ChannelStatus struct {
	Name         string       `json:"name"`
	Description  string       `json:"description,omitempty"`
	PromotesFrom string       `json:"promotes_from,omitempty"`
	DefaultRamp  string       `json:"default_ramp"`
	Arches       []ArchStatus `json:"arches"`
}

// RolloutStartRequest starts a rollout of a published version. An empty
// Arch means every architecture of the channel that has the version; an
// empty Ramp means the channel's default plan.
type RolloutStartRequest struct {
	Channel string `json:"channel"`
	Arch    string `json:"arch,omitempty"`
	Version string `json:"version"`
	Ramp    string `json:"ramp,omitempty"`
}

// RolloutActionRequest carries the reason for pause, resume, halt or
// complete; it goes into the audit log.
type RolloutActionRequest struct {
	Reason string `json:"reason,omitempty"`
}

// Pin assigns a device or group to a channel and/or holds it on a version.
type Pin struct {
	Scope     string    `json:"scope"` // "device" or "group"
	Target    string    `json:"target"`
	Channel   string    `json:"channel,omitempty"`
	Version   string    `json:"version,omitempty"`
	CreatedBy string    `json:"created_by,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// Device is what the server knows of a device.
type Device struct {
	ID           string    `json:"id"`
	Arch         string    `json:"arch"`
	Channel      string    `json:"channel"`
	Group        string    `json:"group,omitempty"`
	BootedCommit string    `json:"booted_commit,omitempty"`
	Version      string    `json:"version,omitempty"`
	FirstSeen    time.Time `json:"first_seen"`
	LastSeen     time.Time `json:"last_seen"`
}

// DeviceList is one page of devices; Next is the After of the next page.
type DeviceList struct {
	Devices []Device `json:"devices"`
	Total   int      `json:"total"`
	Next    string   `json:"next,omitempty"`
}

// DeviceReport is one report a device sent, as stored. Counted says
// whether its class counts toward auto-halt (Event.ReleaseFailure).
type DeviceReport struct {
	RolloutID string    `json:"rollout_id,omitempty"`
	Version   string    `json:"version"`
	Event     Event     `json:"event"`
	Counted   bool      `json:"counted"`
	Error     string    `json:"error,omitempty"`
	At        time.Time `json:"at"`
	Seq       int64     `json:"seq,omitempty"`
}

// GroupRequest sets a device's group ("" removes it).
type GroupRequest struct {
	Group string `json:"group"`
}

// AuditEntry is one entry of the append-only audit log.
type AuditEntry struct {
	Seq      int64     `json:"seq"`
	Actor    string    `json:"actor"`
	Action   string    `json:"action"`
	Subject  string    `json:"subject"`
	Detail   string    `json:"detail,omitempty"`
	At       time.Time `json:"at"`
	PrevHash string    `json:"prev_hash"`
	Hash     string    `json:"hash"`
}

// AuditList is a page of the audit log and whether the whole chain
// verified on the server.
type AuditList struct {
	Entries     []AuditEntry `json:"entries"`
	Verified    bool         `json:"verified"`
	VerifyError string       `json:"verify_error,omitempty"`
	HeadSeq     int64        `json:"head_seq"`
	HeadHash    string       `json:"head_hash"`
}

// TokenCreateRequest asks for a new token. Expires is its lifetime ("90d",
// "36h"; empty: the role's default, see internal/auth); DeviceID binds a
// device token to one device.
type TokenCreateRequest struct {
	Name     string `json:"name"`
	Role     string `json:"role"`
	Expires  string `json:"expires,omitempty"`
	DeviceID string `json:"device_id,omitempty"`
	// MaxDevices caps how many devices an enroll token enrolls (0: the
	// server's default, 500).
	MaxDevices int `json:"max_devices,omitempty"`
}

// EnrollRequest trades an enroll token for the device's own credential.
type EnrollRequest struct {
	DeviceID string `json:"device_id"`
}

// Validate checks an enrollment.
func (r *EnrollRequest) Validate() error {
	if r.DeviceID == "" || len(r.DeviceID) > 128 {
		return Errorf(CodeBadRequest, "device_id must be 1 to 128 characters")
	}
	return nil
}

// Credential is a device's own token, returned once at enrollment and at
// each rotation; the server keeps only its hash.
type Credential struct {
	DeviceID  string    `json:"device_id"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// DeviceIdentity is what admins see of a device id's identity: its state
// ("authorized", "enrolled", "revoked", or "" for an id a device token is
// bound to) and its live credentials.
type DeviceIdentity struct {
	DeviceID          string    `json:"device_id"`
	State             string    `json:"state,omitempty"`
	UpdatedAt         time.Time `json:"updated_at,omitzero"`
	UpdatedBy         string    `json:"updated_by,omitempty"`
	Credentials       int       `json:"credentials"`
	CredentialExpires time.Time `json:"credential_expires,omitzero"`
	Revoked           int       `json:"revoked,omitempty"` // credentials this request revoked
}

// TokenCreated returns the token once; the server keeps only its hash.
type TokenCreated struct {
	TokenInfo
	Token string `json:"token"`
}

// TokenInfo describes a token without revealing it.
type TokenInfo struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	DeviceID  string    `json:"device_id,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// MaxDevices: an enroll token's cap (0: the server's default).
	MaxDevices int `json:"max_devices,omitempty"`
}

// ReportCount is one cell of GET /api/v1/reports/timeline: in the bucket
// starting at Start, Reports reports of Event about Version, from Devices
// distinct devices.
type ReportCount struct {
	Start   time.Time `json:"start"`
	Version string    `json:"version"`
	Event   Event     `json:"event"`
	Reports int       `json:"reports"`
	Devices int       `json:"devices"`
}

// ReportTimeline is GET /api/v1/reports/timeline's answer: report counts
// in buckets of Bucket seconds from Since, all rollouts' or one's
// (?rollout=ID), for ?days=N (1 to 90, default 14; hourly buckets for up
// to 2 days, else daily).
type ReportTimeline struct {
	Since  time.Time     `json:"since"`
	Bucket int64         `json:"bucket_seconds"`
	Counts []ReportCount `json:"counts"`
}
