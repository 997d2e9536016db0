package release

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/rollout"
	"github.com/mxos-linux/mxos-update/internal/sign"
)

// Store is what Service reads of the server's database. The server
// adapts its db.Store to it; tests use a map.
type Store interface {
	// Versions lists the versions released on channel/arch, newest first.
	Versions(ctx context.Context, channel, arch string) ([]string, error)
	// Commit returns the commit of a release; the error wraps ErrNoRelease
	// when there is none.
	Commit(ctx context.Context, channel, arch, version string) (string, error)
	// OpenRollout returns the channel's rollout that is pending, active or
	// paused, or nil when there is none.
	OpenRollout(ctx context.Context, channel, arch string) (*OpenRollout, error)
}

// OpenRollout is a rollout that blocks a new one on its channel.
type OpenRollout struct {
	ID, Version string
	State       rollout.State
}

// ErrNoRelease is returned by Store.Commit for a release that does not exist.
var ErrNoRelease = errors.New("no such release")

// Service decides release requests (publish and promote) for the server:
// Plan runs Gate and every check that needs only the request, the channel
// definitions and the database, so refusals come before the repository is
// touched; the Acceptor then checks the commit itself. Its refusals are
// *api.Error values with the API's codes, ready for the client.
type Service struct {
	Channels *channel.Set
	Store    Store
}

// Plan is a release request that passed every check of Service.Plan.
type Plan struct {
	Request api.ReleaseRequest
	Action  Action
	Channel *channel.Channel
	Ref     string
	Commit  ostree.Checksum
	// Ramp is the rollout plan to start, "" for none.
	Ramp string
	// SourceRef and SourceCommit name the promoted release (promotions only).
	SourceRef    string
	SourceCommit ostree.Checksum
}

// AcceptRequest is what the Acceptor checks for the plan.
func (p *Plan) AcceptRequest() AcceptRequest {
	return AcceptRequest{Ref: p.Ref, Version: p.Request.Version, Commit: p.Commit,
		Commitmeta: p.Request.Commitmeta, PromotedFromRef: p.SourceRef, SourceCommit: p.SourceCommit}
}

// Plan checks req from caller. A request with PromotedFrom is a promotion,
// any other a publish.
func (s *Service) Plan(ctx context.Context, caller Caller, req api.ReleaseRequest) (*Plan, error) {
	p := &Plan{Request: req, Action: ActionPublish}
	if req.PromotedFrom != "" {
		p.Action = ActionPromote
	}
	if err := Gate(s.Channels, req.Channel, p.Action, req.PromotedFrom, caller); err != nil {
		return nil, GateAPIError(err)
	}
	ch, _ := s.Channels.Get(req.Channel) // Gate found it
	p.Channel = ch
	var ok bool
	if p.Ref, ok = ch.Ref(req.Arch); !ok {
		return nil, api.Errorf(api.CodeUnknownArch, "channel %s has no %q architecture", ch.Name, req.Arch)
	}
	if _, err := rollout.ParseVersion(req.Version); err != nil {
		return nil, api.Errorf(api.CodeBadRequest, "%v", err)
	}
	var err error
	if p.Commit, err = ostree.ParseChecksum(req.Commit); err != nil {
		return nil, api.Errorf(api.CodeBadRequest, "commit: %v", err)
	}
	if len(req.Commitmeta) == 0 {
		return nil, api.Errorf(api.CodeBadRequest, "commitmeta (the commit's signatures) is required")
	}
	if req.OCIDigest != "" {
		if d, err := digest.Parse(req.OCIDigest); err != nil || d.Algorithm() != digest.SHA256 {
			return nil, api.Errorf(api.CodeBadRequest, "oci_digest %q is not a sha256 digest", req.OCIDigest)
		}
	}
	switch req.Ramp {
	case "none":
	case "":
		dr, err := ch.DefaultRamp()
		if err != nil {
			return nil, err
		}
		p.Ramp = dr.String()
	default:
		if _, err := rollout.ParseRamp(req.Ramp); err != nil {
			return nil, api.Errorf(api.CodeBadRequest, "%v", err)
		}
		p.Ramp = req.Ramp
	}

	if p.Action == ActionPromote {
		src, _ := s.Channels.Get(req.PromotedFrom) // Gate checked it
		if p.SourceRef, ok = src.Ref(req.Arch); !ok {
			return nil, api.Errorf(api.CodeUnknownArch, "channel %s has no %q architecture", src.Name, req.Arch)
		}
		c, err := s.Store.Commit(ctx, src.Name, req.Arch, req.Version)
		if errors.Is(err, ErrNoRelease) {
			return nil, api.Errorf(api.CodeNotFound, "%s is not published on %s for %s", req.Version, src.Name, req.Arch)
		}
		if err != nil {
			return nil, err
		}
		if p.SourceCommit, err = ostree.ParseChecksum(c); err != nil {
			return nil, fmt.Errorf("stored release %s/%s %s: %w", src.Name, req.Arch, req.Version, err)
		}
	}

	versions, err := s.Store.Versions(ctx, ch.Name, req.Arch)
	if err != nil {
		return nil, err
	}
	for _, v := range versions {
		if v == req.Version {
			return nil, api.Errorf(api.CodeDuplicateVersion, "%s is already published on %s for %s", req.Version, ch.Name, req.Arch)
		}
	}
	if len(versions) > 0 {
		if c, err := rollout.Compare(req.Version, versions[0]); err != nil || c <= 0 {
			return nil, api.Errorf(api.CodeVersionOrder, "%s is not newer than %s, the newest on %s for %s", req.Version, versions[0], ch.Name, req.Arch)
		}
	}
	if p.Ramp != "" {
		ro, err := s.Store.OpenRollout(ctx, ch.Name, req.Arch)
		if err != nil {
			return nil, err
		}
		if ro != nil {
			return nil, api.Errorf(api.CodeConflict, "rollout %s of %s is %s on %s for %s: complete or halt it first, or publish with ramp \"none\"",
				ro.ID, ro.Version, ro.State, ch.Name, req.Arch)
		}
	}
	return p, nil
}

// GateAPIError maps a refusal of Gate to the API's codes.
func GateAPIError(err error) error {
	switch {
	case errors.Is(err, channel.ErrUnknownChannel):
		return api.Errorf(api.CodeUnknownChannel, "%v", err)
	case errors.Is(err, ErrForbidden):
		return api.Errorf(api.CodeForbidden, "%v", err)
	case errors.Is(err, channel.ErrPromotion):
		return api.Errorf(api.CodePromotion, "%v", err)
	}
	return err
}

// AcceptAPIError maps a refusal of Acceptor.Accept to the API's codes.
func AcceptAPIError(err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, sign.ErrBadSignature), errors.Is(err, sign.ErrNoSignatures), errors.Is(err, ErrUnsigned):
		return api.Errorf(api.CodeBadRequest, "signature check failed: %s", msg)
	case errors.Is(err, ErrIncomplete):
		return api.Errorf(api.CodeBadRequest, "%s (upload and commit the objects first)", msg)
	case errors.Is(err, ErrBadCommit), errors.Is(err, ErrBinding), errors.Is(err, ostree.ErrBadName):
		return api.Errorf(api.CodeBadRequest, "%s", msg)
	case errors.Is(err, ErrOlder):
		return api.Errorf(api.CodeVersionOrder, "%s", msg)
	case errors.Is(err, ErrSameVersion):
		return api.Errorf(api.CodeDuplicateVersion, "%s", msg)
	case errors.Is(err, ErrRootMismatch):
		return api.Errorf(api.CodePromotion, "%s", msg)
	case errors.Is(err, ErrSourceNotFound):
		return api.Errorf(api.CodeNotFound, "%s", msg)
	}
	return err
}
