package server

import (
	"net/http"
	"strings"
	"time"
)

// evalPreconditions applies RFC 9110 §13.2.2 for GET and HEAD. It returns
// 0 to proceed, 304 or 412.
func evalPreconditions(r *http.Request, etag string, modtime time.Time) int {
	if im := r.Header["If-Match"]; len(im) > 0 {
		if !etagListMatches(im, etag, false) {
			return http.StatusPreconditionFailed
		}
	} else if ius := r.Header.Get("If-Unmodified-Since"); ius != "" {
		if t, ok := parseHTTPDate(ius); ok && modtime.Unix() > t.Unix() {
			return http.StatusPreconditionFailed
		}
	}
	// If-None-Match takes precedence over If-Modified-Since.
	if inm := r.Header["If-None-Match"]; len(inm) > 0 {
		if etagListMatches(inm, etag, true) {
			return http.StatusNotModified
		}
		return 0
	}
	if ims := r.Header.Get("If-Modified-Since"); ims != "" {
		// HTTP dates have one-second resolution.
		if t, ok := parseHTTPDate(ims); ok && modtime.Unix() <= t.Unix() {
			return http.StatusNotModified
		}
	}
	return 0
}

// etagListMatches reports whether any entity tag in the header field
// values matches etag; weak selects weak comparison (If-None-Match) over
// strong comparison (If-Match). Malformed members never match.
func etagListMatches(values []string, etag string, weak bool) bool {
	for _, v := range values {
		for {
			v = strings.TrimLeft(v, " \t,")
			if v == "" {
				break
			}
			if v[0] == '*' {
				return true
			}
			isWeak := false
			if strings.HasPrefix(v, "W/") {
				isWeak = true
				v = v[2:]
			}
			if v == "" || v[0] != '"' {
				break
			}
			end := strings.IndexByte(v[1:], '"')
			if end < 0 {
				break
			}
			tag := v[:end+2]
			v = v[end+2:]
			if tag == etag && (weak || !isWeak) {
				return true
			}
		}
	}
	return false
}
