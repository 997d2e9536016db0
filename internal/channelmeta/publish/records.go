package publish

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
)

// normTime is the one time form in signed records and metadata: UTC,
// whole seconds, as the TUF spec and python-tuf expect for "expires".
func normTime(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }

// recordTarget turns a record into a TUF target whose custom field is the
// record's canonical JSON and whose length/hashes are over those bytes.
func recordTarget(path string, record any) (*metadata.TargetFiles, error) {
	canon, err := cjson.EncodeCanonical(record)
	if err != nil {
		return nil, fmt.Errorf("canonical JSON of %s: %w", path, err)
	}
	tf, err := metadata.TargetFile().FromBytes(path, canon, "sha256")
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", path, err)
	}
	raw := json.RawMessage(canon)
	tf.Custom = &raw
	return tf, nil
}

func releaseTarget(r channelmeta.Release) (*metadata.TargetFiles, error) {
	r.PublishedAt = normTime(r.PublishedAt)
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return recordTarget(r.Path(), r)
}

func rolloutTarget(s channelmeta.RolloutState) (*metadata.TargetFiles, error) {
	if !s.StartedAt.IsZero() {
		s.StartedAt = normTime(s.StartedAt)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return recordTarget(s.Path(), s)
}
