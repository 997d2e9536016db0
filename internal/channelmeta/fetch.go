package channelmeta

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"

	"github.com/mxos-linux/mxos-update/internal/httplimit"
)

// Both fetchers implement go-tuf's fetcher.Fetcher. go-tuf passes the
// largest size it will accept for each file (the length pinned by the
// timestamp or snapshot, or a per-role maximum); we additionally cap every
// read at MaxFileSize. Errors follow go-tuf's conventions where the
// updater interprets them: a missing file is *metadata.ErrDownloadHTTP with
// status 404 (for N.root.json it means "no further rotation"), an oversize
// file is *metadata.ErrDownloadLengthMismatch.

func clampLimit(maxLength int64) int64 {
	if maxLength <= 0 || maxLength > MaxFileSize {
		return MaxFileSize
	}
	return maxLength
}

func tooLarge(url string, n, max int64) error {
	return &metadata.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s: %d bytes or more, at most %d allowed", url, n, max)}
}

// httpFetcher fetches over HTTP(S) with the Load call's context, the
// client's timeout and hard size limits; it never retries (the updater's
// state machine retries whole checks with its own backoff, and tries the
// next mirror's metadata first). Like the repository puller, every request
// has a response-header timeout and a throughput floor (package
// httplimit): a mirror that accepts the connection and says nothing is
// given up on after 30 s, and the body is read into a buffer that never
// grows past the file's limit.
type httpFetcher struct {
	ctx       context.Context
	client    *http.Client
	userAgent string
	// headerTimeout, minRate and grace are httplimit's limits (its
	// defaults when zero); tests shorten them.
	headerTimeout time.Duration
	minRate       int64
	grace         time.Duration
}

func (f *httpFetcher) DownloadFile(url string, maxLength int64, _ time.Duration) ([]byte, error) {
	max := clampLimit(maxLength)
	ctx, cancel := context.WithCancelCause(f.ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, &fetchError{url: url, err: err}
	}
	if f.userAgent != "" {
		req.Header.Set("User-Agent", f.userAgent)
	}
	resp, err := httplimit.Do(f.client, req, f.headerTimeout, cancel)
	if err != nil {
		return nil, &fetchError{url: url, err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: resp.StatusCode, URL: url}
	}
	if resp.ContentLength > max {
		return nil, tooLarge(url, resp.ContentLength, max)
	}
	w := httplimit.NewWatcher(f.minRate, f.grace)
	defer w.Close()
	body, done := w.Watch(resp.Body, cancel)
	defer done()
	// Content-Length may be absent or lie: the limit is enforced on the
	// bytes actually read.
	data, err := httplimit.ReadAll(body, max, resp.ContentLength)
	if errors.Is(err, httplimit.ErrTooLarge) {
		return nil, tooLarge(url, max+1, max)
	}
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			err = cause
		}
		return nil, &fetchError{url: url, err: err}
	}
	return data, nil
}

// dirBase is the pseudo URL the updater is given for a directory mirror;
// dirFetcher maps it back to file names.
const dirBase = "mirror:/"

// metaNameRE is every name the updater asks for: root.json, timestamp.json
// and N.<role>.json. Anything else (a "/" in particular) is refused.
var metaNameRE = regexp.MustCompile(`^([1-9][0-9]{0,18}\.)?[a-z][a-z0-9_-]{0,63}\.json$`)

// dirFetcher reads a metadata directory copied to a USB disk or a LAN
// share. Files are opened with os.OpenInRoot, so a symlink on the medium
// cannot make it read outside the directory.
type dirFetcher struct {
	dir string
}

func (f *dirFetcher) DownloadFile(url string, maxLength int64, _ time.Duration) ([]byte, error) {
	max := clampLimit(maxLength)
	name, ok := strings.CutPrefix(url, dirBase)
	if !ok || !metaNameRE.MatchString(name) {
		return nil, &fetchError{url: url, err: errors.New("not a metadata file name")}
	}
	file, err := os.OpenInRoot(f.dir, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &metadata.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: url}
	}
	if err != nil {
		return nil, &fetchError{url: url, err: err}
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return nil, &fetchError{url: url, err: err}
	}
	if !st.Mode().IsRegular() {
		return nil, &fetchError{url: url, err: errors.New("not a regular file")}
	}
	if st.Size() > max {
		return nil, tooLarge(url, st.Size(), max)
	}
	data, err := httplimit.ReadAll(file, max, st.Size())
	if errors.Is(err, httplimit.ErrTooLarge) {
		return nil, tooLarge(url, max+1, max)
	}
	if err != nil {
		return nil, &fetchError{url: url, err: err}
	}
	return data, nil
}

// recordingFetcher remembers the last file asked for, so a failure can
// name it (go-tuf's messages do not always say which file was bad).
type recordingFetcher struct {
	inner fetcher.Fetcher
	mu    sync.Mutex
	last  string
}

func (f *recordingFetcher) DownloadFile(url string, maxLength int64, timeout time.Duration) ([]byte, error) {
	f.mu.Lock()
	f.last = path.Base(url)
	f.mu.Unlock()
	return f.inner.DownloadFile(url, maxLength, timeout)
}

func (f *recordingFetcher) lastFile() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}
