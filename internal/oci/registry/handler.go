package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/storage"
)

// Handler serves the distribution API at /v2/ from a Store.
type Handler struct {
	store *Store
	// authorize decides on every request that writes (push, delete and
	// upload sessions). It returns nil, ErrUnauthorized or ErrDenied.
	authorize func(*http.Request) error
	log       *zap.Logger
}

// NewHandler returns the /v2/ handler. authorize is called for every
// request that writes; nil refuses them all (a read-only registry). log
// may be nil.
func NewHandler(s *Store, authorize func(*http.Request) error, log *zap.Logger) *Handler {
	if log == nil {
		log = zap.NewNop()
	}
	return &Handler{store: s, authorize: authorize, log: log}
}

// route is one parsed request path.
type route struct {
	kind string // "base", "manifest", "blob", "uploads", "upload", "tags", "referrers"
	name string
	arg  string // reference, digest or upload id
}

// parsePath splits /v2/<name>/<endpoint>. The name may hold slashes, so
// the endpoint is recognised from the end; the name is validated by the
// caller.
func parsePath(p string) (route, bool) {
	rest, ok := strings.CutPrefix(p, "/v2")
	if !ok {
		return route{}, false
	}
	if rest == "" || rest == "/" {
		return route{kind: "base"}, true
	}
	rest = rest[1:]
	segs := strings.Split(rest, "/")
	n := len(segs)
	if n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads" {
		name := strings.Join(segs[:n-3], "/")
		if segs[n-1] == "" {
			return route{kind: "uploads", name: name}, true
		}
		return route{kind: "upload", name: name, arg: segs[n-1]}, true
	}
	if n >= 3 && segs[n-2] == "blobs" && segs[n-1] == "uploads" {
		return route{kind: "uploads", name: strings.Join(segs[:n-2], "/")}, true
	}
	if n < 3 {
		return route{}, false
	}
	name := strings.Join(segs[:n-2], "/")
	switch segs[n-2] {
	case "manifests":
		return route{kind: "manifest", name: name, arg: segs[n-1]}, true
	case "blobs":
		return route{kind: "blob", name: name, arg: segs[n-1]}, true
	case "referrers":
		return route{kind: "referrers", name: name, arg: segs[n-1]}, true
	case "tags":
		if segs[n-1] == "list" {
			return route{kind: "tags", name: name}, true
		}
	}
	return route{}, false
}

// badPathError explains an unclean path: a digest with path characters in
// it is DIGEST_INVALID, anything else NAME_INVALID.
func badPathError(p string) *Error {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if (s == "blobs" || s == "manifests" || s == "referrers") && i+1 < len(segs) && strings.Contains(segs[i+1], ":") {
			return errorf(CodeDigestInvalid, "invalid digest in path")
		}
	}
	return errorf(CodeNameInvalid, "invalid repository name or path")
}

func cleanSegments(p string) bool {
	for i, s := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		if s == "." || s == ".." || (s == "" && i != strings.Count(strings.TrimPrefix(p, "/"), "/")) {
			return false
		}
	}
	return true
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := h.serve(w, r); err != nil {
		var e *Error
		if !errors.As(err, &e) {
			h.log.Error("registry request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
			e = &Error{Code: "INTERNAL_ERROR", Status: http.StatusInternalServerError, Message: "internal error"}
		}
		if e.Code == CodeUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="mxos"`)
		}
		writeErr(w, e)
	}
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	p := r.URL.Path
	if !cleanSegments(p) {
		return badPathError(p)
	}
	rt, ok := parsePath(p)
	if !ok {
		return errorf(CodeNameUnknown, "no such endpoint").withStatus(http.StatusNotFound)
	}
	if rt.kind == "base" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return methodNotAllowed(w, "GET, HEAD")
		}
		if err := h.checkBase(r); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "3")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, "{}\n")
		}
		return nil
	}
	if err := checkName(rt.name); err != nil {
		return err
	}
	write := r.Method != http.MethodGet && r.Method != http.MethodHead
	if write || rt.kind == "upload" || rt.kind == "uploads" {
		if err := h.authorized(r); err != nil {
			return err
		}
	}
	switch rt.kind {
	case "manifest":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return h.getManifest(w, r, rt)
		case http.MethodPut:
			return h.putManifest(w, r, rt)
		case http.MethodDelete:
			return h.deleteManifest(w, r, rt)
		}
		return methodNotAllowed(w, "GET, HEAD, PUT, DELETE")
	case "blob":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return h.getBlob(w, r, rt)
		case http.MethodDelete:
			return h.deleteBlob(w, r, rt)
		}
		return methodNotAllowed(w, "GET, HEAD, DELETE")
	case "uploads":
		if r.Method != http.MethodPost {
			return methodNotAllowed(w, "POST")
		}
		return h.postUpload(w, r, rt)
	case "upload":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return h.uploadStatus(w, r, rt)
		case http.MethodPatch:
			return h.patchUpload(w, r, rt)
		case http.MethodPut:
			return h.putUpload(w, r, rt)
		case http.MethodDelete:
			return h.cancelUpload(w, r, rt)
		}
		return methodNotAllowed(w, "GET, PATCH, PUT, DELETE")
	case "tags":
		if write {
			return methodNotAllowed(w, "GET, HEAD")
		}
		return h.listTags(w, r, rt)
	case "referrers":
		if write {
			return methodNotAllowed(w, "GET, HEAD")
		}
		return h.listReferrers(w, r, rt)
	}
	return errorf(CodeNameUnknown, "no such endpoint")
}

// checkBase decides the /v2/ check. Clients (containers/image, docker)
// learn the auth scheme only from this request and never retry a later
// 401 with new credentials, so a request without credentials gets the
// Basic challenge here; content stays public, and a client with no
// credentials simply goes on without them. Credentials that are valid
// get 200 whatever their role: a device token may still pull.
func (h *Handler) checkBase(r *http.Request) error {
	if h.authorize == nil {
		return nil
	}
	if r.Header.Get("Authorization") == "" {
		return errorf(CodeUnauthorized, "pulling needs no token; pushing needs a token with the release role")
	}
	if err := h.authorize(r); errors.Is(err, ErrUnauthorized) {
		return errorf(CodeUnauthorized, "unknown or malformed token")
	}
	return nil
}

func methodNotAllowed(w http.ResponseWriter, allow string) error {
	w.Header().Set("Allow", allow)
	return errorf(CodeUnsupported, "method not allowed here")
}

// authorized runs the Authorize function; only its two sentinels become
// client errors, anything else is an internal error.
func (h *Handler) authorized(r *http.Request) error {
	if h.authorize == nil {
		return errorf(CodeDenied, "this registry is read-only")
	}
	err := h.authorize(r)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrUnauthorized):
		return errorf(CodeUnauthorized, "a token with the release role is required to push or delete")
	case errors.Is(err, ErrDenied):
		return errorf(CodeDenied, "this token may not push or delete (it needs the release role)")
	}
	return fmt.Errorf("authorizing: %w", err)
}

// --- pull ---

func (h *Handler) getManifest(w http.ResponseWriter, r *http.Request, rt route) error {
	d, meta, err := h.store.resolve(rt.name, rt.arg)
	if err != nil {
		if isNotFound(err) && !h.store.repoExists(rt.name) {
			return errorf(CodeNameUnknown, "repository %s is not known", rt.name)
		}
		return err
	}
	f, err := h.store.blobs.Open(d)
	if errors.Is(err, storage.ErrNotFound) {
		return errorf(CodeManifestUnknown, "manifest %s is missing its content", d)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	hd := w.Header()
	hd.Set("Content-Type", meta.MediaType)
	hd.Set("Docker-Content-Digest", d.String())
	hd.Set("ETag", `"`+d.String()+`"`)
	if _, _, isDigest := strings.Cut(rt.arg, ":"); isDigest {
		hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hd.Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, "", time.Time{}, f)
	return nil
}

// getBlob is the hot path: one stat of the repository link, one open and
// fstat, then sendfile through http.ServeContent (which also does Range
// and HEAD). The bytes were verified when they were stored.
func (h *Handler) getBlob(w http.ResponseWriter, r *http.Request, rt route) error {
	d, err := parseDigest(rt.arg)
	if err != nil {
		return err
	}
	if !h.store.blobLinked(rt.name, d) {
		return errorf(CodeBlobUnknown, "blob %s is not in %s", d, rt.name)
	}
	f, err := h.store.blobs.Open(d)
	if errors.Is(err, storage.ErrNotFound) {
		return errorf(CodeBlobUnknown, "blob %s is not in %s", d, rt.name)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	hd := w.Header()
	hd["Content-Type"] = hdrOctetStream
	hd.Set("Docker-Content-Digest", d.String())
	hd.Set("ETag", `"`+d.String()+`"`)
	hd["Cache-Control"] = hdrImmutable
	http.ServeContent(w, r, "", time.Time{}, f)
	return nil
}

var (
	hdrOctetStream = []string{"application/octet-stream"}
	hdrImmutable   = []string{"public, max-age=31536000, immutable"}
)

// --- push ---

func (h *Handler) putManifest(w http.ResponseWriter, r *http.Request, rt route) error {
	tag, want, err := parseReference(rt.arg)
	if err != nil {
		return err
	}
	var tags []string
	if tag != "" {
		tags = append(tags, tag)
	}
	// Tags as parameters of a push by digest (distribution-spec main).
	extra := r.URL.Query()["tag"]
	for _, t := range extra {
		if err := checkTag(t); err != nil {
			return err
		}
	}
	tags = append(tags, extra...)
	if r.ContentLength > MaxManifestSize {
		return errorf(CodeSizeInvalid, "manifest is larger than %d bytes", MaxManifestSize).withStatus(413)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxManifestSize+1))
	if err != nil {
		return errorf(CodeManifestInvalid, "reading the manifest failed")
	}
	if len(body) > MaxManifestSize {
		return errorf(CodeSizeInvalid, "manifest is larger than %d bytes", MaxManifestSize).withStatus(413)
	}
	d, m, err := h.store.putManifest(rt.name, want, tags, r.Header.Get("Content-Type"), body)
	if err != nil {
		return err
	}
	hd := w.Header()
	hd.Set("Location", "/v2/"+rt.name+"/manifests/"+d.String())
	hd.Set("Docker-Content-Digest", d.String())
	if m.Subject != nil {
		hd.Set("OCI-Subject", m.Subject.Digest.String())
	}
	if len(extra) > 0 {
		hd.Set("OCI-Tag", strings.Join(extra, ","))
	}
	w.WriteHeader(http.StatusCreated)
	return nil
}

func (h *Handler) deleteManifest(w http.ResponseWriter, r *http.Request, rt route) error {
	tag, d, err := parseReference(rt.arg)
	if err != nil {
		return err
	}
	if tag != "" {
		err = h.store.deleteTag(rt.name, tag)
	} else {
		err = h.store.deleteManifest(rt.name, d)
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (h *Handler) deleteBlob(w http.ResponseWriter, r *http.Request, rt route) error {
	d, err := parseDigest(rt.arg)
	if err != nil {
		return err
	}
	if err := h.store.unlinkBlob(rt.name, d); err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// blobCreated answers a completed blob push.
func blobCreated(w http.ResponseWriter, name string, d digest.Digest) {
	hd := w.Header()
	hd.Set("Location", "/v2/"+name+"/blobs/"+d.String())
	hd.Set("Docker-Content-Digest", d.String())
	hd.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

func (h *Handler) postUpload(w http.ResponseWriter, r *http.Request, rt route) error {
	q := r.URL.Query()
	if m := q.Get("mount"); m != "" {
		d, err := parseDigest(m)
		if err != nil {
			return err
		}
		from := q.Get("from")
		if from != "" {
			if err := checkName(from); err != nil {
				return err
			}
		}
		ok, err := h.store.mount(rt.name, from, d)
		if err != nil {
			return err
		}
		if ok {
			blobCreated(w, rt.name, d)
			return nil
		}
		// Nothing to mount: a normal upload session, as the spec says.
	}
	if alg := q.Get("digest-algorithm"); alg != "" && alg != "sha256" && alg != "sha512" {
		return errorf(CodeDigestInvalid, "unsupported digest algorithm %q (use sha256 or sha512)", truncate(alg))
	}
	if ds := q.Get("digest"); ds != "" {
		d, err := parseDigest(ds)
		if err != nil {
			return err
		}
		size := int64(-1)
		if r.ContentLength >= 0 {
			size = r.ContentLength
		}
		if err := h.store.putBlob(rt.name, d, size, r.Body); err != nil {
			return err
		}
		blobCreated(w, rt.name, d)
		return nil
	}
	id, err := h.store.startUpload(rt.name)
	if err != nil {
		return err
	}
	uploadAccepted(w, rt.name, id, 0, http.StatusAccepted)
	return nil
}

// uploadAccepted answers with the session's location and progress.
func uploadAccepted(w http.ResponseWriter, name, id string, size int64, status int) {
	hd := w.Header()
	hd.Set("Location", "/v2/"+name+"/blobs/uploads/"+id)
	hd.Set("Docker-Upload-UUID", id)
	end := size - 1
	if end < 0 {
		end = 0
	}
	hd.Set("Range", "0-"+strconv.FormatInt(end, 10))
	hd.Set("Content-Length", "0")
	w.WriteHeader(status)
}

func (h *Handler) uploadStatus(w http.ResponseWriter, r *http.Request, rt route) error {
	u, err := h.store.openUpload(rt.name, rt.arg)
	if err != nil {
		return err
	}
	defer u.close()
	size, err := u.size()
	if err != nil {
		return err
	}
	uploadAccepted(w, rt.name, u.id, size, http.StatusNoContent)
	return nil
}

var contentRangeRE = regexp.MustCompile(`^(?:bytes[ =])?([0-9]{1,18})-([0-9]{1,18})(?:/[0-9*]+)?$`)

// parseContentRange returns the start and length of a chunk, or -1, -1
// without a Content-Range header. It also checks the length against
// Content-Length when both are given.
func parseContentRange(r *http.Request) (int64, int64, error) {
	v := r.Header.Get("Content-Range")
	if v == "" {
		return -1, -1, nil
	}
	m := contentRangeRE.FindStringSubmatch(v)
	if m == nil {
		return 0, 0, errorf(CodeBlobUploadInvalid, "invalid Content-Range %q (want <start>-<end>)", truncate(v)).withStatus(416)
	}
	start, _ := strconv.ParseInt(m[1], 10, 64)
	end, _ := strconv.ParseInt(m[2], 10, 64)
	if end < start {
		return 0, 0, errorf(CodeBlobUploadInvalid, "invalid Content-Range %q: end before start", truncate(v)).withStatus(416)
	}
	n := end - start + 1
	if r.ContentLength >= 0 && r.ContentLength != n {
		return 0, 0, errorf(CodeBlobUploadInvalid, "Content-Range %q does not match Content-Length %d", truncate(v), r.ContentLength).withStatus(416)
	}
	return start, n, nil
}

func (h *Handler) patchUpload(w http.ResponseWriter, r *http.Request, rt route) error {
	start, n, err := parseContentRange(r)
	if err != nil {
		return err
	}
	u, err := h.store.openUpload(rt.name, rt.arg)
	if err != nil {
		return err
	}
	defer u.close()
	size, err := u.appendChunk(r.Body, start, n)
	if err != nil {
		return err
	}
	uploadAccepted(w, rt.name, u.id, size, http.StatusAccepted)
	return nil
}

func (h *Handler) putUpload(w http.ResponseWriter, r *http.Request, rt route) error {
	d, err := parseDigest(r.URL.Query().Get("digest"))
	if err != nil {
		return err
	}
	start, n, err := parseContentRange(r)
	if err != nil {
		return err
	}
	u, err := h.store.openUpload(rt.name, rt.arg)
	if err != nil {
		return err
	}
	if r.ContentLength != 0 {
		if _, err := u.appendChunk(r.Body, start, n); err != nil {
			u.close()
			return err
		}
	}
	if err := h.store.finishUpload(rt.name, u, d); err != nil {
		return err
	}
	blobCreated(w, rt.name, d)
	return nil
}

func (h *Handler) cancelUpload(w http.ResponseWriter, r *http.Request, rt route) error {
	u, err := h.store.openUpload(rt.name, rt.arg)
	if err != nil {
		return err
	}
	if err := h.store.cancelUpload(u); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// --- discovery ---

func (h *Handler) listTags(w http.ResponseWriter, r *http.Request, rt route) error {
	tags, err := h.store.tags(rt.name)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	if last := q.Get("last"); last != "" {
		i := 0
		for i < len(tags) && tags[i] <= last {
			i++
		}
		tags = tags[i:]
	}
	link := ""
	if ns := q.Get("n"); ns != "" {
		n, err := strconv.Atoi(ns)
		if err != nil || n < 0 {
			return errorf(CodeUnsupported, "invalid n %q", truncate(ns)).withStatus(http.StatusBadRequest)
		}
		if n < len(tags) {
			tags = tags[:n]
			if n > 0 {
				v := url.Values{"n": {ns}, "last": {tags[n-1]}}
				link = fmt.Sprintf(`</v2/%s/tags/list?%s>; rel="next"`, rt.name, v.Encode())
			}
		}
	}
	if link != "" {
		w.Header().Set("Link", link)
	}
	return writeJSON(w, r, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{rt.name, tags})
}

func (h *Handler) listReferrers(w http.ResponseWriter, r *http.Request, rt route) error {
	d, err := parseDigest(rt.arg)
	if err != nil {
		return err
	}
	at := r.URL.Query().Get("artifactType")
	refs, err := h.store.referrers(rt.name, d, at)
	if err != nil {
		return err
	}
	if at != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	return writeJSON(w, r, MediaTypeOCIIndex, struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Manifests     []descriptor `json:"manifests"`
	}{2, MediaTypeOCIIndex, refs})
}

func writeJSON(w http.ResponseWriter, r *http.Request, contentType string, v any) error {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		return err
	}
	hd := w.Header()
	hd.Set("Content-Type", contentType)
	hd.Set("Content-Length", strconv.Itoa(buf.Len()))
	hd.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
	return nil
}
