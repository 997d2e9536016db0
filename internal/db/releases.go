package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// Release is one release on a channel for an architecture: a row of the
// channel's history. A promotion adds a row on the target channel with
// PromotedFrom naming the source.
type Release struct {
	Channel string
	Arch    string
	Version string // rollout.ParseVersion syntax
	Ref     string // OSTree ref, e.g. mxos/10/x86_64/stable
	Commit  string // OSTree commit checksum, 64 lowercase hex digits
	// OCIDigest is the bootable image's manifest digest; "" if none.
	OCIDigest    string
	PublishedAt  time.Time
	PublishedBy  string
	PromotedFrom string // source channel of a promotion; "" if published directly
}

func (r *Release) validate() error {
	c := check{what: "release"}
	c.key("channel", r.Channel)
	c.key("arch", r.Arch)
	c.key("version", r.Version)
	c.key("ref", r.Ref)
	if !isHex64(r.Commit) {
		c.fail("commit %q is not 64 lowercase hex digits", r.Commit)
	}
	c.optKey("oci digest", r.OCIDigest)
	c.time("published at", r.PublishedAt)
	c.key("published by", r.PublishedBy)
	c.optKey("promoted from", r.PromotedFrom)
	if c.err == nil {
		if _, err := rollout.ParseVersion(r.Version); err != nil {
			c.err = fmt.Errorf("release: %w: %w", ErrInvalid, err)
		}
	}
	return c.err
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// AddRelease records a release. The same version twice on a channel and
// architecture is ErrDuplicate; a version not newer (rollout.Compare) than
// the newest already there is ErrVersionOrder, so a channel only moves
// forward. Concurrent adds to one channel and architecture are serialized.
func (q *Queries) AddRelease(ctx context.Context, r Release) error {
	if err := r.validate(); err != nil {
		return err
	}
	where := r.Channel + "/" + r.Arch
	return q.atomic(ctx, func(q *Queries) error {
		if err := q.d.lock(ctx, q.q, "mxos-release", r.Channel, r.Arch); err != nil {
			return fmt.Errorf("adding release %s %s: %w", where, r.Version, err)
		}
		existing, err := q.ListReleases(ctx, r.Channel, r.Arch)
		if err != nil {
			return fmt.Errorf("adding release %s %s: %w", where, r.Version, err)
		}
		for _, e := range existing {
			if e.Version == r.Version {
				return fmt.Errorf("adding release %s %s: %w", where, r.Version, ErrDuplicate)
			}
		}
		if len(existing) > 0 {
			newest := existing[0].Version
			if c, err := rollout.Compare(r.Version, newest); err != nil || c <= 0 {
				return fmt.Errorf("adding release %s %s: %w: newest is %s", where, r.Version, ErrVersionOrder, newest)
			}
		}
		_, err = q.q.ExecContext(ctx, `INSERT INTO releases
			(channel, arch, version, ref, commit_hex, oci_digest, published_at, published_by, promoted_from)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			r.Channel, r.Arch, r.Version, r.Ref, r.Commit, nullText(r.OCIDigest),
			micros(r.PublishedAt), r.PublishedBy, nullText(r.PromotedFrom))
		if isUnique(err) {
			return fmt.Errorf("adding release %s %s: %w", where, r.Version, ErrDuplicate)
		}
		if err != nil {
			return fmt.Errorf("adding release %s %s: %w", where, r.Version, err)
		}
		return q.noteChange(ctx, ChangeRelease, where+"/"+r.Version)
	})
}

const releaseColumns = `channel, arch, version, ref, commit_hex, oci_digest, published_at, published_by, promoted_from`

func scanRelease(sc interface{ Scan(...any) error }) (Release, error) {
	var (
		r                 Release
		oci, promoted     sql.NullString
		publishedAtMicros int64
	)
	err := sc.Scan(&r.Channel, &r.Arch, &r.Version, &r.Ref, &r.Commit, &oci, &publishedAtMicros, &r.PublishedBy, &promoted)
	r.OCIDigest, r.PromotedFrom, r.PublishedAt = oci.String, promoted.String, fromMicros(publishedAtMicros)
	return r, err
}

// GetRelease returns one release, or ErrNotFound.
func (q *Queries) GetRelease(ctx context.Context, channel, arch, version string) (Release, error) {
	row := q.q.QueryRowContext(ctx, `SELECT `+releaseColumns+` FROM releases
		WHERE channel = $1 AND arch = $2 AND version = $3`, channel, arch, version)
	r, err := scanRelease(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Release{}, fmt.Errorf("release %s/%s %s: %w", channel, arch, version, ErrNotFound)
	}
	if err != nil {
		return Release{}, fmt.Errorf("reading release %s/%s %s: %w", channel, arch, version, err)
	}
	return r, nil
}

// ListReleases returns a channel's releases for arch, newest version
// first; with arch "" it returns every architecture's, newest first and by
// architecture within one version. No releases is an empty list, not an
// error.
func (q *Queries) ListReleases(ctx context.Context, channel, arch string) ([]Release, error) {
	query, args := `SELECT `+releaseColumns+` FROM releases WHERE channel = $1`, []any{channel}
	if arch != "" {
		query, args = query+` AND arch = $2`, append(args, arch)
	}
	rows, err := q.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("listing releases of %s: %w", channel, err)
	}
	defer rows.Close()
	type parsed struct {
		r Release
		v rollout.Version
	}
	var ps []parsed
	for rows.Next() {
		r, err := scanRelease(rows)
		if err != nil {
			return nil, fmt.Errorf("listing releases of %s: %w", channel, err)
		}
		// Only validated versions are ever written; a bad one means the
		// database was edited by hand, which must not be sorted silently.
		v, err := rollout.ParseVersion(r.Version)
		if err != nil {
			return nil, fmt.Errorf("listing releases of %s: stored %w", channel, err)
		}
		ps = append(ps, parsed{r, v})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing releases of %s: %w", channel, err)
	}
	// Versions are ordered in Go: their order (numeric parts, pre-releases)
	// is not something either engine's collation knows.
	slices.SortStableFunc(ps, func(a, b parsed) int {
		if c := b.v.Compare(a.v); c != 0 {
			return c
		}
		if a.r.Arch != b.r.Arch {
			if a.r.Arch < b.r.Arch {
				return -1
			}
			return 1
		}
		return 0
	})
	out := make([]Release, len(ps))
	for i, p := range ps {
		out[i] = p.r
	}
	return out, nil
}

// LatestRelease returns the newest release on a channel for arch, or
// ErrNotFound when the channel has none.
func (q *Queries) LatestRelease(ctx context.Context, channel, arch string) (Release, error) {
	if arch == "" {
		return Release{}, fmt.Errorf("latest release of %s: %w: arch is required", channel, ErrInvalid)
	}
	rs, err := q.ListReleases(ctx, channel, arch)
	if err != nil {
		return Release{}, err
	}
	if len(rs) == 0 {
		return Release{}, fmt.Errorf("latest release of %s/%s: %w", channel, arch, ErrNotFound)
	}
	return rs[0], nil
}

// SetReleaseImage records digest as the bootable image of a release that
// has none yet (the same digest again is a no-op). ErrNotFound: no such
// release; ErrConflict: it already has another image.
func (q *Queries) SetReleaseImage(ctx context.Context, channel, arch, version, digest string) error {
	what := fmt.Sprintf("recording the image of release %s/%s %s", channel, arch, version)
	c := check{what: what}
	c.key("image digest", digest)
	if c.err != nil {
		return c.err
	}
	return q.atomic(ctx, func(q *Queries) error {
		r, err := q.GetRelease(ctx, channel, arch, version)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		switch r.OCIDigest {
		case digest:
			return nil
		case "":
		default:
			return fmt.Errorf("%s: %w: it already has image %s", what, ErrConflict, r.OCIDigest)
		}
		_, err = q.q.ExecContext(ctx, `UPDATE releases SET oci_digest = $4 WHERE channel = $1 AND arch = $2 AND version = $3`,
			channel, arch, version, digest)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return q.noteChange(ctx, ChangeRelease, channel+"/"+arch+"/"+version)
	})
}
