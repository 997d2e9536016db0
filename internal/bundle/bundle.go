// Package bundle owns the offline update bundle of MxOS Update: a
// directory, copied to a USB stick, that holds one release of one channel
// and arch with everything a device needs to verify and install it
// without a network (`mxosctl bundle create` writes it, `mxos-updater
// upgrade --from DIR` installs it).
//
// # Layout
//
//	DIR/mxos-bundle.json   the manifest (Manifest): what the bundle claims
//	DIR/repo/              an archive-mode OSTree repository holding the
//	                       release's commit, its .commitmeta (release
//	                       signatures) and every object its tree reaches,
//	                       the ref mxos/<major>/<arch>/<channel>, and the
//	                       server's own summary and summary.sig, byte for
//	                       byte (signed by the online key); in a delta
//	                       bundle (Manifest.From, `--from-release`), the
//	                       commit, its .commitmeta and the server's static
//	                       deltas from the named releases (superblock,
//	                       parts, fallback objects) instead of the tree
//	DIR/metadata/          the signed channel metadata (TUF), as the server
//	                       serves it at /metadata/: N.root.json (the whole
//	                       rotation chain), timestamp.json, N.snapshot.json,
//	                       N.targets.json, N.rollouts.json
//
// Nothing in the bundle is trusted because it is in the bundle. The
// manifest is a hint (which release, for which channel and arch) that the
// device checks against the signed metadata, and a device runs on it the
// same chain as on a network update: the shipped root.json → the signed
// channel metadata (expiry, rollback against what the device has seen,
// signatures) → the release must be listed for the device's channel and
// arch with this commit → the summary signed by the online key → the
// commit signed by a release key and bound to the ref → every object's
// checksum → deployed through the same sysroot backend. So a tampered,
// expired or older bundle, or one for another channel or arch, is refused.
//
// The manifest is written last (temp file, fsync, rename, fsync the
// directory), so a copy interrupted while it was made has no manifest and
// is refused as "not a bundle" rather than half used.
//
// Freshness: the metadata's timestamp expires (1 day by default,
// channelmeta), and a device refuses an expired bundle. Sites that carry
// bundles by hand need a longer timestamp expiry on the server or a
// bundle made shortly before the visit; the technician sees which.
package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// File and directory names inside a bundle.
const (
	ManifestFile = "mxos-bundle.json"
	RepoDir      = "repo"
	MetadataDir  = "metadata"
)

// Format is the manifest format this package writes and reads.
const Format = 1

// MaxManifestSize bounds the manifest a device reads.
const MaxManifestSize = 64 << 10

// ErrNotBundle: the directory has no readable manifest.
var ErrNotBundle = errors.New("not an MxOS update bundle")

// ErrBadManifest: the manifest does not parse or names impossible values.
var ErrBadManifest = errors.New("bad bundle manifest")

// Manifest is DIR/mxos-bundle.json. It is not signed: every field is
// checked against the signed channel metadata and the signed commit.
type Manifest struct {
	Format  int    `json:"format"`
	Channel string `json:"channel"`
	Arch    string `json:"arch"`
	Version string `json:"version"`
	// Ref is the OSTree ref of the release, mxos/<major>/<arch>/<channel>.
	Ref string `json:"ref"`
	// Commit is the release's commit checksum (64 lowercase hex digits).
	Commit  string    `json:"commit"`
	Created time.Time `json:"created"`
	// From, when not empty, makes a delta bundle: repo/ then holds the
	// commit, its signatures and static deltas from these releases only
	// (no loose objects), and installs only on a machine that runs one of
	// them.
	From []Base `json:"from,omitempty"`
}

// Base is a release a delta bundle starts from.
type Base struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
}

// MaxBases bounds Manifest.From.
const MaxBases = 16

var segmentRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// Validate checks the manifest's shape; it says nothing about trust.
func (m *Manifest) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadManifest, fmt.Sprintf(format, args...))
	}
	switch {
	case m.Format != Format:
		return bad("format %d, this updater reads format %d", m.Format, Format)
	case !segmentRE.MatchString(m.Channel):
		return bad("channel %q", short(m.Channel))
	case !segmentRE.MatchString(m.Arch):
		return bad("arch %q", short(m.Arch))
	}
	if _, err := rollout.ParseVersion(m.Version); err != nil {
		return bad("version %q: %v", short(m.Version), err)
	}
	if err := ostree.ValidateRef(m.Ref); err != nil {
		return bad("ref: %v", err)
	}
	parts := strings.Split(m.Ref, "/")
	if len(parts) != 4 || parts[0] != "mxos" || parts[1] == "" || parts[2] != m.Arch || parts[3] != m.Channel {
		return bad("ref %q is not mxos/<major>/%s/%s", short(m.Ref), m.Arch, m.Channel)
	}
	if !isCommit(m.Commit) {
		return bad("commit %q is not 64 lowercase hex digits", short(m.Commit))
	}
	if len(m.From) > MaxBases {
		return bad("%d releases to start from, at most %d", len(m.From), MaxBases)
	}
	for _, b := range m.From {
		if _, err := rollout.ParseVersion(b.Version); err != nil {
			return bad("from version %q: %v", short(b.Version), err)
		}
		if !isCommit(b.Commit) || b.Commit == m.Commit {
			return bad("from commit %q is not another 64 lowercase hex digits", short(b.Commit))
		}
	}
	return nil
}

func isCommit(s string) bool {
	c, err := ostree.ParseChecksum(s)
	return err == nil && c.String() == s
}

// ParseManifest decodes and validates a manifest: strict JSON (unknown
// fields and trailing data refused), at most MaxManifestSize bytes.
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadManifest, MaxManifestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadManifest, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the manifest", ErrBadManifest)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Open reads the manifest of the bundle in dir. The manifest is read
// inside dir only (os.OpenInRoot: a symlink on the stick cannot point
// elsewhere), and the repository and metadata directories must exist.
func Open(dir string) (*Manifest, error) {
	f, err := os.OpenInRoot(dir, ManifestFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrNotBundle, dir, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrNotBundle, dir, err)
	}
	m, err := ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ManifestFile), err)
	}
	for _, sub := range []string{RepoDir, MetadataDir} {
		st, err := os.Lstat(filepath.Join(dir, sub))
		if err != nil || !st.IsDir() {
			return nil, fmt.Errorf("%w: %s has no %s/ directory", ErrNotBundle, dir, sub)
		}
	}
	return m, nil
}

// Marshal is the manifest as written to disk.
func (m *Manifest) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func short(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
