// Package regclient is a minimal OCI distribution client: the
// content.ContentStore methods over HTTP (monolithic blob upload with
// POST then PUT, HEAD, manifest PUT and GET, tag list), so mxosctl can push
// images to a remote mxos-server. The API token goes as the password of
// HTTP basic auth, what the server's registry accepts for pushes.
//
// It is hand-written rather than containers/image's docker transport
// because that one pushes whole images by copying from another transport,
// and building and signing here needs blob- and manifest-level writes.
//
// # Why not go-containerregistry
//
// go-containerregistry (v0.21.6) is in the module graph, and its
// pkg/v1/remote does what this package does (Get, Head, List, Put,
// WriteLayer), so it was weighed and not taken, for now:
//
//   - The contract is content.ContentStore, checked by the shared suite
//     internal/oci/content/contenttest against this client, the registry's
//     own store and the test store. remote works on v1.Image, v1.Layer and
//     name.Reference values, so an adapter of about the same size as this
//     client would still be needed: a raw blob of known digest and size
//     wrapped as a v1.Layer, its transport.Error statuses mapped to
//     content.ErrNotFound, ErrInvalid, ErrUnauthorized and ErrDenied as
//     Error.Is does here.
//   - Limits: this client reads at most 4 MiB of a manifest (what the
//     distribution spec asks registries to accept) and 64 KiB of an error
//     body; remote reads manifests up to 100 MiB.
//   - Uploads: this client sends a blob in one POST and PUT with its
//     digest and length, which the server checks before anything is
//     visible; remote streams with POST, PATCH and PUT.
//   - mxosctl links only go-containerregistry's name and v1 types today
//     (through sigstore); remote would add its transport (token
//     exchange, retries) to the release tool. The device never links
//     either: it pulls with containers/image.
//
// Revisit if this client grows past blob and manifest transfer (mounts,
// chunked resumable uploads, token auth against other registries).
package regclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/mxos-linux/mxos-update/internal/oci/content"
)

// maxManifest bounds a manifest read; the spec asks registries to accept
// at least 4 MB.
const maxManifest = 4 << 20

// maxErrorBody bounds an error body read.
const maxErrorBody = 64 << 10

// accept lists the manifest types GetManifest asks for.
var accept = strings.Join([]string{v1.MediaTypeImageManifest, v1.MediaTypeImageIndex,
	"application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.distribution.manifest.list.v2+json"}, ", ")

// Client talks to one registry.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

var _ content.ContentStore = (*Client)(nil)

// New returns a client of the registry at server (http://host:port; the
// API lives under /v2/). token may be empty for pulls.
func New(server, token string) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(server, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("registry address %q: want http://host[:port] or https://host[:port]", server)
	}
	return &Client{base: u, token: token, http: &http.Client{Timeout: 30 * time.Minute}}, nil
}

// SetTransport makes the client use rt (e.g. one trusting a private CA).
func (c *Client) SetTransport(rt http.RoundTripper) {
	hc := *c.http
	hc.Transport = rt
	c.http = &hc
}

// Host is host[:port] of the registry, the first part of image names.
func (c *Client) Host() string { return c.base.Host }

// Error is a refusal from the registry.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("registry answered %d", e.Status)
	}
	return fmt.Sprintf("registry: %s: %s (%d)", e.Code, e.Message, e.Status)
}

// Is maps 404 to content.ErrNotFound, 400 and 413 to content.ErrInvalid
// (the request was refused: bad name, digest, size or manifest), 401 to
// content.ErrUnauthorized and 403 to content.ErrDenied, as the
// registry's own store reports them (internal/oci/content/contenttest).
func (e *Error) Is(target error) bool {
	switch target {
	case content.ErrNotFound:
		return e.Status == http.StatusNotFound
	case content.ErrInvalid:
		return e.Status == http.StatusBadRequest || e.Status == http.StatusRequestEntityTooLarge
	case content.ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case content.ErrDenied:
		return e.Status == http.StatusForbidden
	}
	return false
}

func (c *Client) url(repo string, parts ...string) string {
	u := *c.base
	u.Path = strings.TrimRight(u.Path, "/") + "/v2/" + repo + "/" + strings.Join(parts, "/")
	return u.String()
}

func (c *Client) do(ctx context.Context, method, u string, body io.Reader, size int64, hdr map[string]string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if c.token != "" {
		req.SetBasicAuth("mxosctl", c.token)
	}
	req.Header.Set("User-Agent", "mxosctl")
	return c.http.Do(req)
}

// check turns a response with an unexpected status into an *Error and
// closes its body.
func check(resp *http.Response, want ...int) error {
	for _, w := range want {
		if resp.StatusCode == w {
			return nil
		}
	}
	defer resp.Body.Close()
	e := &Error{Status: resp.StatusCode}
	var wire struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if json.Unmarshal(b, &wire) == nil && len(wire.Errors) > 0 {
		e.Code, e.Message = wire.Errors[0].Code, wire.Errors[0].Message
	}
	return e
}

// ErrNoRegistry: the server does not serve the distribution API at /v2/.
var ErrNoRegistry = errors.New("no OCI registry at this address")

// Ping checks that the server speaks the distribution API: GET /v2/
// answers 200, or 401 when it wants credentials.
func (c *Client) Ping(ctx context.Context) error {
	u := *c.base
	u.Path = strings.TrimRight(u.Path, "/") + "/v2/"
	resp, err := c.do(ctx, http.MethodGet, u.String(), nil, 0, nil)
	if err != nil {
		return fmt.Errorf("registry %s: %w", c.base.Host, err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
		return nil
	}
	return fmt.Errorf("%s answered %d at /v2/: %w", c.base.Host, resp.StatusCode, ErrNoRegistry)
}

// PutBlob uploads a blob unless the registry has it: POST an upload
// session, then PUT the whole blob to it with its digest.
func (c *Client) PutBlob(ctx context.Context, repo string, d digest.Digest, size int64, r io.Reader) error {
	if has, err := c.HasBlob(ctx, repo, d); err != nil || has {
		return err
	}
	resp, err := c.do(ctx, http.MethodPost, c.url(repo, "blobs", "uploads")+"/", nil, 0, nil)
	if err != nil {
		return fmt.Errorf("starting upload of %s: %w", d, err)
	}
	if err := check(resp, http.StatusAccepted); err != nil {
		return fmt.Errorf("starting upload of %s: %w", d, err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("starting upload of %s: no upload location: %w", d, err)
	}
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	sr := &sizedReader{r: r, left: size}
	resp, err = c.do(ctx, http.MethodPut, loc.String(), sr, size, map[string]string{"Content-Type": "application/octet-stream"})
	if sr.wrong {
		if err == nil {
			resp.Body.Close()
		}
		return fmt.Errorf("uploading %s: the content is not the %d bytes declared: %w", d, size, content.ErrInvalid)
	}
	if err != nil {
		return fmt.Errorf("uploading %s: %w", d, err)
	}
	if err := check(resp, http.StatusCreated); err != nil {
		return fmt.Errorf("uploading %s: %w", d, err)
	}
	resp.Body.Close()
	return nil
}

// sizedReader reads exactly left bytes of r and notes content shorter or
// longer than that, which net/http reports only as a transport error.
type sizedReader struct {
	r     io.Reader
	left  int64
	wrong bool
}

var errSize = errors.New("blob size differs from the declared size")

func (s *sizedReader) Read(p []byte) (int, error) {
	if s.left <= 0 {
		var one [1]byte
		if n, _ := io.ReadFull(s.r, one[:]); n > 0 {
			s.wrong = true
			return 0, errSize
		}
		return 0, io.EOF
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.r.Read(p)
	s.left -= int64(n)
	if err == io.EOF && s.left > 0 {
		s.wrong = true
		return n, errSize
	}
	if err == io.EOF {
		err = nil // the next Read checks for more
	}
	return n, err
}

// HasBlob asks with HEAD.
func (c *Client) HasBlob(ctx context.Context, repo string, d digest.Digest) (bool, error) {
	resp, err := c.do(ctx, http.MethodHead, c.url(repo, "blobs", d.String()), nil, 0, nil)
	if err != nil {
		return false, fmt.Errorf("checking blob %s: %w", d, err)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("checking blob %s: %w", d, &Error{Status: resp.StatusCode})
}

// GetBlob opens a blob. The caller checks its digest (the server is not
// trusted to return what was asked for).
func (c *Client) GetBlob(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, error) {
	resp, err := c.do(ctx, http.MethodGet, c.url(repo, "blobs", d.String()), nil, 0, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching blob %s: %w", d, err)
	}
	if err := check(resp, http.StatusOK); err != nil {
		return nil, fmt.Errorf("fetching blob %s: %w", d, err)
	}
	return resp.Body, nil
}

// PutManifest stores body under tag, or by digest when tag is "".
func (c *Client) PutManifest(ctx context.Context, repo, tag, mediaType string, body []byte) (digest.Digest, error) {
	d := digest.FromBytes(body)
	ref := tag
	if ref == "" {
		ref = d.String()
	}
	resp, err := c.do(ctx, http.MethodPut, c.url(repo, "manifests", ref), bytes.NewReader(body), int64(len(body)),
		map[string]string{"Content-Type": mediaType})
	if err != nil {
		return "", fmt.Errorf("storing manifest %s:%s: %w", repo, ref, err)
	}
	if err := check(resp, http.StatusCreated); err != nil {
		return "", fmt.Errorf("storing manifest %s:%s: %w", repo, ref, err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != d.String() {
		return "", fmt.Errorf("storing manifest %s:%s: the registry named it %s, not %s", repo, ref, got, d)
	}
	return d, nil
}

// GetManifest fetches a manifest by tag or digest. The digest returned is
// computed from the body; a digest reference must match it.
func (c *Client) GetManifest(ctx context.Context, repo, reference string) (string, []byte, digest.Digest, error) {
	resp, err := c.do(ctx, http.MethodGet, c.url(repo, "manifests", reference), nil, 0, map[string]string{"Accept": accept})
	if err != nil {
		return "", nil, "", fmt.Errorf("fetching manifest %s:%s: %w", repo, reference, err)
	}
	if err := check(resp, http.StatusOK); err != nil {
		return "", nil, "", fmt.Errorf("fetching manifest %s:%s: %w", repo, reference, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxManifest+1))
	if err != nil {
		return "", nil, "", fmt.Errorf("fetching manifest %s:%s: %w", repo, reference, err)
	}
	if len(body) > maxManifest {
		return "", nil, "", fmt.Errorf("fetching manifest %s:%s: larger than %d bytes", repo, reference, maxManifest)
	}
	d := digest.FromBytes(body)
	if want, err := digest.Parse(reference); err == nil && want != d {
		return "", nil, "", fmt.Errorf("fetching manifest %s@%s: the registry sent %s", repo, reference, d)
	}
	mt, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	return strings.TrimSpace(mt), body, d, nil
}

// ListTags lists every tag of repo, following pagination.
func (c *Client) ListTags(ctx context.Context, repo string) ([]string, error) {
	var out []string
	next := c.url(repo, "tags", "list")
	for pages := 0; next != "" && pages < 1000; pages++ {
		resp, err := c.do(ctx, http.MethodGet, next, nil, 0, nil)
		if err != nil {
			return nil, fmt.Errorf("listing tags of %s: %w", repo, err)
		}
		if err := check(resp, http.StatusOK); err != nil {
			return nil, fmt.Errorf("listing tags of %s: %w", repo, err)
		}
		var page struct {
			Tags []string `json:"tags"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, maxManifest)).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("listing tags of %s: %w", repo, err)
		}
		out = append(out, page.Tags...)
		next = nextLink(resp)
	}
	return out, nil
}

// nextLink resolves a `Link: <...>; rel="next"` header.
func nextLink(resp *http.Response) string {
	l := resp.Header.Get("Link")
	if l == "" || !strings.Contains(l, `rel="next"`) {
		return ""
	}
	start, end := strings.IndexByte(l, '<'), strings.IndexByte(l, '>')
	if start < 0 || end < start {
		return ""
	}
	ref, err := url.Parse(l[start+1 : end])
	if err != nil {
		return ""
	}
	return resp.Request.URL.ResolveReference(ref).String()
}

// ErrNotFound is content.ErrNotFound, for callers that only import this
// package.
var ErrNotFound = content.ErrNotFound
