package registry

import (
	"bytes"
	"encoding/json"
	"mime"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Manifest media types the registry stores.
const (
	MediaTypeOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex       = "application/vnd.oci.image.index.v1+json"
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// MaxManifestSize caps a manifest body. The spec asks registries to accept
// at least 4 MB; more is refused so one request cannot fill memory.
const MaxManifestSize = 4 << 20

func isIndexType(mt string) bool { return mt == MediaTypeOCIIndex || mt == MediaTypeDockerList }

func isManifestType(mt string) bool {
	return mt == MediaTypeOCIManifest || mt == MediaTypeDockerManifest
}

// descriptor is the part of an OCI descriptor the registry needs.
type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       digest.Digest     `json:"digest"`
	Size         int64             `json:"size"`
	URLs         []string          `json:"urls,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// rawManifest decodes both image manifests and indexes; pointers tell a
// missing field from an empty one.
type rawManifest struct {
	SchemaVersion *int              `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *descriptor       `json:"config"`
	Layers        *[]descriptor     `json:"layers"`
	Manifests     *[]descriptor     `json:"manifests"`
	Subject       *descriptor       `json:"subject"`
	Annotations   map[string]string `json:"annotations"`
}

// manifestInfo is what the registry keeps about a checked manifest.
type manifestInfo struct {
	MediaType    string
	ArtifactType string // for the referrers API: artifactType, else the config's media type
	Config       *descriptor
	Layers       []descriptor
	Manifests    []descriptor
	Subject      *descriptor
	Annotations  map[string]string
}

// blobRefs are the blobs that must be in the repository before the
// manifest is accepted: the config and the layers, except layers that are
// by definition not pushed (non-distributable and foreign layers).
func (m *manifestInfo) blobRefs() []descriptor {
	var refs []descriptor
	if m.Config != nil {
		refs = append(refs, *m.Config)
	}
	for _, l := range m.Layers {
		if strings.Contains(l.MediaType, ".nondistributable.") || strings.Contains(l.MediaType, ".foreign.") {
			continue
		}
		refs = append(refs, l)
	}
	return refs
}

// parseManifest checks a manifest body against the Content-Type it came
// with (contentType may be empty: then the body decides). It refuses what
// is ambiguous: no mediaType that can be inferred, a mediaType differing
// from the Content-Type, an index with layers or a config, an image
// manifest with manifests. The bytes are never rewritten.
func parseManifest(contentType string, body []byte) (*manifestInfo, error) {
	if len(body) > MaxManifestSize {
		return nil, errorf(CodeSizeInvalid, "manifest is larger than %d bytes", MaxManifestSize).withStatus(413)
	}
	ct := ""
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return nil, errorf(CodeManifestInvalid, "invalid Content-Type %q", truncate(contentType))
		}
		ct = mt
	}
	var raw rawManifest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&raw); err != nil {
		return nil, errorf(CodeManifestInvalid, "manifest is not valid JSON: %s", truncate(err.Error()))
	}
	if dec.More() {
		return nil, errorf(CodeManifestInvalid, "manifest has data after the JSON object")
	}
	if raw.SchemaVersion == nil || *raw.SchemaVersion != 2 {
		return nil, errorf(CodeManifestInvalid, "manifest schemaVersion must be 2")
	}
	looksIndex := raw.Manifests != nil
	looksImage := raw.Config != nil || raw.Layers != nil
	if looksIndex && looksImage {
		return nil, errorf(CodeManifestInvalid, "manifest has both manifests and config/layers")
	}
	mt := raw.MediaType
	switch {
	case mt != "":
		if ct != "" && ct != mt {
			return nil, errorf(CodeManifestInvalid, "Content-Type %q differs from the manifest's mediaType %q", truncate(ct), truncate(mt))
		}
	case isIndexType(ct) || isManifestType(ct):
		mt = ct
	case looksIndex:
		mt = MediaTypeOCIIndex
	case raw.Config != nil:
		mt = MediaTypeOCIManifest
	default:
		return nil, errorf(CodeManifestInvalid, "manifest has no mediaType and its type cannot be inferred")
	}
	switch {
	case isIndexType(mt):
		if looksImage {
			return nil, errorf(CodeManifestInvalid, "an index must not have config or layers")
		}
		if raw.Manifests == nil {
			return nil, errorf(CodeManifestInvalid, "an index must have manifests")
		}
	case isManifestType(mt):
		if looksIndex {
			return nil, errorf(CodeManifestInvalid, "an image manifest must not have manifests")
		}
		if raw.Config == nil {
			return nil, errorf(CodeManifestInvalid, "an image manifest must have a config")
		}
	default:
		return nil, errorf(CodeManifestInvalid, "unsupported manifest media type %q", truncate(mt))
	}
	if ct != "" && ct != mt {
		return nil, errorf(CodeManifestInvalid, "Content-Type %q does not fit the manifest (%s)", truncate(ct), mt)
	}
	m := &manifestInfo{MediaType: mt, ArtifactType: raw.ArtifactType, Config: raw.Config, Subject: raw.Subject, Annotations: raw.Annotations}
	if raw.Layers != nil {
		m.Layers = *raw.Layers
	}
	if raw.Manifests != nil {
		m.Manifests = *raw.Manifests
	}
	if m.ArtifactType == "" && m.Config != nil && isManifestType(mt) {
		m.ArtifactType = m.Config.MediaType
	}
	check := func(what string, d *descriptor) error {
		if err := checkDescriptor(d); err != nil {
			return errorf(CodeManifestInvalid, "%s: %s", what, err.Message)
		}
		return nil
	}
	if m.Config != nil {
		if err := check("config", m.Config); err != nil {
			return nil, err
		}
	}
	for i := range m.Layers {
		if err := check("layer", &m.Layers[i]); err != nil {
			return nil, err
		}
	}
	for i := range m.Manifests {
		if err := check("manifest", &m.Manifests[i]); err != nil {
			return nil, err
		}
	}
	if m.Subject != nil {
		if err := check("subject", m.Subject); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func checkDescriptor(d *descriptor) *Error {
	if _, err := parseDigest(string(d.Digest)); err != nil {
		return err.(*Error)
	}
	if d.Size < 0 {
		return errorf(CodeManifestInvalid, "negative size for %s", d.Digest)
	}
	if d.MediaType == "" {
		return errorf(CodeManifestInvalid, "no mediaType for %s", d.Digest)
	}
	return nil
}
