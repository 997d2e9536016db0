package publish

import (
	"fmt"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
)

// ListedReleases returns the releases listed in targets metadata bytes,
// sorted by path, WITHOUT checking any signature or expiry. It is for
// callers that verify the same bytes elsewhere: mxosctl rebuilding the
// list to re-sign it with the release key (BuildTargets checks the
// result), and the server matching a release request against the targets
// it is about to hand to AcceptTargets. Records are still validated.
func ListedReleases(targets []byte) ([]channelmeta.Release, error) {
	md, err := parseTargets(targets)
	if err != nil {
		return nil, fmt.Errorf("listed releases: %w", err)
	}
	rels, err := releasesOf(md)
	if err != nil {
		return nil, fmt.Errorf("listed releases: %w", err)
	}
	return rels, nil
}
