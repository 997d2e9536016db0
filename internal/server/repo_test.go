package server

import (
	"bytes"
	"crypto/rand"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPathTraversal(t *testing.T) {
	data := newDataDir(t)
	repo := filepath.Join(data, "repo")
	secret := []byte("TOP-SECRET-OUTSIDE-THE-REPO")
	outside := t.TempDir()
	writeFile(t, filepath.Join(data, "secret"), secret)
	writeFile(t, filepath.Join(outside, "secret"), secret)
	writeFile(t, filepath.Join(repo, "config"), []byte("[core]\n"))
	writeFile(t, filepath.Join(repo, "refs", "heads", "main"), []byte(strings.Repeat("0", 64)+"\n"))
	links := map[string]string{
		"escape-rel":      "../secret",
		"escape-abs":      filepath.Join(outside, "secret"),
		"escape-dir":      outside,
		"refs/heads/evil": "../../../secret",
		// Objects take a faster path than other files: same rules.
		"objects/ab/" + hexA + ".filez":   "../../../secret",
		"objects/ab/" + hexB + ".dirtree": filepath.Join(outside, "secret"),
		"objects/cd":                      outside,
		"objects/ef/" + hexA + ".commit":  "../../config", // inside: allowed
	}
	for name, target := range links {
		p := filepath.Join(repo, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(outside, hexA[:62]+".filez"), secret)
	base := startServer(t, newTestServer(t, data))

	tests := []struct {
		name, target string
	}{
		{"dotdot", "/repo/../secret"},
		{"dotdot-encoded", "/repo/%2e%2e/secret"},
		{"dotdot-encoded-upper", "/repo/%2E%2E/secret"},
		{"dotdot-nested", "/repo/objects/../../secret"},
		{"dotdot-encoded-slash", "/repo/..%2fsecret"},
		{"dotdot-deep", "/repo/refs/heads/../../../secret"},
		{"dot-segment", "/repo/./config/../../secret"},
		{"double-slash-absolute", "/repo//etc/passwd"},
		{"encoded-absolute", "/repo/%2fetc%2fpasswd"},
		{"nul", "/repo/config%00"},
		{"nul-dotdot", "/repo/%00/../secret"},
		{"backslash", `/repo/..\secret`},
		{"backslash-encoded", "/repo/..%5csecret"},
		{"backslash-nested", "/repo/objects%5c..%5c..%5csecret"},
		{"symlink-relative", "/repo/escape-rel"},
		{"symlink-absolute", "/repo/escape-abs"},
		{"symlink-dir", "/repo/escape-dir/secret"},
		{"symlink-in-refs", "/repo/refs/heads/evil"},
		{"object-symlink-relative", "/repo/objects/ab/" + hexA + ".filez"},
		{"object-symlink-absolute", "/repo/objects/ab/" + hexB + ".dirtree"},
		{"object-dir-symlink", "/repo/objects/cd/" + hexA + ".filez"},
		{"repo-root", "/repo/"},
		{"repo-no-slash", "/repo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := rawGet(t, base, tt.target)
			if bytes.Contains(body, secret) {
				t.Fatalf("GET %s leaked the outside file (status %d)", tt.target, resp.StatusCode)
			}
			switch resp.StatusCode {
			case http.StatusBadRequest, http.StatusNotFound:
			case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
				// Only /repo → /repo/, added by http.ServeMux.
				if tt.target != "/repo" || resp.Header.Get("Location") != "/repo/" {
					t.Fatalf("GET %s: redirect to %q", tt.target, resp.Header.Get("Location"))
				}
			default:
				t.Fatalf("GET %s: status %d, want 400 or 404", tt.target, resp.StatusCode)
			}
		})
	}

	// Controls: well-formed paths still work on the same server, including
	// a symlink that stays inside the repository.
	for _, target := range []string{"/repo/config", "/repo/objects/ef/" + hexA + ".commit"} {
		if resp, body := rawGet(t, base, target); resp.StatusCode != http.StatusOK || string(body) != "[core]\n" {
			t.Fatalf("GET %s: status %d body %q", target, resp.StatusCode, body)
		}
	}
}

func TestCachingHeaders(t *testing.T) {
	data := newDataDir(t)
	repo := filepath.Join(data, "repo")
	const (
		immutable = "public, max-age=31536000, immutable"
		binary    = "application/octet-stream"
		text      = "text/plain; charset=utf-8"
	)
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	large := make([]byte, 200<<10) // served with sendfile
	if _, err := rand.Read(large); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path   string
		content      []byte
		cacheControl string
		contentType  string
		nameETag     bool // ETag derived from the name, not the content
	}{
		{"commit", "objects/ab/" + hexA + ".commit", []byte("commit"), immutable, binary, true},
		{"dirtree", "objects/ab/" + hexA + ".dirtree", []byte("dirtree"), immutable, binary, true},
		{"dirmeta", "objects/ab/" + hexA + ".dirmeta", []byte("dirmeta"), immutable, binary, true},
		{"filez", "objects/cd/" + hexB + ".filez", []byte("filez"), immutable, binary, true},
		{"filez-large", "objects/cd/" + hexA + ".filez", large, immutable, binary, true},
		{"delta-part", "deltas/nh/opHmI6T3ounVD+tf1Qal66sREefGnyhZZAG0s_2AM-BSivm2_fSlDbqsxj8O4y3ina8WOCUjEVUnVTqwAgoAk/0", []byte("part0"), immutable, binary, true},
		{"delta-part-scratch", "deltas/BS/ivm2_fSlDbqsxj8O4y3ina8WOCUjEVUnVTqwAgoAk/12", []byte("part12"), immutable, binary, true},
		{"commitmeta", "objects/ab/" + hexA + ".commitmeta", []byte("signatures"), "no-cache", binary, false},
		{"summary", "summary", []byte("summary"), "no-cache", binary, false},
		{"summary-sig", "summary.sig", []byte("sig"), "no-cache", binary, false},
		{"config", "config", []byte("[core]\nrepo_version=1\nmode=archive-z2\n"), "no-cache", text, false},
		{"ref", "refs/heads/main", []byte(strings.Repeat("1", 64) + "\n"), "no-cache", text, false},
		{"ref-nested", "refs/heads/mxos/10/x86_64/stable", []byte(strings.Repeat("2", 64) + "\n"), "no-cache", text, false},
		{"delta-index", "delta-indexes/BS/ivm2_fSlDbqsxj8O4y3ina8WOCUjEVUnVTqwAgoAk.index", []byte("index"), "no-cache", binary, false},
		{"superblock", "deltas/BS/ivm2_fSlDbqsxj8O4y3ina8WOCUjEVUnVTqwAgoAk/superblock", []byte("superblock"), "no-cache", binary, false},
		{"empty", "refs/heads/empty", nil, "no-cache", text, false},
	}
	for _, tt := range tests {
		p := filepath.Join(repo, filepath.FromSlash(tt.path))
		writeFile(t, p, tt.content)
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	base := startServer(t, newTestServer(t, data))

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				resp, body := do(t, method, base+"/repo/"+tt.path)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%s: status %d", method, resp.StatusCode)
				}
				h := resp.Header
				wantETag := sha256ETag(tt.content)
				if tt.nameETag {
					wantETag = `"` + tt.path + `"`
				}
				checks := []struct{ header, want string }{
					{"Cache-Control", tt.cacheControl},
					{"Content-Type", tt.contentType},
					{"ETag", wantETag},
					{"Content-Length", strconv.Itoa(len(tt.content))},
					{"Last-Modified", "Fri, 02 Jan 2026 03:04:05 GMT"},
				}
				for _, c := range checks {
					if got := h.Get(c.header); got != c.want {
						t.Errorf("%s: %s = %q, want %q", method, c.header, got, c.want)
					}
				}
				want := tt.content
				if method == http.MethodHead {
					want = nil
				}
				if !bytes.Equal(body, want) {
					t.Errorf("%s: body is %d bytes, want %d", method, len(body), len(want))
				}
			}
		})
	}
}

func TestConditionalRequests(t *testing.T) {
	data := newDataDir(t)
	repo := filepath.Join(data, "repo")
	summary := filepath.Join(repo, "summary")
	object := filepath.Join(repo, "objects", "ab", hexA+".dirtree")
	v1 := []byte("summary version 1")
	mtime := time.Date(2026, 11, 23, 12, 13, 0, 0, time.UTC)
	writeFile(t, summary, v1)
	writeFile(t, object, []byte("tree"))
	for _, p := range []string{summary, object} {
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	base := startServer(t, newTestServer(t, data))
	url := base + "/repo/summary"
	etag := sha256ETag(v1)

	const (
		utcDate    = "Mon, 23 Nov 2026 12:13:00 UTC" // what libostree sends
		gmtDate    = "Mon, 23 Nov 2026 12:13:00 GMT"
		esDate     = "lun, 23 nov 2026 12:13:00 UTC" // libostree under an es-MX locale
		laterDate  = "Mon, 23 Nov 2026 12:14:00 UTC"
		olderUTC   = "Mon, 23 Nov 2026 12:12:59 UTC"
		olderGMT   = "Mon, 23 Nov 2026 12:12:59 GMT"
		rfc850Date = "Monday, 23-Nov-26 12:13:00 GMT"
		asctime    = "Mon Nov 23 12:13:00 2026"
	)
	tests := []struct {
		name    string
		url     string
		headers []string
		want    int
	}{
		{"inm-match", url, []string{"If-None-Match: " + etag}, 304},
		{"inm-weak-match", url, []string{"If-None-Match: W/" + etag}, 304},
		{"inm-list", url, []string{`If-None-Match: "nope", ` + etag}, 304},
		{"inm-star", url, []string{"If-None-Match: *"}, 304},
		{"inm-mismatch", url, []string{`If-None-Match: "nope"`}, 200},
		{"inm-unquoted", url, []string{"If-None-Match: " + strings.Trim(etag, `"`)}, 200},
		{"ims-utc", url, []string{"If-Modified-Since: " + utcDate}, 304},
		{"ims-gmt", url, []string{"If-Modified-Since: " + gmtDate}, 304},
		{"ims-es-locale", url, []string{"If-Modified-Since: " + esDate}, 304},
		{"ims-later", url, []string{"If-Modified-Since: " + laterDate}, 304},
		{"ims-rfc850", url, []string{"If-Modified-Since: " + rfc850Date}, 304},
		{"ims-asctime", url, []string{"If-Modified-Since: " + asctime}, 304},
		{"ims-older-utc", url, []string{"If-Modified-Since: " + olderUTC}, 200},
		{"ims-older-gmt", url, []string{"If-Modified-Since: " + olderGMT}, 200},
		{"ims-garbage", url, []string{"If-Modified-Since: yesterday"}, 200},
		// RFC 9110 §13.2.2: If-None-Match wins over If-Modified-Since.
		{"inm-mismatch-beats-ims", url, []string{`If-None-Match: "nope"`, "If-Modified-Since: " + utcDate}, 200},
		{"inm-match-beats-old-ims", url, []string{"If-None-Match: " + etag, "If-Modified-Since: " + olderUTC}, 304},
		{"if-match-ok", url, []string{"If-Match: " + etag}, 200},
		{"if-match-fail", url, []string{`If-Match: "nope"`}, 412},
		{"if-match-weak-fails", url, []string{"If-Match: W/" + etag}, 412},
		{"ius-fail", url, []string{"If-Unmodified-Since: " + olderUTC}, 412},
		{"ius-ok", url, []string{"If-Unmodified-Since: " + utcDate}, 200},
		{"object-inm", base + "/repo/objects/ab/" + hexA + ".dirtree", []string{`If-None-Match: "objects/ab/` + hexA + `.dirtree"`}, 304},
		{"object-ims", base + "/repo/objects/ab/" + hexA + ".dirtree", []string{"If-Modified-Since: " + utcDate}, 304},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, http.MethodGet, tt.url, tt.headers...)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == http.StatusNotModified {
				if len(body) != 0 {
					t.Errorf("304 with a %d-byte body", len(body))
				}
				if resp.Header.Get("ETag") == "" || resp.Header.Get("Cache-Control") == "" {
					t.Errorf("304 without ETag or Cache-Control: %v", resp.Header)
				}
			}
		})
	}

	// After the summary changes, the same validators must yield 200 and the
	// new content.
	v2 := []byte("summary version 2, longer")
	replaceFile(t, summary, v2)
	later := mtime.Add(time.Minute)
	if err := os.Chtimes(summary, later, later); err != nil {
		t.Fatal(err)
	}
	for _, hdr := range []string{"If-None-Match: " + etag, "If-Modified-Since: " + utcDate, "If-Modified-Since: " + gmtDate} {
		resp, body := do(t, http.MethodGet, url, hdr)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, v2) {
			t.Fatalf("after change, %s: status %d body %q", hdr, resp.StatusCode, body)
		}
		if got := resp.Header.Get("ETag"); got != sha256ETag(v2) {
			t.Fatalf("after change: ETag %s, want %s", got, sha256ETag(v2))
		}
	}
	if resp, _ := do(t, http.MethodGet, url, "If-Modified-Since: Mon, 23 Nov 2026 12:14:00 UTC"); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("new mtime, matching UTC date: status %d, want 304", resp.StatusCode)
	}
}

func TestMethodsDirectoriesAndHiddenFiles(t *testing.T) {
	data := newDataDir(t)
	repo := filepath.Join(data, "repo")
	for _, p := range []string{
		"config",
		".lock",
		"objects/ab/" + hexA + ".filez",
		"objects/ab/.tmp-" + hexA + ".filez",
		"refs/heads/.hidden",
		"refs/.tmp/main",
		"tmp/summary",
		"tmp/cache/summaries/origin",
		"state/" + strings.Repeat("c", 64) + ".commitpartial",
		"deltas/ab/.part/0",
	} {
		writeFile(t, filepath.Join(repo, filepath.FromSlash(p)), []byte("x"))
	}
	if err := os.Mkdir(filepath.Join(repo, "refs", "heads", "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	base := startServer(t, newTestServer(t, data))

	tests := []struct {
		name, method, path string
		want               int
	}{
		{"get", http.MethodGet, "/repo/config", 200},
		{"head", http.MethodHead, "/repo/config", 200},
		{"post", http.MethodPost, "/repo/config", 405},
		{"put", http.MethodPut, "/repo/config", 405},
		{"delete", http.MethodDelete, "/repo/config", 405},
		{"options", http.MethodOptions, "/repo/config", 405},
		{"post-missing", http.MethodPost, "/repo/nothing", 405},
		{"dir-objects", http.MethodGet, "/repo/objects", 404},
		{"dir-objects-slash", http.MethodGet, "/repo/objects/", 404},
		{"dir-fanout", http.MethodGet, "/repo/objects/ab", 404},
		{"dir-refs", http.MethodGet, "/repo/refs/heads/dir", 404},
		{"missing", http.MethodGet, "/repo/summary", 404},
		{"missing-object", http.MethodGet, "/repo/objects/ab/" + hexB + ".commitmeta", 404},
		{"missing-fanout", http.MethodGet, "/repo/objects/ff/" + hexB + ".commit", 404},
		{"lock", http.MethodGet, "/repo/.lock", 404},
		{"dot-object", http.MethodGet, "/repo/objects/ab/.tmp-" + hexA + ".filez", 404},
		{"dot-ref", http.MethodGet, "/repo/refs/heads/.hidden", 404},
		{"dot-dir", http.MethodGet, "/repo/refs/.tmp/main", 404},
		{"dot-delta-dir", http.MethodGet, "/repo/deltas/ab/.part/0", 404},
		{"tmp", http.MethodGet, "/repo/tmp/summary", 404},
		{"tmp-cache", http.MethodGet, "/repo/tmp/cache/summaries/origin", 404},
		{"state", http.MethodGet, "/repo/state/" + strings.Repeat("c", 64) + ".commitpartial", 404},
		{"healthz", http.MethodGet, "/healthz", 200},
		{"unknown-route", http.MethodGet, "/nothing", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, tt.method, base+tt.path)
			if resp.StatusCode != tt.want {
				t.Fatalf("%s %s: status %d, want %d", tt.method, tt.path, resp.StatusCode, tt.want)
			}
			if tt.want == http.StatusMethodNotAllowed {
				if allow := resp.Header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "HEAD") {
					t.Errorf("Allow = %q, want GET and HEAD", allow)
				}
			}
			if tt.want == http.StatusNotFound && bytes.Equal(body, []byte("x")) {
				t.Errorf("404 carried the file's content")
			}
		})
	}
}

func TestRangeRequests(t *testing.T) {
	data := newDataDir(t)
	repo := filepath.Join(data, "repo")
	small := []byte("0123456789abcdef")
	large := make([]byte, 100<<10)
	if _, err := rand.Read(large); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(repo, "objects", "ab", hexA+".filez"), small)
	writeFile(t, filepath.Join(repo, "objects", "cd", hexB+".filez"), large)
	base := startServer(t, newTestServer(t, data))
	smallURL := base + "/repo/objects/ab/" + hexA + ".filez"
	largeURL := base + "/repo/objects/cd/" + hexB + ".filez"
	smallETag := `"objects/ab/` + hexA + `.filez"`

	tests := []struct {
		name         string
		url          string
		headers      []string
		wantStatus   int
		wantBody     []byte
		contentRange string
	}{
		{"small-middle", smallURL, []string{"Range: bytes=2-5"}, 206, small[2:6], "bytes 2-5/16"},
		{"small-suffix", smallURL, []string{"Range: bytes=-3"}, 206, small[13:], "bytes 13-15/16"},
		{"large-open-end", largeURL, []string{"Range: bytes=1000-"}, 206, large[1000:], "bytes 1000-102399/102400"},
		{"unsatisfiable", smallURL, []string{"Range: bytes=100-200"}, 416, nil, "bytes */16"},
		{"if-range-match", smallURL, []string{"Range: bytes=0-1", "If-Range: " + smallETag}, 206, small[:2], "bytes 0-1/16"},
		{"if-range-stale", smallURL, []string{"Range: bytes=0-1", `If-Range: "old"`}, 200, small, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, http.MethodGet, tt.url, tt.headers...)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if got := resp.Header.Get("Content-Range"); got != tt.contentRange {
				t.Errorf("Content-Range = %q, want %q", got, tt.contentRange)
			}
			if tt.wantBody != nil && !bytes.Equal(body, tt.wantBody) {
				t.Errorf("body is %d bytes, want %d", len(body), len(tt.wantBody))
			}
			if resp.StatusCode == http.StatusPartialContent && resp.Header.Get("ETag") == "" {
				t.Errorf("206 without ETag")
			}
		})
	}
}

func TestObjectDirReplaced(t *testing.T) {
	data := newDataDir(t)
	fanout := filepath.Join(data, "repo", "objects", "ab")
	writeFile(t, filepath.Join(fanout, hexA+".filez"), []byte("first"))
	s := newTestServer(t, data)
	s.repo.objs.close()
	s.repo.objs = newObjCache(objCacheMax, DefaultObjectMemory, 50*time.Millisecond)
	base := startServer(t, s)
	url := func(hex string) string { return base + "/repo/objects/ab/" + hex + ".filez" }

	if resp, _ := do(t, http.MethodGet, url(hexA)); resp.StatusCode != http.StatusOK {
		t.Fatalf("first object: status %d", resp.StatusCode)
	}
	// Replace the fan-out directory behind the cached handle.
	if err := os.RemoveAll(fanout); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(fanout, hexB+".filez"), []byte("second"))
	resp, body := do(t, http.MethodGet, url(hexB))
	if resp.StatusCode != http.StatusOK || string(body) != "second" {
		t.Fatalf("object in new directory: status %d body %q", resp.StatusCode, body)
	}
	// The removed object may be served from the open-object cache (its
	// bytes are still right for its name), but only until the TTL.
	time.Sleep(100 * time.Millisecond)
	if resp, _ := do(t, http.MethodGet, url(hexA)); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("removed object after the cache TTL: status %d, want 404", resp.StatusCode)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	data := newDataDir(t)
	base := startServer(t, newTestServer(t, data))

	if resp, body := do(t, http.MethodGet, base+"/healthz"); resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, body)
	}
	if resp, _ := do(t, http.MethodGet, base+"/readyz"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz without a repository: status %d, want 503", resp.StatusCode)
	}
	writeFile(t, filepath.Join(data, "repo", "config"), []byte("[core]\n"))
	if resp, _ := do(t, http.MethodGet, base+"/readyz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz with a repository: status %d, want 200", resp.StatusCode)
	}
}

func TestNewRequiresRepoDir(t *testing.T) {
	if _, err := New(Config{DataDir: t.TempDir()}); err == nil {
		t.Fatal("New succeeded without DataDir/repo")
	}
	if _, err := New(Config{}); err == nil {
		t.Fatal("New succeeded without DataDir")
	}
}

func TestClassifyRepoPath(t *testing.T) {
	tests := []struct {
		path       string
		wantKind   fileKind
		wantStatus int
	}{
		{"objects/ab/" + hexA + ".commit", kindImmutable, 0},
		{"objects/ab/" + hexA + ".filez", kindImmutable, 0},
		{"objects/ab/" + hexA + ".commitmeta", kindMutable, 0},
		{"objects/ab/" + hexA + ".commit-tombstone", kindMutable, 0},
		{"objects/AB/" + hexA + ".commit", kindMutable, 0}, // not ostree's spelling
		{"objects/ab/" + hexA[1:] + ".commit", kindMutable, 0},
		{"objects/ab/" + hexA + ".file", kindMutable, 0},
		{"deltas/ab/cd-ef/0", kindImmutable, 0},
		{"deltas/ab/cd/123", kindImmutable, 0},
		{"deltas/ab/cd/superblock", kindMutable, 0},
		{"deltas/0", kindMutable, 0},
		{"delta-indexes/ab/cd.index", kindMutable, 0},
		{"config", kindMutableText, 0},
		{"refs/heads/main", kindMutableText, 0},
		{"summary", kindMutable, 0},
		{"summary.sig", kindMutable, 0},
		{"", 0, 404},
		{".lock", 0, 404},
		{"refs/heads/.x", 0, 404},
		{"refs//main", 0, 404},
		{"refs/main/", 0, 404},
		{"tmp/x", 0, 404},
		{"state/x", 0, 404},
		{"config\x00", 0, 400},
		{`refs\heads`, 0, 400},
		{"refs/a b", 0, 400},
		{`refs/"q"`, 0, 400},
		{"refs/\x7f", 0, 400},
		{strings.Repeat("a", maxRepoPath+1), 0, 404},
	}
	for _, tt := range tests {
		kind, status := classifyRepoPath(tt.path)
		if status != tt.wantStatus || (status == 0 && kind != tt.wantKind) {
			t.Errorf("classifyRepoPath(%q) = %d, %d; want %d, %d", tt.path, kind, status, tt.wantKind, tt.wantStatus)
		}
	}
}

func TestETagListMatches(t *testing.T) {
	const etag = `"abc"`
	tests := []struct {
		values      []string
		weak, match bool
	}{
		{[]string{`"abc"`}, true, true},
		{[]string{`"abc"`}, false, true},
		{[]string{`W/"abc"`}, true, true},
		{[]string{`W/"abc"`}, false, false},
		{[]string{`"x", "abc"`}, true, true},
		{[]string{`"x"`, `"abc"`}, true, true},
		{[]string{` "x" ,W/"abc" `}, true, true},
		{[]string{`*`}, false, true},
		{[]string{`"ab"`}, true, false},
		{[]string{`abc`}, true, false},
		{[]string{`"abc`}, true, false},
		{[]string{``}, true, false},
	}
	for _, tt := range tests {
		if got := etagListMatches(tt.values, etag, tt.weak); got != tt.match {
			t.Errorf("etagListMatches(%q, weak=%v) = %v, want %v", tt.values, tt.weak, got, tt.match)
		}
	}
}

func TestIsCleanPath(t *testing.T) {
	tests := map[string]bool{
		"/":              true,
		"/repo/":         true,
		"/repo/config":   true,
		"/repo/a/b/":     true,
		"":               false,
		"repo":           false,
		"//":             false,
		"/repo//x":       false,
		"/repo/./x":      false,
		"/repo/../x":     false,
		"/repo/x/..":     false,
		"/repo/x/.":      false,
		"/repo/x//":      false,
		"/repo/.hidden":  true, // clean; the repo handler refuses it
		"/repo/..hidden": true,
	}
	for p, want := range tests {
		if got := isCleanPath(p); got != want {
			t.Errorf("isCleanPath(%q) = %v, want %v", p, got, want)
		}
	}
}
