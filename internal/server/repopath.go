package server

import (
	"net/http"
	"strings"
)

// classifyRepoPath validates a path relative to the repository and says
// how it is served. A non-zero status means the request must be refused:
// 400 for bytes no repository path contains, 404 for paths that are valid
// but never served (dot files, tmp/, state/).
//
// Callers have already rejected "." and ".." segments (rejectUncleanPaths);
// os.Root is the real guard, this is defence in depth and policy.
func classifyRepoPath(name string) (fileKind, int) {
	if name == "" || len(name) > maxRepoPath {
		return 0, http.StatusNotFound
	}
	for i := 0; i < len(name); i++ {
		// Control bytes (NUL included), space, '"' and '\\' never occur in
		// OSTree paths; '"' would also break the name-derived ETag.
		if c := name[i]; c <= ' ' || c == 0x7f || c == '"' || c == '\\' {
			return 0, http.StatusBadRequest
		}
	}
	first, rest, _ := strings.Cut(name, "/")
	switch first {
	case "tmp", "state": // in-progress writes and client-side state
		return 0, http.StatusNotFound
	}
	for seg := range strings.SplitSeq(name, "/") {
		if seg == "" || seg[0] == '.' { // empty, hidden or temporary
			return 0, http.StatusNotFound
		}
	}

	switch first {
	case "objects":
		if isImmutableObject(rest) {
			return kindImmutable, 0
		}
		return kindMutable, 0 // .commitmeta, tombstones
	case "deltas":
		last := rest[strings.LastIndexByte(rest, '/')+1:]
		if rest != last && isDigits(last) { // part files: deltas/…/<n>
			return kindImmutable, 0
		}
		return kindMutable, 0 // superblock
	case "config", "refs":
		return kindMutableText, 0
	}
	return kindMutable, 0
}

// isImmutableObject reports whether p (relative to objects/) names a
// content-addressed object: XX/<62 hex>.{commit,dirtree,dirmeta,filez}.
func isImmutableObject(p string) bool {
	const hexLen = 2 + 1 + 62
	if len(p) < hexLen+2 || p[2] != '/' || p[hexLen] != '.' {
		return false
	}
	if !isLowerHex(p[:2]) || !isLowerHex(p[3:hexLen]) {
		return false
	}
	switch p[hexLen+1:] {
	case "commit", "dirtree", "dirmeta", "filez":
		return true
	}
	return false
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	if s == "" || len(s) > 10 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
