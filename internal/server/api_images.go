package server

// The update and admin API: recording an imported image (routes in
// publish.go).

import (
	"encoding/json"
	"errors"
	"net/http"
	"regexp"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/db"
)

var manifestDigest = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// handleImageImport records an image import (mxosctl image import): an
// image.import audit entry, and the digest as the bootable image of the
// release of that channel, arch and version when it is published and has
// none. Channels reached by promotion refuse imports (their images come
// with promote --image); with signed channel metadata the signed targets
// must list this image for the release. An image of a version not
// published is only audited: devices are offered images of releases only.
func (a *apiState) handleImageImport(w http.ResponseWriter, r *http.Request) error {
	var req api.ImageImportRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	ch, err := a.channels.Get(req.Channel)
	if err != nil {
		return api.Errorf(api.CodeUnknownChannel, "unknown channel %q", req.Channel)
	}
	if ch.PromotesFrom != "" {
		return api.Errorf(api.CodePromotion, "channel %s accepts promotions only (from %s): use mxosctl promote --image", ch.Name, ch.PromotesFrom)
	}
	if _, ok := ch.Ref(req.Arch); !ok {
		return api.Errorf(api.CodeUnknownArch, "channel %s has no %s", ch.Name, req.Arch)
	}
	if req.Version == "" {
		return api.Errorf(api.CodeBadRequest, "version is required")
	}
	if !manifestDigest.MatchString(req.Digest) {
		return api.Errorf(api.CodeBadRequest, "digest must be sha256: and 64 hex digits")
	}
	now, who := a.now(), actor(r)
	var out api.ImageImport
	err = a.store.Tx(r.Context(), func(tx *db.Tx) error {
		rel, err := tx.GetRelease(r.Context(), ch.Name, req.Arch, req.Version)
		switch {
		case errors.Is(err, db.ErrNotFound):
		case err != nil:
			return err
		default:
			if a.meta != nil {
				if s, ok := a.meta.signedRelease(ch.Name, req.Arch, req.Version); !ok || s.OCIDigest != req.Digest {
					return api.Errorf(api.CodeConflict, "signed targets list image %q for %s %s on %s, not %q", s.OCIDigest, req.Arch, req.Version, ch.Name, req.Digest)
				}
			}
			if err := tx.SetReleaseImage(r.Context(), ch.Name, req.Arch, req.Version, req.Digest); errors.Is(err, db.ErrConflict) {
				return api.Errorf(api.CodeConflict, "%s %s on %s already has image %s", req.Arch, req.Version, ch.Name, rel.OCIDigest)
			} else if err != nil {
				return err
			}
			rel.OCIDigest = req.Digest
			out.Release = toAPIRelease(rel)
		}
		detail, _ := json.Marshal(map[string]any{"digest": req.Digest, "source": req.Source, "release": out.Release != nil})
		_, err = tx.AppendAudit(r.Context(), db.Entry{Actor: who, Action: "image.import",
			Subject: ch.Name + "/" + req.Arch + "/" + req.Version, Detail: string(detail), At: now})
		return err
	})
	if err != nil {
		return err
	}
	a.updates.Invalidate()
	writeJSON(w, http.StatusOK, out)
	return nil
}
