package imagename

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Labels (and manifest annotations) the image carries. The keys and values
// are those ostree-ext writes for encapsulated commits.
const (
	LabelCommit   = "ostree.commit"
	LabelBootable = "ostree.bootable"
	LabelBootc    = "containers.bootc"
	LabelVersion  = v1.AnnotationVersion
)

// Errors callers decide on.
var (
	ErrBadRef      = errors.New("ref is not mxos/<major>/<arch>/<channel>")
	ErrNotBootable = errors.New("not an MxOS bootable image")
)

var (
	majorRE = regexp.MustCompile(`^[0-9]+$`)
	tagBad  = regexp.MustCompile(`[^a-zA-Z0-9._-]`)
)

// RepositoryForRef splits a channel ref mxos/<major>/<arch>/<channel> into
// the image repository mxos/<major>/<arch>, the arch and the channel.
func RepositoryForRef(ref string) (repo, arch, channel string, err error) {
	parts := strings.Split(ref, "/")
	if len(parts) != 4 || parts[0] != "mxos" || !majorRE.MatchString(parts[1]) || parts[2] == "" || parts[3] == "" {
		return "", "", "", fmt.Errorf("%w: %q", ErrBadRef, ref)
	}
	if _, err := OCIArch(parts[2]); err != nil {
		return "", "", "", err
	}
	if !ValidComponent(parts[2]) || !ValidTag(parts[3]) {
		return "", "", "", fmt.Errorf("%w: %q has characters an image name cannot hold", ErrBadRef, ref)
	}
	return strings.Join(parts[:3], "/"), parts[2], parts[3], nil
}

var componentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$`)
var tagRE = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// ValidComponent reports whether s can be one component of a repository
// name (the distribution spec's pattern).
func ValidComponent(s string) bool { return componentRE.MatchString(s) }

// ValidTag reports whether s can be a tag.
func ValidTag(s string) bool { return tagRE.MatchString(s) }

// Tags are the tags a release image gets: the channel, and
// <channel>-<version> with characters a tag cannot hold (such as "+" or
// "~") replaced by "_".
func Tags(channel, version string) []string {
	v := tagBad.ReplaceAllString(channel+"-"+version, "_")
	if len(v) > 128 {
		v = v[:128]
	}
	return []string{channel, v}
}

// OCIArch maps an OSTree/RPM arch name to the OCI (GOARCH) one.
func OCIArch(arch string) (string, error) {
	switch arch {
	case "x86_64", "amd64":
		return "amd64", nil
	case "aarch64", "arm64":
		return "arm64", nil
	case "ppc64le", "s390x", "riscv64":
		return arch, nil
	}
	return "", fmt.Errorf("%w: unknown architecture %q", ErrBadRef, arch)
}

// CommitLabel returns the ostree.commit label of an image config.
func CommitLabel(config []byte) (string, error) {
	var cfg v1.Image
	if err := json.Unmarshal(config, &cfg); err != nil {
		return "", fmt.Errorf("image config: %w", err)
	}
	c, ok := cfg.Config.Labels[LabelCommit]
	if !ok {
		return "", fmt.Errorf("%w: no %s label", ErrNotBootable, LabelCommit)
	}
	return c, nil
}
