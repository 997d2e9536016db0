package object

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strconv"
	"time"
)

// Presigner is a store that can hand out a URL reading one object without
// credentials for a while (s3store.Store).
type Presigner interface {
	PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// ServeOptions say how Serve answers.
type ServeOptions struct {
	// Immutable marks a content-addressed object: cached for a year.
	// Others get Cache-Control: no-cache and are revalidated by ETag.
	Immutable bool
	// ContentType is sent as is (application/octet-stream when empty).
	ContentType string
	// Redirect answers GETs of immutable objects with 307 to a presigned
	// URL valid for RedirectTTL, when the store can presign; mutable
	// files are always streamed, so their ETags and revalidation stay
	// the server's.
	Redirect    bool
	RedirectTTL time.Duration
}

// DefaultRedirectTTL is how long a presigned URL is valid.
const DefaultRedirectTTL = 10 * time.Minute

// Serve answers a GET or HEAD of key from s: a stream through this
// process (Range, If-None-Match and If-Modified-Since handled by
// http.ServeContent; a directory store's file goes out with sendfile), or
// a redirect to the bucket (see ServeOptions.Redirect). A missing or
// refused key is 404; a store that fails is 502, without its error.
func Serve(w http.ResponseWriter, r *http.Request, s Store, key string, o ServeOptions) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return nil
	}
	hd := w.Header()
	if o.Immutable {
		hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hd.Set("Cache-Control", "no-cache")
	}
	if p, ok := s.(Presigner); ok && o.Redirect && o.Immutable {
		if err := CheckKey(key); err != nil {
			http.Error(w, "not found", http.StatusNotFound)
			return nil
		}
		ttl := o.RedirectTTL
		if ttl <= 0 {
			ttl = DefaultRedirectTTL
		}
		u, err := p.PresignGet(r.Context(), key, ttl)
		if err != nil {
			http.Error(w, "storage unavailable", http.StatusBadGateway)
			return err
		}
		// The redirect itself may be cached only as long as the URL lives.
		hd.Set("Cache-Control", "private, max-age="+strconv.FormatInt(int64(ttl/time.Second/2), 10))
		http.Redirect(w, r, u, http.StatusTemporaryRedirect)
		return nil
	}
	obj, err := s.Get(r.Context(), key)
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrBadKey) {
		http.Error(w, "not found", http.StatusNotFound)
		return nil
	}
	if err != nil {
		http.Error(w, "storage unavailable", http.StatusBadGateway)
		return err
	}
	defer obj.Close()
	info := obj.Info()
	if info.ETag != "" {
		hd.Set("ETag", info.ETag)
	}
	ct := o.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	hd.Set("Content-Type", ct)
	var content interface {
		Read([]byte) (int, error)
		Seek(int64, int) (int64, error)
	} = obj
	if f, ok := obj.(interface{ OSFile() *os.File }); ok {
		content = f.OSFile() // sendfile
	}
	http.ServeContent(w, r, "", info.ModTime, content)
	return nil
}
