package ostree

import (
	"bytes"
	"fmt"
	"math/bits"
	"sort"
	"time"

	"github.com/mxos-linux/mxos-update/internal/gvariant"
)

// GVariant type strings of the objects (libostree ostree-core.h).
const (
	CommitType      = "(a{sv}aya(say)sstayay)"
	DirTreeType     = "(a(say)a(sayay))"
	DirMetaType     = "(uuua(ayay))"
	FileHeaderType  = "(uuuusa(ayay))"
	ArchiveHeadType = "(tuuuusa(ayay))"
	MetadataType    = "a{sv}"
	SummaryType     = "(a(s(taya{sv}))a{sv})"
)

// File type bits of st_mode.
const (
	ModeTypeMask = 0o170000
	ModeDir      = 0o040000
	ModeRegular  = 0o100000
	ModeSymlink  = 0o120000
)

// OSTree stores most integers big-endian inside little-endian GVariants.
func be32(v uint32) uint32 { return bits.ReverseBytes32(v) }
func be64(v uint64) uint64 { return bits.ReverseBytes64(v) }

// Xattr is one extended attribute. Name is stored without its trailing NUL.
type Xattr struct {
	Name  string
	Value []byte
}

// sortXattrs puts xattrs in the canonical order ostree hashes them in.
func sortXattrs(x []Xattr) {
	sort.Slice(x, func(i, j int) bool { return x[i].Name < x[j].Name })
}

func xattrsToGV(x []Xattr) []any {
	out := make([]any, len(x))
	for i, a := range x {
		name := make([]byte, len(a.Name)+1)
		copy(name, a.Name)
		v := a.Value
		if v == nil {
			v = []byte{}
		}
		out[i] = []any{name, v}
	}
	return out
}

func xattrsFromGV(v any) ([]Xattr, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: xattrs are not an array", ErrCorrupt)
	}
	out := make([]Xattr, 0, len(arr))
	for _, e := range arr {
		t, ok := e.([]any)
		if !ok || len(t) != 2 {
			return nil, fmt.Errorf("%w: bad xattr entry", ErrCorrupt)
		}
		name, _ := t[0].([]byte)
		val, _ := t[1].([]byte)
		if len(name) < 2 || name[len(name)-1] != 0 || bytes.IndexByte(name[:len(name)-1], 0) >= 0 {
			return nil, fmt.Errorf("%w: xattr name is not a NUL-terminated string", ErrCorrupt)
		}
		out = append(out, Xattr{Name: string(name[:len(name)-1]), Value: val})
	}
	for i := 1; i < len(out); i++ {
		if out[i-1].Name >= out[i].Name {
			return nil, fmt.Errorf("%w: xattrs not sorted or duplicated (%q)", ErrCorrupt, out[i].Name)
		}
	}
	return out, nil
}

// DirMeta is a directory's ownership, mode and xattrs.
type DirMeta struct {
	UID, GID, Mode uint32
	Xattrs         []Xattr
}

// Marshal returns the dirmeta object bytes.
func (m *DirMeta) Marshal() ([]byte, error) {
	x := append([]Xattr(nil), m.Xattrs...)
	sortXattrs(x)
	return gvariant.Marshal(DirMetaType, []any{be32(m.UID), be32(m.GID), be32(m.Mode), xattrsToGV(x)})
}

// ParseDirMeta decodes and validates a dirmeta object.
func ParseDirMeta(b []byte) (*DirMeta, error) {
	v, err := gvariant.Unmarshal(DirMetaType, b)
	if err != nil {
		return nil, fmt.Errorf("%w: dirmeta: %v", ErrCorrupt, err)
	}
	t := v.([]any)
	x, err := xattrsFromGV(t[3])
	if err != nil {
		return nil, err
	}
	m := &DirMeta{UID: be32(t[0].(uint32)), GID: be32(t[1].(uint32)), Mode: be32(t[2].(uint32)), Xattrs: x}
	if m.Mode&ModeTypeMask != ModeDir || m.Mode&^(ModeTypeMask|0o7777) != 0 {
		return nil, fmt.Errorf("%w: dirmeta mode %o is not a directory mode", ErrCorrupt, m.Mode)
	}
	return m, nil
}

// TreeFile is a file entry of a dirtree.
type TreeFile struct {
	Name     string
	Checksum Checksum
}

// TreeDir is a subdirectory entry of a dirtree.
type TreeDir struct {
	Name string
	Tree Checksum
	Meta Checksum
}

// DirTree lists a directory's entries, each array sorted by name.
type DirTree struct {
	Files []TreeFile
	Dirs  []TreeDir
}

// Marshal sorts the entries and returns the dirtree object bytes.
func (d *DirTree) Marshal() ([]byte, error) {
	sort.Slice(d.Files, func(i, j int) bool { return d.Files[i].Name < d.Files[j].Name })
	sort.Slice(d.Dirs, func(i, j int) bool { return d.Dirs[i].Name < d.Dirs[j].Name })
	files := make([]any, len(d.Files))
	for i, f := range d.Files {
		if err := ValidateFilename(f.Name); err != nil {
			return nil, err
		}
		c := f.Checksum
		files[i] = []any{f.Name, c[:]}
	}
	dirs := make([]any, len(d.Dirs))
	for i, e := range d.Dirs {
		if err := ValidateFilename(e.Name); err != nil {
			return nil, err
		}
		t, m := e.Tree, e.Meta
		dirs[i] = []any{e.Name, t[:], m[:]}
	}
	return gvariant.Marshal(DirTreeType, []any{files, dirs})
}

// ParseDirTree decodes a dirtree and validates every name: a hostile tree
// cannot name "..", contain '/', repeat a name or be unsorted.
func ParseDirTree(b []byte) (*DirTree, error) {
	v, err := gvariant.Unmarshal(DirTreeType, b)
	if err != nil {
		return nil, fmt.Errorf("%w: dirtree: %v", ErrCorrupt, err)
	}
	t := v.([]any)
	fa, da := t[0].([]any), t[1].([]any)
	d := &DirTree{Files: make([]TreeFile, len(fa)), Dirs: make([]TreeDir, len(da))}
	seen := make(map[string]struct{}, len(fa)+len(da))
	for i, e := range fa {
		f := e.([]any)
		name := f[0].(string)
		if err := ValidateFilename(name); err != nil {
			return nil, fmt.Errorf("dirtree: %w", err)
		}
		c, err := checksumFromBytes(f[1].([]byte))
		if err != nil {
			return nil, err
		}
		if i > 0 && d.Files[i-1].Name >= name {
			return nil, fmt.Errorf("%w: dirtree files not sorted at %q", ErrCorrupt, name)
		}
		d.Files[i] = TreeFile{Name: name, Checksum: c}
		seen[name] = struct{}{}
	}
	for i, e := range da {
		f := e.([]any)
		name := f[0].(string)
		if err := ValidateFilename(name); err != nil {
			return nil, fmt.Errorf("dirtree: %w", err)
		}
		tc, err := checksumFromBytes(f[1].([]byte))
		if err != nil {
			return nil, err
		}
		mc, err := checksumFromBytes(f[2].([]byte))
		if err != nil {
			return nil, err
		}
		if i > 0 && d.Dirs[i-1].Name >= name {
			return nil, fmt.Errorf("%w: dirtree dirs not sorted at %q", ErrCorrupt, name)
		}
		if _, dup := seen[name]; dup {
			return nil, fmt.Errorf("%w: dirtree names %q twice", ErrCorrupt, name)
		}
		d.Dirs[i] = TreeDir{Name: name, Tree: tc, Meta: mc}
	}
	return d, nil
}

// Metadata is an a{sv} dictionary, kept in order.
type Metadata []gvariant.DictEntry

// Lookup returns the variant stored under key.
func (m Metadata) Lookup(key string) (gvariant.Variant, bool) {
	for _, e := range m {
		if k, ok := e.Key.(string); ok && k == key {
			if v, ok := e.Value.(gvariant.Variant); ok {
				return v, true
			}
		}
	}
	return gvariant.Variant{}, false
}

// String returns the value of a string entry.
func (m Metadata) String(key string) (string, bool) {
	v, ok := m.Lookup(key)
	if !ok || v.Type != "s" {
		return "", false
	}
	s, ok := v.Value.(string)
	return s, ok
}

// Strings returns the value of an "as" entry.
func (m Metadata) Strings(key string) ([]string, bool) {
	v, ok := m.Lookup(key)
	if !ok || v.Type != "as" {
		return nil, false
	}
	arr, _ := v.Value.([]any)
	out := make([]string, 0, len(arr))
	for _, e := range arr {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out, true
}

// ByteArrays returns the value of an "aay" entry, like signature lists.
func (m Metadata) ByteArrays(key string) ([][]byte, bool) {
	v, ok := m.Lookup(key)
	if !ok || v.Type != "aay" {
		return nil, false
	}
	arr, _ := v.Value.([]any)
	out := make([][]byte, 0, len(arr))
	for _, e := range arr {
		b, _ := e.([]byte)
		out = append(out, b)
	}
	return out, true
}

// Set replaces or appends key.
func (m Metadata) Set(key string, v gvariant.Variant) Metadata {
	for i, e := range m {
		if k, ok := e.Key.(string); ok && k == key {
			m[i].Value = v
			return m
		}
	}
	return append(m, gvariant.DictEntry{Key: key, Value: v})
}

// Delete removes key.
func (m Metadata) Delete(key string) Metadata {
	out := m[:0]
	for _, e := range m {
		if k, ok := e.Key.(string); ok && k == key {
			continue
		}
		out = append(out, e)
	}
	return out
}

// StringVar, StringsVar, BytesListVar and Uint64BEVar build the variants
// ostree metadata uses.
func StringVar(s string) gvariant.Variant { return gvariant.Variant{Type: "s", Value: s} }

// StringsVar is an "as" variant.
func StringsVar(ss []string) gvariant.Variant {
	arr := make([]any, len(ss))
	for i, s := range ss {
		arr[i] = s
	}
	return gvariant.Variant{Type: "as", Value: arr}
}

// BytesListVar is an "aay" variant.
func BytesListVar(bs [][]byte) gvariant.Variant {
	arr := make([]any, len(bs))
	for i, b := range bs {
		arr[i] = b
	}
	return gvariant.Variant{Type: "aay", Value: arr}
}

// Uint64BEVar is a "t" variant stored big-endian, as ostree does for times.
func Uint64BEVar(v uint64) gvariant.Variant { return gvariant.Variant{Type: "t", Value: be64(v)} }

// MarshalMetadata encodes an a{sv}.
func MarshalMetadata(m Metadata) ([]byte, error) {
	if m == nil {
		m = Metadata{}
	}
	return gvariant.Marshal(MetadataType, []gvariant.DictEntry(m))
}

// ParseMetadata decodes an a{sv}.
func ParseMetadata(b []byte) (Metadata, error) {
	v, err := gvariant.Unmarshal(MetadataType, b)
	if err != nil {
		return nil, fmt.Errorf("%w: metadata: %v", ErrCorrupt, err)
	}
	return Metadata(v.([]gvariant.DictEntry)), nil
}

// Well-known commit metadata keys.
const (
	MetaVersion    = "version"
	MetaRefBinding = "ostree.ref-binding"
)

// Commit is a commit object.
type Commit struct {
	Metadata  Metadata
	Parent    Checksum // zero when there is none
	Subject   string
	Body      string
	Timestamp uint64 // seconds since the epoch
	RootTree  Checksum
	RootMeta  Checksum
}

// Time returns the commit timestamp.
func (c *Commit) Time() time.Time { return time.Unix(int64(c.Timestamp), 0).UTC() }

// Version returns the "version" metadata string.
func (c *Commit) Version() string { v, _ := c.Metadata.String(MetaVersion); return v }

// RefBindings returns the refs the commit may be published under.
func (c *Commit) RefBindings() []string { v, _ := c.Metadata.Strings(MetaRefBinding); return v }

// Marshal returns the commit object bytes.
func (c *Commit) Marshal() ([]byte, error) {
	md := c.Metadata
	if md == nil {
		md = Metadata{}
	}
	parent := []byte{}
	if !c.Parent.IsZero() {
		parent = append(parent, c.Parent[:]...)
	}
	rt, rm := c.RootTree, c.RootMeta
	return gvariant.Marshal(CommitType, []any{
		[]gvariant.DictEntry(md), parent, []any{}, c.Subject, c.Body, be64(c.Timestamp), rt[:], rm[:],
	})
}

// ParseCommit decodes and validates a commit object.
func ParseCommit(b []byte) (*Commit, error) {
	v, err := gvariant.Unmarshal(CommitType, b)
	if err != nil {
		return nil, fmt.Errorf("%w: commit: %v", ErrCorrupt, err)
	}
	t := v.([]any)
	c := &Commit{
		Metadata:  Metadata(t[0].([]gvariant.DictEntry)),
		Subject:   t[3].(string),
		Body:      t[4].(string),
		Timestamp: be64(t[5].(uint64)),
	}
	if p := t[1].([]byte); len(p) != 0 {
		if c.Parent, err = checksumFromBytes(p); err != nil {
			return nil, fmt.Errorf("commit parent: %w", err)
		}
	}
	if c.RootTree, err = checksumFromBytes(t[6].([]byte)); err != nil {
		return nil, fmt.Errorf("commit root tree: %w", err)
	}
	if c.RootMeta, err = checksumFromBytes(t[7].([]byte)); err != nil {
		return nil, fmt.Errorf("commit root meta: %w", err)
	}
	return c, nil
}

// FileHeader describes a content object: ownership, mode, symlink target
// and xattrs. Size is only stored in the archive form.
type FileHeader struct {
	UID, GID, Mode uint32
	Rdev           uint32
	SymlinkTarget  string
	Xattrs         []Xattr
	Size           uint64
}

// IsSymlink reports whether the header describes a symlink.
func (h *FileHeader) IsSymlink() bool { return h.Mode&ModeTypeMask == ModeSymlink }

func (h *FileHeader) validate() error {
	switch h.Mode & ModeTypeMask {
	case ModeRegular:
		if h.SymlinkTarget != "" {
			return fmt.Errorf("%w: regular file with a symlink target", ErrCorrupt)
		}
	case ModeSymlink:
		if h.SymlinkTarget == "" {
			return fmt.Errorf("%w: symlink without a target", ErrCorrupt)
		}
		if h.Size != 0 {
			return fmt.Errorf("%w: symlink with content", ErrCorrupt)
		}
	default:
		return fmt.Errorf("%w: content mode %o is not a regular file or symlink", ErrCorrupt, h.Mode)
	}
	if h.Mode&^(ModeTypeMask|0o7777) != 0 {
		return fmt.Errorf("%w: content mode %o has unknown bits", ErrCorrupt, h.Mode)
	}
	if h.Rdev != 0 {
		return fmt.Errorf("%w: content rdev %d is not 0", ErrCorrupt, h.Rdev)
	}
	return nil
}

func (h *FileHeader) sortedXattrs() []any {
	x := append([]Xattr(nil), h.Xattrs...)
	sortXattrs(x)
	return xattrsToGV(x)
}

// MarshalChecksumHeader returns the (uuuusa(ayay)) header hashed into the
// content checksum.
func (h *FileHeader) MarshalChecksumHeader() ([]byte, error) {
	return gvariant.Marshal(FileHeaderType, []any{be32(h.UID), be32(h.GID), be32(h.Mode), h.Rdev, h.SymlinkTarget, h.sortedXattrs()})
}

// MarshalArchiveHeader returns the (tuuuusa(ayay)) header of a .filez object.
func (h *FileHeader) MarshalArchiveHeader() ([]byte, error) {
	return gvariant.Marshal(ArchiveHeadType, []any{be64(h.Size), be32(h.UID), be32(h.GID), be32(h.Mode), h.Rdev, h.SymlinkTarget, h.sortedXattrs()})
}

// ParseArchiveHeader decodes the header of a .filez object.
func ParseArchiveHeader(b []byte) (*FileHeader, error) {
	v, err := gvariant.Unmarshal(ArchiveHeadType, b)
	if err != nil {
		return nil, fmt.Errorf("%w: file header: %v", ErrCorrupt, err)
	}
	t := v.([]any)
	x, err := xattrsFromGV(t[6])
	if err != nil {
		return nil, err
	}
	h := &FileHeader{
		Size: be64(t[0].(uint64)), UID: be32(t[1].(uint32)), GID: be32(t[2].(uint32)), Mode: be32(t[3].(uint32)),
		Rdev: t[4].(uint32), SymlinkTarget: t[5].(string), Xattrs: x,
	}
	if err := h.validate(); err != nil {
		return nil, err
	}
	return h, nil
}
