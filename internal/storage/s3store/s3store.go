// Package s3store is the S3-compatible backend of object.Store: the
// OSTree repository's files and the registry's blobs in a bucket, so that
// several mxos-server replicas (and a CDN) can reach them. It is the only
// package that imports the AWS SDK (aws-sdk-go-v2, service/s3), so the
// device agent never links it.
//
// # How the contract is kept
//
//   - Content-addressed writes (PutVerified) are spooled to a local
//     temporary file while hashing; only when the digest and size match is
//     the object sent, with If-None-Match: * (an existing object is never
//     replaced; losing that race means the same bytes are already there)
//     and, for sha256, x-amz-checksum-sha256, so the server checks the
//     bytes it received against the digest too. Nothing is ever visible
//     under a digest's key before it was verified, and no temporary key
//     is ever written to the bucket.
//   - Mutable files (refs, summary, signatures, metadata) change with
//     If-Match: <ETag> or If-None-Match: *, so of two writers that read
//     the same version only one wins; the other gets
//     object.ErrPrecondition and must read again.
//   - Reads are one GET; a Reader that seeks elsewhere issues a ranged GET
//     with If-Match on the version first read, so a replaced object fails
//     the read instead of mixing two versions.
//   - Touch (garbage collection's grace period) copies the object onto
//     itself with replaced metadata, the only way S3 has to renew
//     Last-Modified.
//   - Delete of a missing key is object.ErrNotFound (a HEAD first), as for
//     the directory store; S3 itself would answer 204.
//
// Credentials come from Config (the server reads them from files named in
// its configuration); they never appear in errors or logs: Config's String
// and LogValue print the endpoint and bucket only.
package s3store

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/opencontainers/go-digest"

	"github.com/mxos-linux/mxos-update/internal/storage"
	"github.com/mxos-linux/mxos-update/internal/storage/object"
)

// Config says which bucket to use and how to reach it.
type Config struct {
	// Endpoint is the URL of the S3 API (http://127.0.0.1:7070 for a
	// local versitygw or MinIO). Empty means AWS itself.
	Endpoint string
	// Region is the bucket's region; default us-east-1.
	Region string
	// Bucket must exist; New checks that it is reachable.
	Bucket string
	// Prefix is put before every key ("mxos/" to share a bucket).
	Prefix string
	// AccessKey and SecretKey are the credentials (never logged).
	AccessKey string
	SecretKey string
	// TempDir is where PutVerified spools while hashing; default
	// os.TempDir().
	TempDir string
	// HTTPClient is used for every request; default a client with
	// sensible timeouts.
	HTTPClient *http.Client
}

// String prints where the bucket is, never the credentials.
func (c Config) String() string {
	return fmt.Sprintf("s3 bucket %q at %s (prefix %q)", c.Bucket, c.endpointName(), c.Prefix)
}

// LogValue keeps the credentials out of structured logs.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("endpoint", c.endpointName()),
		slog.String("bucket", c.Bucket), slog.String("prefix", c.Prefix))
}

func (c Config) endpointName() string {
	if c.Endpoint == "" {
		return "AWS"
	}
	return c.Endpoint
}

// Store is an object.Store on an S3-compatible bucket.
type Store struct {
	cfg     Config
	client  *s3.Client
	presign *s3.PresignClient
}

var _ object.Store = (*Store)(nil)

// New connects to the bucket and checks that it is there.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3 storage: no bucket given")
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, fmt.Errorf("%s: no access key or secret key given", cfg)
	}
	if cfg.Prefix != "" && (strings.HasPrefix(cfg.Prefix, "/") || !strings.HasSuffix(cfg.Prefix, "/") || object.CheckKey(strings.TrimSuffix(cfg.Prefix, "/")) != nil) {
		return nil, fmt.Errorf("%s: the prefix must be a key ending in /", cfg)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		tr.ResponseHeaderTimeout = 60 * time.Second
		cfg.HTTPClient = &http.Client{Transport: tr}
	}
	opts := s3.Options{
		Region:       cfg.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, ""),
		HTTPClient:   cfg.HTTPClient,
		UsePathStyle: cfg.Endpoint != "",
		// Checksums only where we ask for them (PutVerified's sha256):
		// S3-compatible servers differ in the trailing checksums the SDK
		// would add by default.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
	if cfg.Endpoint != "" {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%s: the endpoint must be an http or https URL", cfg)
		}
		opts.BaseEndpoint = aws.String(cfg.Endpoint)
	}
	client := s3.New(opts)
	s := &Store{cfg: cfg, client: client, presign: s3.NewPresignClient(client)}
	if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(cfg.Bucket)}); err != nil {
		return nil, fmt.Errorf("%s: %w", cfg, plainErr(err))
	}
	return s, nil
}

// Config is the store's configuration.
func (s *Store) Config() Config { return s.cfg }

func (s *Store) full(key string) *string { return aws.String(s.cfg.Prefix + key) }

// status is the HTTP status of an S3 error, or 0.
func status(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func code(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// plainErr shortens an SDK error to its code and message.
func plainErr(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return fmt.Errorf("%s: %s (HTTP %d)", ae.ErrorCode(), ae.ErrorMessage(), status(err))
	}
	return err
}

// mapErr turns S3's answers into object's errors.
func mapErr(op, key string, err error) error {
	switch {
	case err == nil:
		return nil
	case status(err) == http.StatusNotFound || code(err) == "NoSuchKey":
		return fmt.Errorf("%s %s: %w", op, key, object.ErrNotFound)
	case status(err) == http.StatusPreconditionFailed || status(err) == http.StatusConflict ||
		code(err) == "PreconditionFailed" || code(err) == "ConditionalRequestConflict":
		return fmt.Errorf("%s %s: %w", op, key, object.ErrPrecondition)
	}
	return fmt.Errorf("%s %s: %w", op, key, plainErr(err))
}

// Stat implements object.Store.
func (s *Store) Stat(ctx context.Context, key string) (object.Info, error) {
	if err := object.CheckKey(key); err != nil {
		return object.Info{}, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.cfg.Bucket, Key: s.full(key)})
	if err != nil {
		return object.Info{}, mapErr("stat", key, err)
	}
	return object.Info{Key: key, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified), ETag: aws.ToString(out.ETag)}, nil
}

// Get implements object.Store.
func (s *Store) Get(ctx context.Context, key string) (object.Reader, error) {
	if err := object.CheckKey(key); err != nil {
		return nil, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.cfg.Bucket, Key: s.full(key)})
	if err != nil {
		return nil, mapErr("get", key, err)
	}
	info := object.Info{Key: key, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified), ETag: aws.ToString(out.ETag)}
	return &reader{s: s, ctx: ctx, info: info, body: out.Body}, nil
}

// reader reads one version of an object, reopening with a ranged GET
// after a Seek that moved.
type reader struct {
	s       *Store
	ctx     context.Context
	info    object.Info
	body    io.ReadCloser // positioned at bodyOff, or nil
	bodyOff int64
	off     int64
}

func (r *reader) Info() object.Info { return r.info }

func (r *reader) Read(p []byte) (int, error) {
	if r.off >= r.info.Size {
		return 0, io.EOF
	}
	if r.body != nil && r.bodyOff != r.off {
		r.body.Close()
		r.body = nil
	}
	if r.body == nil {
		out, err := r.s.client.GetObject(r.ctx, &s3.GetObjectInput{
			Bucket:  &r.s.cfg.Bucket,
			Key:     r.s.full(r.info.Key),
			Range:   aws.String(fmt.Sprintf("bytes=%d-", r.off)),
			IfMatch: aws.String(r.info.ETag),
		})
		if err != nil {
			return 0, mapErr("read", r.info.Key, err)
		}
		r.body, r.bodyOff = out.Body, r.off
	}
	n, err := r.body.Read(p)
	r.off += int64(n)
	r.bodyOff += int64(n)
	if err == io.EOF && r.off < r.info.Size {
		err = fmt.Errorf("read %s: %w", r.info.Key, io.ErrUnexpectedEOF)
	}
	return n, err
}

func (r *reader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.off + offset
	case io.SeekEnd:
		abs = r.info.Size + offset
	default:
		return 0, errors.New("seek: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("seek: negative position")
	}
	r.off = abs // the body is reopened at the next Read if needed
	return abs, nil
}

func (r *reader) Close() error {
	if r.body != nil {
		err := r.body.Close()
		r.body = nil
		return err
	}
	return nil
}

// spool makes r a seekable file of known length, for a PutObject that
// signs its payload. It returns the file (removed on close) and length.
func (s *Store) spool(ctx context.Context, r io.Reader, size int64, d *digest.Digest) (*os.File, int64, error) {
	f, err := os.CreateTemp(s.cfg.TempDir, "mxos-s3-put-")
	if err != nil {
		return nil, 0, err
	}
	os.Remove(f.Name()) // anonymous: nothing to clean after a crash
	src := r
	if size >= 0 {
		src = io.LimitReader(r, size+1)
	}
	var h interface {
		io.Writer
		Sum([]byte) []byte
	}
	w := io.Writer(f)
	if d != nil {
		hh := storage.NewHash(*d)
		h = hh
		w = io.MultiWriter(f, hh)
	}
	n, err := io.Copy(w, ctxReader{ctx, src})
	if err == nil && size >= 0 && n != size {
		err = fmt.Errorf("%w: got %d bytes, want %d", storage.ErrSizeMismatch, n, size)
	}
	if err == nil && d != nil {
		if got := digest.NewDigestFromEncoded(d.Algorithm(), hex.EncodeToString(h.Sum(nil))); got != *d {
			err = fmt.Errorf("%w (got %s)", storage.ErrDigestMismatch, got)
		}
	}
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, n, nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Put implements object.Store.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, c object.Condition) (object.Info, error) {
	if err := object.CheckKey(key); err != nil {
		return object.Info{}, err
	}
	var body io.ReadSeeker
	n := size
	switch br := r.(type) {
	case *bytes.Reader:
		if size >= 0 && int64(br.Len()) != size {
			return object.Info{}, fmt.Errorf("put %s: %w: got %d bytes, want %d", key, storage.ErrSizeMismatch, br.Len(), size)
		}
		body, n = br, int64(br.Len())
	default:
		f, m, err := s.spool(ctx, r, size, nil)
		if err != nil {
			return object.Info{}, fmt.Errorf("put %s: %w", key, err)
		}
		defer f.Close()
		body, n = f, m
	}
	in := &s3.PutObjectInput{Bucket: &s.cfg.Bucket, Key: s.full(key), Body: body, ContentLength: aws.Int64(n)}
	if c.IfNoneMatch {
		in.IfNoneMatch = aws.String("*")
	}
	if c.IfMatch != "" {
		in.IfMatch = aws.String(c.IfMatch)
	}
	out, err := s.client.PutObject(ctx, in)
	if err != nil {
		err = mapErr("put", key, err)
		if c.IfMatch != "" && errors.Is(err, object.ErrNotFound) {
			err = fmt.Errorf("put %s: %w (it is gone)", key, object.ErrPrecondition)
		}
		return object.Info{}, err
	}
	return s.afterPut(ctx, key, n, out.ETag)
}

// afterPut describes what was just written: a HEAD for the time, which
// PutObject does not return.
func (s *Store) afterPut(ctx context.Context, key string, n int64, etag *string) (object.Info, error) {
	info, err := s.Stat(ctx, key)
	if err != nil {
		// Written, but replaced or removed since: describe our write.
		return object.Info{Key: key, Size: n, ModTime: time.Now(), ETag: aws.ToString(etag)}, nil
	}
	return info, nil
}

// PutVerified implements object.Store.
func (s *Store) PutVerified(ctx context.Context, key string, d digest.Digest, size int64, r io.Reader) (object.Info, error) {
	if err := object.CheckKey(key); err != nil {
		return object.Info{}, err
	}
	if err := storage.Validate(d); err != nil {
		return object.Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	f, n, err := s.spool(ctx, r, size, &d)
	if err != nil {
		return object.Info{}, fmt.Errorf("put %s: %w", key, err)
	}
	defer f.Close()
	if info, err := s.Stat(ctx, key); err == nil {
		return info, nil // content-addressed: already there
	}
	in := &s3.PutObjectInput{
		Bucket: &s.cfg.Bucket, Key: s.full(key), Body: f, ContentLength: aws.Int64(n),
		IfNoneMatch: aws.String("*"),
	}
	if d.Algorithm() == digest.SHA256 {
		raw, _ := hex.DecodeString(d.Encoded())
		in.ChecksumSHA256 = aws.String(base64.StdEncoding.EncodeToString(raw))
	}
	out, err := s.client.PutObject(ctx, in)
	if err != nil {
		err = mapErr("put", key, err)
		if errors.Is(err, object.ErrPrecondition) {
			// Another writer stored the same content first.
			return s.Stat(ctx, key)
		}
		return object.Info{}, err
	}
	return s.afterPut(ctx, key, n, out.ETag)
}

// Touch implements object.Store: a copy onto itself with new metadata,
// which renews Last-Modified on AWS. Servers that only rewrite the
// metadata (versitygw's posix backend) keep the old time; then the object
// is read and written again under If-Match, which costs a transfer but
// is rare (a blob pushed again).
func (s *Store) Touch(ctx context.Context, key string) error {
	before, err := s.Stat(ctx, key)
	if err != nil {
		return fmt.Errorf("touch: %w", err)
	}
	src := s.cfg.Bucket + "/" + url.PathEscape(s.cfg.Prefix+key)
	src = strings.ReplaceAll(src, "%2F", "/")
	_, err = s.client.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket: &s.cfg.Bucket, Key: s.full(key), CopySource: aws.String(src),
		MetadataDirective: types.MetadataDirectiveReplace,
		Metadata:          map[string]string{"mxos-touched": time.Now().UTC().Format(time.RFC3339Nano)},
	})
	if err != nil {
		return mapErr("touch", key, err)
	}
	after, err := s.Stat(ctx, key)
	if err != nil {
		return fmt.Errorf("touch: %w", err)
	}
	if after.ModTime.After(before.ModTime) {
		return nil
	}
	r, err := s.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("touch: %w", err)
	}
	defer r.Close()
	f, n, err := s.spool(ctx, r, r.Info().Size, nil)
	if err != nil {
		return fmt.Errorf("touch %s: %w", key, err)
	}
	defer f.Close()
	_, err = s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.cfg.Bucket, Key: s.full(key), Body: f, ContentLength: aws.Int64(n),
		IfMatch: aws.String(r.Info().ETag),
	})
	if err != nil && errors.Is(mapErr("touch", key, err), object.ErrPrecondition) {
		return nil // replaced meanwhile: that write renewed the time
	}
	return mapErr("touch", key, err)
}

// Delete implements object.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if _, err := s.Stat(ctx, key); err != nil {
		return err
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.cfg.Bucket, Key: s.full(key)})
	return mapErr("delete", key, err)
}

// List implements object.Store.
func (s *Store) List(ctx context.Context, prefix string, fn func(object.Info) error) error {
	if err := object.CheckPrefix(prefix); err != nil {
		return err
	}
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.cfg.Bucket, Prefix: aws.String(s.cfg.Prefix + prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list %q: %w", prefix, plainErr(err))
		}
		for _, o := range page.Contents {
			key := strings.TrimPrefix(aws.ToString(o.Key), s.cfg.Prefix)
			if object.CheckKey(key) != nil {
				continue
			}
			if err := fn(object.Info{Key: key, Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified), ETag: aws.ToString(o.ETag)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// PresignGet returns a URL that GETs key without credentials until ttl
// passes: the redirect alternative to streaming through the server.
func (s *Store) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if err := object.CheckKey(key); err != nil {
		return "", err
	}
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &s.cfg.Bucket, Key: s.full(key)},
		s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("presign %s: %w", key, plainErr(err))
	}
	return req.URL, nil
}

// CreateBucket creates cfg.Bucket (for tests and first-time setup; the
// server itself never creates buckets). An existing bucket owned by the
// same account is not an error.
func CreateBucket(ctx context.Context, cfg Config) error {
	s := &Store{cfg: cfg}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	opts := s3.Options{
		Region:       cfg.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, ""),
		UsePathStyle: cfg.Endpoint != "",
	}
	if cfg.Endpoint != "" {
		opts.BaseEndpoint = aws.String(cfg.Endpoint)
	}
	if cfg.HTTPClient != nil {
		opts.HTTPClient = cfg.HTTPClient
	}
	s.client = s3.New(opts)
	_, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(cfg.Bucket)})
	if err != nil && code(err) != "BucketAlreadyOwnedByYou" {
		return fmt.Errorf("create %s: %w", cfg, plainErr(err))
	}
	return nil
}
