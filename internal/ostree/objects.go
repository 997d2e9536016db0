package ostree

import (
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Checksum is the SHA-256 that names an OSTree object.
type Checksum [32]byte

// String returns the 64 lowercase hex digits ostree uses.
func (c Checksum) String() string { return hex.EncodeToString(c[:]) }

// IsZero reports whether c is unset.
func (c Checksum) IsZero() bool { return c == Checksum{} }

// ParseChecksum parses 64 hex digits.
func ParseChecksum(s string) (Checksum, error) {
	var c Checksum
	if len(s) != 64 {
		return c, fmt.Errorf("%w: %q is not 64 hex digits", ErrBadChecksum, truncate(s))
	}
	if strings.ToLower(s) != s {
		return c, fmt.Errorf("%w: %q is not lowercase hex", ErrBadChecksum, truncate(s))
	}
	if _, err := hex.Decode(c[:], []byte(s)); err != nil {
		return c, fmt.Errorf("%w: %q: %v", ErrBadChecksum, truncate(s), err)
	}
	return c, nil
}

func checksumFromBytes(b []byte) (Checksum, error) {
	var c Checksum
	if len(b) != 32 {
		return c, fmt.Errorf("%w: checksum has %d bytes, want 32", ErrCorrupt, len(b))
	}
	copy(c[:], b)
	return c, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// ObjectType is libostree's OstreeObjectType.
type ObjectType int

// Object types, numbered as in libostree.
const (
	ObjFile       ObjectType = 1
	ObjDirTree    ObjectType = 2
	ObjDirMeta    ObjectType = 3
	ObjCommit     ObjectType = 4
	ObjCommitMeta ObjectType = 6
)

// Ext is the file name suffix of the object type in an archive repository.
func (t ObjectType) Ext() string {
	switch t {
	case ObjFile:
		return "filez"
	case ObjDirTree:
		return "dirtree"
	case ObjDirMeta:
		return "dirmeta"
	case ObjCommit:
		return "commit"
	case ObjCommitMeta:
		return "commitmeta"
	}
	return "unknown"
}

func (t ObjectType) String() string { return t.Ext() }

// IsMetadata reports whether objects of type t are GVariants named by the
// SHA-256 of their bytes.
func (t ObjectType) IsMetadata() bool {
	return t == ObjDirTree || t == ObjDirMeta || t == ObjCommit
}

func objectTypeFromExt(ext string) (ObjectType, bool) {
	switch ext {
	case "filez":
		return ObjFile, true
	case "dirtree":
		return ObjDirTree, true
	case "dirmeta":
		return ObjDirMeta, true
	case "commit":
		return ObjCommit, true
	case "commitmeta":
		return ObjCommitMeta, true
	}
	return 0, false
}

// ObjectPath is the path of an object relative to the repository root.
func ObjectPath(c Checksum, t ObjectType) string {
	h := c.String()
	return "objects/" + h[:2] + "/" + h[2:] + "." + t.Ext()
}

// Errors callers decide on.
var (
	// ErrCorrupt: stored or received bytes do not match their name or format.
	ErrCorrupt = errors.New("corrupt object")
	// ErrBadChecksum: a checksum string is malformed.
	ErrBadChecksum = errors.New("invalid checksum")
	// ErrNotFound: an object or ref is absent.
	ErrNotFound = errors.New("not found")
	// ErrBadName: a file name, path or ref name is not allowed.
	ErrBadName = errors.New("invalid name")
	// ErrUnsupported: a source holds something OSTree cannot store.
	ErrUnsupported = errors.New("unsupported")
	// ErrTooLarge: an object or header exceeds its size limit.
	ErrTooLarge = errors.New("too large")
)

// ObjectError names the object a failure is about.
type ObjectError struct {
	Checksum Checksum
	Type     ObjectType
	Err      error
}

func (e *ObjectError) Error() string {
	return fmt.Sprintf("object %s.%s: %v", e.Checksum, e.Type.Ext(), e.Err)
}

func (e *ObjectError) Unwrap() error { return e.Err }

// ValidateFilename checks one dirtree entry name the way libostree does:
// non-empty, not "." or "..", no '/', no NUL. Names must also be UTF-8,
// since GVariant strings are.
func ValidateFilename(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty file name", ErrBadName)
	case name == "." || name == "..":
		return fmt.Errorf("%w: file name %q", ErrBadName, name)
	case strings.ContainsRune(name, '/'):
		return fmt.Errorf("%w: file name %q contains '/'", ErrBadName, truncate(name))
	case strings.ContainsRune(name, 0):
		return fmt.Errorf("%w: file name %q contains NUL", ErrBadName, truncate(name))
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: file name %q is not UTF-8", ErrBadName, truncate(name))
	}
	return nil
}

var refFragment = regexp.MustCompile(`^[\w\d][-._\w\d]*$`)

// ValidateRef checks a ref name against libostree's grammar:
// fragments of [\w\d][-._\w\d]* joined by '/'.
func ValidateRef(ref string) error {
	if ref == "" {
		return fmt.Errorf("%w: empty ref", ErrBadName)
	}
	for _, frag := range strings.Split(ref, "/") {
		if !refFragment.MatchString(frag) {
			return fmt.Errorf("%w: ref %q", ErrBadName, truncate(ref))
		}
	}
	return nil
}

// SymlinkEscapes reports whether a relative symlink target, resolved from the
// directory dir (slash-separated, relative to the tree root), leaves the
// tree. Absolute targets are resolved inside the deployment when it boots,
// so they never escape.
func SymlinkEscapes(dir, target string) bool {
	if target == "" || strings.HasPrefix(target, "/") {
		return false
	}
	p := path.Join("/", dir)
	depth := 0
	if p != "/" {
		depth = strings.Count(p, "/")
	}
	for _, part := range strings.Split(target, "/") {
		switch part {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}
