package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/mxos-linux/mxos-update/internal/api"
)

// ErrNotFound is returned by RepoObject for a file the repository lacks.
var ErrNotFound = errors.New("not in the repository")

// NewUpload opens an upload session (POST /uploads).
func (c *Client) NewUpload(ctx context.Context) (api.UploadSession, error) {
	var out api.UploadSession
	err := c.do(ctx, request{what: "opening an upload", method: http.MethodPost, path: "/uploads", in: struct{}{}, out: &out})
	return out, err
}

// Missing asks which of objects the server has neither stored nor staged.
func (c *Client) Missing(ctx context.Context, session string, objects []string) ([]string, error) {
	p, err := pathParts("uploads", session, "missing")
	if err != nil {
		return nil, err
	}
	var out api.MissingResponse
	err = c.do(ctx, request{what: "asking for missing objects", method: http.MethodPost, path: p,
		in: api.MissingRequest{Objects: objects}, out: &out})
	return out.Missing, err
}

// PutObject uploads one object's bytes as stored (archive form).
func (c *Client) PutObject(ctx context.Context, session, name string, body io.Reader, size int64) error {
	p, err := pathParts("uploads", session, "objects", name)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+api.Prefix+p, body)
	if err != nil {
		return fmt.Errorf("uploading %s: %w", name, err)
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("User-Agent", c.userAgent)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.scrub(fmt.Errorf("uploading %s: %w", name, err))
	}
	defer resp.Body.Close()
	if err := c.decode(resp, nil); err != nil {
		return c.scrub(fmt.Errorf("uploading %s: %w", name, err))
	}
	return nil
}

// CommitUpload makes a session's objects visible on the server.
func (c *Client) CommitUpload(ctx context.Context, session string) error {
	p, err := pathParts("uploads", session, "commit")
	if err != nil {
		return err
	}
	return c.do(ctx, request{what: "committing the upload", method: http.MethodPost, path: p, in: struct{}{}})
}

// PublishRelease publishes or promotes a stored, signed commit.
func (c *Client) PublishRelease(ctx context.Context, req api.ReleaseRequest) (api.Release, error) {
	var out api.Release
	what := "publishing " + req.Version
	if req.PromotedFrom != "" {
		what = "promoting " + req.Version
	}
	err := c.do(ctx, request{what: what, method: http.MethodPost, path: "/releases", in: req, out: &out})
	return out, err
}

// Releases lists the releases of a channel and architecture, newest first.
func (c *Client) Releases(ctx context.Context, channel, arch string) ([]api.Release, error) {
	var out []api.Release
	q := url.Values{"channel": {channel}, "arch": {arch}}
	err := c.do(ctx, request{what: "listing releases", method: http.MethodGet, path: "/releases", query: q, out: &out})
	return out, err
}

// RepoObject reads a file of the public OSTree repository (/repo/PATH).
func (c *Client) RepoObject(ctx context.Context, path string) ([]byte, error) {
	if strings.Contains(path, "..") || strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("repository path %q is not allowed", path)
	}
	return c.getFile(ctx, "/repo/"+path, path)
}

// Metadata reads a file of the signed channel metadata (/metadata/NAME,
// e.g. "targets.json"). It returns nil and no error when the server has
// no such file, which is how a server without signed channel metadata
// answers. The bytes are not verified here.
func (c *Client) Metadata(ctx context.Context, name string) ([]byte, error) {
	if name == "" || strings.ContainsAny(name, "/\\") || strings.Contains(name, "..") {
		return nil, fmt.Errorf("metadata file name %q is not allowed", name)
	}
	b, err := c.getFile(ctx, "/metadata/"+name, "metadata/"+name)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return b, err
}

// getFile GETs a static file below the server's base URL.
func (c *Client) getFile(ctx context.Context, urlPath, what string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+urlPath, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.scrub(fmt.Errorf("reading %s: %w", what, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("reading %s: %w", what, ErrNotFound)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading %s: server answered %s", what, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	if int64(len(data)) > c.maxBody {
		return nil, fmt.Errorf("reading %s: larger than %d bytes", what, c.maxBody)
	}
	return data, nil
}

// pathParts joins escaped path segments into "/a/b/c".
func pathParts(parts ...string) (string, error) {
	var b strings.Builder
	for _, p := range parts {
		s, err := seg("path part", p)
		if err != nil {
			return "", err
		}
		b.WriteString("/" + s)
	}
	return b.String(), nil
}

// ImageImported records an imported image (mxosctl image import): an
// audit entry, and the image of the release of that version if published.
func (c *Client) ImageImported(ctx context.Context, req api.ImageImportRequest) (api.ImageImport, error) {
	var out api.ImageImport
	what := fmt.Sprintf("recording the image of %s %s on %s", req.Arch, req.Version, req.Channel)
	err := c.do(ctx, request{what: what, method: http.MethodPost, path: "/images", in: req, out: &out})
	return out, err
}
