// Package storageconfig reads the server's storage file (mxos-server
// --storage FILE, env MXOS_STORAGE) and opens the object store it names.
//
// The file is YAML, decoded strictly (unknown or repeated keys, wrong
// types and several documents are errors):
//
//	storage:
//	  kind: s3                 # "dir" (the default: everything in --data) or "s3"
//	  endpoint: https://s3.example.mx   # empty: AWS itself
//	  region: us-east-1        # default us-east-1
//	  bucket: mxos-updates
//	  prefix: ""               # optional, a key ending in "/" to share a bucket
//	  access_key_file: /etc/mxos/s3/access-key
//	  secret_key_file: /etc/mxos/s3/secret-key
//	  serve: stream            # /repo/ file contents: "stream" (default) or "redirect"
//
// The credentials are never in the file itself, only the names of files
// holding them (one line each; mode 0600 or stricter is expected, as for
// the server's other keys), so the file can be shown and committed. Their
// contents never appear in errors or logs.
//
// What lives in the bucket: the OCI registry's blobs (under oci/blobs/)
// and a mirror of the OSTree repository (under repo/), from which /repo/
// is served; serve: redirect answers file contents and delta parts with
// presigned URLs instead of streaming them. The registry's repository
// metadata, its upload sessions and the repository that publishing
// writes stay in --data (see README, "Storage").
package storageconfig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v4"

	"github.com/mxos-linux/mxos-update/internal/storage/object"
	"github.com/mxos-linux/mxos-update/internal/storage/s3store"
)

// Kinds of storage.
const (
	KindDir = "dir"
	KindS3  = "s3"
)

// ErrInvalid marks a storage file that cannot be used.
var ErrInvalid = errors.New("invalid storage configuration")

// maxFileSize bounds the storage file and each key file.
const maxFileSize = 64 << 10

// Config is the storage file's "storage" section.
type Config struct {
	Kind          string `yaml:"kind"`
	Endpoint      string `yaml:"endpoint"`
	Region        string `yaml:"region"`
	Bucket        string `yaml:"bucket"`
	Prefix        string `yaml:"prefix"`
	AccessKeyFile string `yaml:"access_key_file"`
	SecretKeyFile string `yaml:"secret_key_file"`
	Serve         string `yaml:"serve"`
}

// Serve modes.
const (
	ServeStream   = "stream"
	ServeRedirect = "redirect"
)

type file struct {
	Storage *Config `yaml:"storage"`
}

// Parse decodes and validates a storage file.
func Parse(data []byte) (Config, error) {
	if len(data) > maxFileSize {
		return Config{}, fmt.Errorf("%w: %d bytes, at most %d allowed", ErrInvalid, len(data), maxFileSize)
	}
	var f file
	if err := yaml.Load(data, &f, yaml.WithKnownFields()); err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if f.Storage == nil {
		return Config{}, fmt.Errorf("%w: no storage section", ErrInvalid)
	}
	c := *f.Storage
	if c.Kind == "" {
		c.Kind = KindDir
	}
	return c, c.Validate()
}

// Validate checks the fields the kind needs.
func (c Config) Validate() error {
	switch c.Kind {
	case KindDir:
		if c.Endpoint != "" || c.Bucket != "" || c.Prefix != "" || c.Region != "" || c.AccessKeyFile != "" || c.SecretKeyFile != "" || c.Serve != "" {
			return fmt.Errorf("%w: kind dir takes no other settings", ErrInvalid)
		}
		return nil
	case KindS3:
	default:
		return fmt.Errorf("%w: kind %q: use dir or s3", ErrInvalid, c.Kind)
	}
	if c.Serve != "" && c.Serve != ServeStream && c.Serve != ServeRedirect {
		return fmt.Errorf("%w: serve %q: use stream or redirect", ErrInvalid, c.Serve)
	}
	var missing []string
	for _, f := range []struct{ name, v string }{{"bucket", c.Bucket}, {"access_key_file", c.AccessKeyFile}, {"secret_key_file", c.SecretKeyFile}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: kind s3 needs %s", ErrInvalid, strings.Join(missing, ", "))
	}
	if c.Endpoint != "" && !strings.HasPrefix(c.Endpoint, "https://") && !strings.HasPrefix(c.Endpoint, "http://") {
		return fmt.Errorf("%w: endpoint %q must be an http or https URL", ErrInvalid, c.Endpoint)
	}
	if c.Prefix != "" && (!strings.HasSuffix(c.Prefix, "/") || object.CheckKey(strings.TrimSuffix(c.Prefix, "/")) != nil) {
		return fmt.Errorf("%w: prefix %q must be a key ending in /", ErrInvalid, c.Prefix)
	}
	return nil
}

// Load reads and parses the storage file at path.
func Load(path string) (Config, error) {
	data, err := readLimited(path)
	if err != nil {
		return Config{}, fmt.Errorf("storage file: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFileSize)
	}
	return data, nil
}

// readKey reads a credential file: one line, surrounding space dropped.
// Errors name the file, never its content.
func readKey(what, path string) (string, error) {
	data, err := readLimited(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	k := strings.TrimSpace(string(data))
	if k == "" || strings.ContainsAny(k, "\n\r") {
		return "", fmt.Errorf("%s %s: want one non-empty line", what, path)
	}
	return k, nil
}

// S3 returns the S3 backend's settings with the credentials read from
// their files.
func (c Config) S3() (s3store.Config, error) {
	if c.Kind != KindS3 {
		return s3store.Config{}, fmt.Errorf("%w: kind is %q, not s3", ErrInvalid, c.Kind)
	}
	ak, err := readKey("access_key_file", c.AccessKeyFile)
	if err != nil {
		return s3store.Config{}, err
	}
	sk, err := readKey("secret_key_file", c.SecretKeyFile)
	if err != nil {
		return s3store.Config{}, err
	}
	return s3store.Config{Endpoint: c.Endpoint, Region: c.Region, Bucket: c.Bucket, Prefix: c.Prefix, AccessKey: ak, SecretKey: sk}, nil
}

// Open opens the object store the configuration names: nil for kind dir
// (callers keep their directories), an s3store.Store for kind s3.
func (c Config) Open(ctx context.Context) (object.Store, error) {
	if c.Kind == KindDir || c.Kind == "" {
		return nil, nil
	}
	cfg, err := c.S3()
	if err != nil {
		return nil, err
	}
	st, err := s3store.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return st, nil
}
