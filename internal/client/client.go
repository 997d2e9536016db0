// Package client is a typed HTTP client for the MxOS Update API: the
// device routes (check, report) and the admin routes listed in
// internal/api (admin.go). mxosctl uses it, and so does the device
// updater, so it imports nothing but internal/api and the standard library.
//
// Every request carries "Authorization: Bearer <token>" when a token is
// set. The token never appears in errors: the client builds no error from
// headers, and it replaces the token in any text the server sends back.
//
// Errors:
//   - an API error response ({"error": {"code", "message"}}) is returned as
//     an *api.Error, wrapped with what the client was doing, so
//     errors.Is(err, &api.Error{Code: api.CodeForbidden}) and errors.As
//     both work;
//   - any other failed response (a proxy's HTML page, a bare 502) is a
//     *StatusError with the status and the start of the body;
//   - response bodies are read up to a limit (16 MiB by default) and a
//     larger one is an error, never a partial answer.
//
// Only GET requests are retried, and only on connection errors and 503
// (Service Unavailable), with bounded exponential backoff: they change
// nothing on the server, so repeating them is always safe. Writes are sent
// once; the caller decides whether to repeat them.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/mxos-linux/mxos-update/internal/api"
)

// Defaults; each can be changed with an Option.
const (
	DefaultTimeout          = 30 * time.Second
	DefaultMaxResponseBytes = 16 << 20
	DefaultRetries          = 3
	DefaultBackoff          = 250 * time.Millisecond
	// maxBackoff caps one wait between retries, including a server's
	// Retry-After, so a GET never hangs for minutes on a busy server.
	maxBackoff = 5 * time.Second
	// snippetLen is how much of a non-API error body goes into an error.
	snippetLen = 200
	userAgent  = "mxos-update-client/1"
)

// Client talks to one MxOS Update server. It is safe for concurrent use.
type Client struct {
	base      string // scheme://host[/path], no trailing slash
	token     string
	hc        *http.Client
	maxBody   int64
	retries   int
	backoff   time.Duration
	userAgent string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the http.Client used for requests (its Timeout and
// Transport apply). The default has a 30 s timeout.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.hc = hc
		}
	}
}

// WithTimeout sets the whole-request timeout (default 30 s). After
// WithHTTPClient it applies to a copy of that client, never changing the
// caller's.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			hc := *c.hc
			hc.Timeout = d
			c.hc = &hc
		}
	}
}

// WithMaxResponseBytes bounds response bodies (default 16 MiB).
func WithMaxResponseBytes(n int64) Option {
	return func(c *Client) {
		if n > 0 {
			c.maxBody = n
		}
	}
}

// WithRetries sets how many times a GET is repeated after a connection
// error or a 503 (0 disables retries) and the first wait, which doubles on
// each retry, with jitter, up to 5 s.
func WithRetries(n int, backoff time.Duration) Option {
	return func(c *Client) {
		c.retries = max(n, 0)
		if backoff > 0 {
			c.backoff = backoff
		}
	}
}

// WithUserAgent sets the User-Agent header, e.g. "mxosctl/1.2".
func WithUserAgent(ua string) Option {
	return func(c *Client) {
		if ua != "" {
			c.userAgent = ua
		}
	}
}

// New returns a client for the server at baseURL (e.g.
// "https://updates.example.mx" or "http://127.0.0.1:8080/mxos"); requests
// go to baseURL + "/api/v1/…". An empty token sends no Authorization header.
func New(baseURL, token string, opts ...Option) (*Client, error) {
	baseURL = strings.TrimSpace(baseURL)
	if !strings.Contains(baseURL, "://") {
		return nil, fmt.Errorf("server address %q: must start with http:// or https://", baseURL)
	}
	u, err := url.Parse(baseURL)
	switch {
	case err != nil:
		return nil, fmt.Errorf("server address %q: %w", baseURL, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("server address %q: must start with http:// or https://", baseURL)
	case u.Host == "":
		return nil, fmt.Errorf("server address %q: no host", baseURL)
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("server address %q: must not have a query or fragment", baseURL)
	case u.User != nil:
		// Credentials in the URL would end up in error messages.
		return nil, errors.New("server address must not contain a user name or password; use the token")
	}
	if err := checkToken(token); err != nil {
		return nil, err
	}
	c := &Client{
		base:      strings.TrimRight(u.String(), "/"),
		token:     token,
		hc:        &http.Client{Timeout: DefaultTimeout, CheckRedirect: noRedirects},
		maxBody:   DefaultMaxResponseBytes,
		retries:   DefaultRetries,
		backoff:   DefaultBackoff,
		userAgent: userAgent,
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// noRedirects makes a redirect an answer rather than a new request: the
// API never redirects, and following one would turn a PUT or DELETE into
// a GET on some other path. The error names the new address instead.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// checkToken rejects tokens that cannot go into a header. The message
// never repeats the token.
func checkToken(token string) error {
	for _, r := range token {
		if r <= ' ' || r >= 0x7f {
			return errors.New("token contains spaces or control or non-ASCII characters; check MXOS_TOKEN or --token")
		}
	}
	return nil
}

// StatusError is a failed response that is not an API error: typically a
// proxy's or load balancer's page.
type StatusError struct {
	StatusCode int
	Status     string // e.g. "502 Bad Gateway"
	Body       string // start of the body, printable characters only
	Location   string // where a redirect points
}

func (e *StatusError) Error() string {
	msg := "server answered " + e.Status
	if e.Location != "" {
		return msg + " to " + e.Location + ": check the server address"
	}
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// request is one API call.
type request struct {
	what   string // for errors: "listing channels"
	method string
	path   string // escaped, after api.Prefix
	query  url.Values
	in     any // JSON request body, or nil
	out    any // decodes a JSON answer; nil expects no body (204)
}

// do runs r, retrying a GET when that is safe, and decodes the answer.
func (c *Client) do(ctx context.Context, r request) error {
	if err := c.roundTrip(ctx, r); err != nil {
		return c.scrub(fmt.Errorf("%s: %w", r.what, err))
	}
	return nil
}

func (c *Client) roundTrip(ctx context.Context, r request) error {
	var body []byte
	if r.in != nil {
		b, err := json.Marshal(r.in)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		body = b
	}
	target := c.base + api.Prefix + r.path
	if len(r.query) > 0 {
		target += "?" + r.query.Encode()
	}
	attempts := 1
	if r.method == http.MethodGet {
		attempts += c.retries
	}
	for i := 0; ; i++ {
		req, err := c.newRequest(ctx, r.method, target, body)
		if err != nil {
			return err
		}
		resp, err := c.hc.Do(req)
		last := i+1 >= attempts
		if err != nil {
			if ctx.Err() != nil || last {
				return err
			}
			if werr := c.wait(ctx, i, 0); werr != nil {
				return err
			}
			continue
		}
		if resp.StatusCode == http.StatusServiceUnavailable && !last {
			retryAfter := parseRetryAfter(resp.Header.Get("Retry-After"))
			drain(resp)
			if werr := c.wait(ctx, i, retryAfter); werr != nil {
				return fmt.Errorf("server unavailable (503): %w", werr)
			}
			continue
		}
		defer resp.Body.Close()
		return c.decode(resp, r.out)
	}
}

func (c *Client) newRequest(ctx context.Context, method, target string, body []byte) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// wait sleeps before retry number attempt+1: the backoff doubled per
// attempt with up to 50% jitter (so a fleet does not retry in step), or
// the server's Retry-After if longer, capped at maxBackoff.
func (c *Client) wait(ctx context.Context, attempt int, retryAfter time.Duration) error {
	d := c.backoff << min(attempt, 10)
	d += time.Duration(rand.Int64N(int64(d)/2 + 1))
	d = min(max(d, retryAfter), maxBackoff)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(min(s, 3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// drain lets the connection be reused; it reads a bounded amount only.
func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// decode reads a response: a 2xx answer into out, anything else into an
// error.
func (c *Client) decode(resp *http.Response, out any) error {
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return fmt.Errorf("reading response (%s): %w", resp.Status, err)
	}
	if int64(len(data)) > c.maxBody {
		return fmt.Errorf("response (%s) is larger than %s; refusing it", resp.Status, byteSize(c.maxBody))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return c.errorFrom(resp, data)
	}
	if out == nil {
		return nil
	}
	if resp.StatusCode == http.StatusNoContent || len(bytes.TrimSpace(data)) == 0 {
		return fmt.Errorf("server answered %s with no body, expected JSON", resp.Status)
	}
	if err := json.Unmarshal(data, out); err != nil {
		if ct := mediaType(resp); ct != "application/json" {
			// A captive portal or proxy page answering 200 is common on
			// school networks: say so rather than show a JSON syntax error.
			return fmt.Errorf("server answered %s with %s, not JSON: is the server address right?", resp.Status, ct)
		}
		return fmt.Errorf("decoding response: %w", err)
	}
	return nil
}

// errorFrom turns a failed response into an *api.Error when it carries
// one, and a *StatusError otherwise.
func (c *Client) errorFrom(resp *http.Response, data []byte) error {
	var eb api.ErrorBody
	if json.Unmarshal(data, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
		return &api.Error{Code: eb.Error.Code, Message: c.redact(eb.Error.Message)}
	}
	se := &StatusError{StatusCode: resp.StatusCode, Status: resp.Status}
	if se.Status == "" {
		se.Status = strconv.Itoa(resp.StatusCode)
	}
	if ct := mediaType(resp); ct != "text/html" {
		se.Body = c.redact(snippet(data))
	}
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		se.Location = c.redact(snippet([]byte(resp.Header.Get("Location"))))
	}
	return se
}

func mediaType(resp *http.Response) string {
	ct, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || ct == "" {
		return "no content type"
	}
	return ct
}

// snippet is the start of a body on one line, printable characters only,
// so a hostile or binary body cannot mess up a terminal.
func snippet(data []byte) string {
	var b strings.Builder
	for _, r := range string(data) {
		if b.Len() >= snippetLen {
			b.WriteString("…")
			break
		}
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			b.WriteByte(' ')
		case unicode.IsPrint(r):
			b.WriteRune(r)
		}
	}
	return strings.TrimSpace(b.String())
}

func (c *Client) redact(s string) string {
	if c.token == "" {
		return s
	}
	return strings.ReplaceAll(s, c.token, "[token]")
}

// scrub makes sure no error leaves the client with the token in its text,
// whatever produced it.
func (c *Client) scrub(err error) error {
	if c.token == "" || !strings.Contains(err.Error(), c.token) {
		return err
	}
	return &redacted{err: err, msg: c.redact(err.Error())}
}

type redacted struct {
	err error
	msg string
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }

func byteSize(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// seg escapes one path segment. An empty, "." or ".." segment would
// name another route once the path is cleaned, so it is refused.
func seg(what, s string) (string, error) {
	switch s {
	case "":
		return "", fmt.Errorf("%s is empty", what)
	case ".", "..":
		return "", fmt.Errorf("%s %q is not a valid name", what, s)
	}
	return url.PathEscape(s), nil
}
