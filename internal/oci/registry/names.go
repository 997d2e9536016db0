package registry

import (
	"errors"
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/mxos-linux/mxos-update/internal/storage"
)

// Patterns from the distribution spec ("Pulling manifests").
var (
	nameRE = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRE  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

// maxNameLen bounds a repository name, as distribution does; it keeps
// paths on disk well under PATH_MAX.
const maxNameLen = 255

// checkName validates a repository name. Names that pass are safe as a
// relative path: every component starts with [a-z0-9], so none is "." or
// "..", and none collides with the "_tags"-style directories beside them.
func checkName(name string) error {
	if len(name) == 0 || len(name) > maxNameLen || !nameRE.MatchString(name) {
		return errorf(CodeNameInvalid, "invalid repository name %q", truncate(name))
	}
	return nil
}

func checkTag(tag string) error {
	if !tagRE.MatchString(tag) {
		return errorf(CodeManifestInvalid, "invalid tag %q", truncate(tag)).withStatus(400)
	}
	return nil
}

// parseDigest accepts a canonical sha256 or sha512 digest.
func parseDigest(s string) (digest.Digest, error) {
	d := digest.Digest(s)
	if err := storage.Validate(d); err != nil {
		return "", errorf(CodeDigestInvalid, "invalid digest %q: use sha256:<64 hex> or sha512:<128 hex>", truncate(s))
	}
	return d, nil
}

// parseReference splits a manifest reference into a tag or a digest.
func parseReference(ref string) (tag string, d digest.Digest, err error) {
	if strings.Contains(ref, ":") {
		d, err = parseDigest(ref)
		return "", d, err
	}
	if !tagRE.MatchString(ref) {
		return "", "", errorf(CodeManifestInvalid, "invalid tag %q", truncate(ref))
	}
	return ref, "", nil
}

// truncate keeps hostile input from filling error messages and logs.
func truncate(s string) string {
	const max = 80
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// isNotFound reports errors that mean "no such thing".
func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }
