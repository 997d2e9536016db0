// Package unpack applies OCI image layers to a directory, safely: it is how
// the device turns a pulled bootable image into a tree it can commit.
//
// Layers are hostile until proven otherwise, so every entry is checked:
//
//   - Names are cleaned; absolute names and ".." components are refused
//     (ErrUnsafe).
//   - Nothing is ever written through a symlink: every parent component of
//     an entry (and of a hardlink target and a whiteout) must be a real
//     directory, so a symlink planted by an earlier layer cannot redirect a
//     later one. All access also goes through os.Root, which refuses any
//     path leaving the destination even under a race.
//   - Relative symlinks whose target climbs above the root are refused;
//     absolute ones are normal in an OS tree (they resolve inside the
//     deployment) and kept, since nothing here follows them.
//   - Hardlinks may only name a regular file already unpacked (this layer
//     or an earlier one) inside the root.
//   - Device nodes and FIFOs are refused (ErrSpecial), or skipped with a
//     note under Options.SkipSpecial: OSTree cannot store them and an OS
//     image has no business carrying them.
//   - Setuid and setgid bits on files, and the security.capability
//     attribute, are kept only with Options.KeepSetID and only on files
//     owned by uid 0; otherwise they are stripped with a note. Callers set
//     KeepSetID only for images whose signature has been checked (an OS
//     needs a setuid su and passwd). Directory bits (setgid, sticky) are
//     kept: they grant nothing.
//   - Ownership and extended attributes other than user.* are applied only
//     when running as root (they cannot be otherwise); modification times
//     are not kept (OSTree does not store them).
//   - Decompressed bytes over all layers and the number of entries are
//     bounded (Options.MaxBytes, MaxEntries), so a decompression bomb stops
//     with ErrTooLarge.
//   - Whiteouts (".wh.NAME") and opaque markers (".wh..wh..opq") remove what
//     lower layers put there, never what the same layer added.
//
// Each layer's digest (of the compressed blob) and diff_id (of the tar
// stream) are computed while streaming and compared at the end
// (ErrDigest). Since the comparison comes after the entries are written,
// the destination must be a private staging directory that the caller
// throws away on any error; nothing in it is trustworthy until Apply and
// Finish have returned nil.
//
// This is hand-written rather than taken from containers/storage or
// umoci: those unpack into a container store or assume trusted input, and
// we need os.Root, the setid policy and streaming verification in one
// small place.
package unpack

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Errors callers decide on; returned errors wrap them with the entry name.
var (
	ErrUnsafe      = errors.New("unsafe layer entry")
	ErrSpecial     = errors.New("device node or FIFO in layer")
	ErrTooLarge    = errors.New("layer too large")
	ErrDigest      = errors.New("layer digest mismatch")
	ErrUnsupported = errors.New("unsupported layer")
)

// errMissing: a parent directory does not exist (wrapped with ErrUnsafe
// where that is an error).
var errMissing = errors.New("missing directory")

// Defaults for zero Options fields.
const (
	DefaultMaxBytes   = 64 << 30
	DefaultMaxEntries = 2_000_000
	maxNotes          = 50
)

// Options tunes an Unpacker.
type Options struct {
	// MaxBytes bounds the decompressed bytes of all layers together.
	MaxBytes int64
	// MaxEntries bounds the tar entries of all layers together.
	MaxEntries int
	// KeepSetID keeps setuid/setgid bits and security.capability on files
	// owned by uid 0 (see the package doc).
	KeepSetID bool
	// SkipSpecial skips device nodes and FIFOs with a note instead of
	// failing.
	SkipSpecial bool
	// NoOwners does not apply ownership even when running as root.
	NoOwners bool
}

// Stats counts what was unpacked.
type Stats struct {
	Files, Dirs, Symlinks, Hardlinks, Whiteouts int
	Bytes                                       int64 // regular file content
	// Notes say what was changed or skipped (stripped setid bits, skipped
	// attributes or special files); at most 50 are kept.
	Notes []string
	// Dropped counts notes beyond that.
	Dropped int
}

type dirMeta struct {
	uid, gid int
	mode     os.FileMode
}

// Unpacker applies layers, lowest first, to one destination directory.
type Unpacker struct {
	root   *os.Root
	opts   Options
	owners bool
	total  int64
	count  int
	// dirs holds directory metadata applied by Finish (a directory made
	// read-only early would block later entries).
	dirs map[string]dirMeta
	// real caches paths known to be real directories (not symlinks).
	real map[string]bool
	// layer holds the paths the current layer created; its whiteouts
	// spare them.
	layer map[string]bool
	stats Stats
}

// New opens dest, an existing directory, for unpacking. Its own metadata
// becomes 0755 root:root (when running as root) unless a layer carries an
// entry for "." saying otherwise.
func New(dest string, opts Options) (*Unpacker, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	r, err := os.OpenRoot(dest)
	if err != nil {
		return nil, fmt.Errorf("unpack: %w", err)
	}
	return &Unpacker{
		root:   r,
		opts:   opts,
		owners: os.Geteuid() == 0 && !opts.NoOwners,
		dirs:   map[string]dirMeta{".": {mode: 0o755}},
		real:   map[string]bool{".": true},
	}, nil
}

// Close releases the destination; it does not apply pending metadata.
func (u *Unpacker) Close() error { return u.root.Close() }

func (u *Unpacker) note(format string, args ...any) {
	if len(u.stats.Notes) >= maxNotes {
		u.stats.Dropped++
		return
	}
	u.stats.Notes = append(u.stats.Notes, fmt.Sprintf(format, args...))
}

// limitReader fails with ErrTooLarge past the remaining budget.
type limitReader struct {
	r     io.Reader
	left  *int64
	limit int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	*l.left -= int64(n)
	if *l.left < 0 {
		return n, fmt.Errorf("%w: more than %d bytes decompressed", ErrTooLarge, l.limit)
	}
	return n, err
}

// Apply unpacks one layer read from blob (the blob as stored: compressed
// per desc.MediaType) and checks its digest against desc.Digest (and size
// against desc.Size when positive) and the tar stream against diffID.
func (u *Unpacker) Apply(ctx context.Context, blob io.Reader, desc v1.Descriptor, diffID digest.Digest) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("layer %s: %w", desc.Digest, err)
		}
	}()
	if err := desc.Digest.Validate(); err != nil {
		return fmt.Errorf("%w: digest: %v", ErrUnsupported, err)
	}
	if err := diffID.Validate(); err != nil {
		return fmt.Errorf("%w: diff_id: %v", ErrUnsupported, err)
	}
	if desc.Size > 0 {
		blob = io.LimitReader(blob, desc.Size+1)
	}
	blobDigester := desc.Digest.Algorithm().Digester()
	counted := &countReader{r: io.TeeReader(blob, blobDigester.Hash())}

	var plain io.Reader
	switch desc.MediaType {
	case v1.MediaTypeImageLayer, "application/vnd.docker.image.rootfs.diff.tar":
		plain = counted
	case v1.MediaTypeImageLayerGzip, "application/vnd.docker.image.rootfs.diff.tar.gzip":
		zr, err := gzip.NewReader(counted)
		if err != nil {
			return fmt.Errorf("%w: gzip: %v", ErrDigest, err)
		}
		defer zr.Close()
		plain = zr
	case v1.MediaTypeImageLayerZstd:
		zr, err := zstd.NewReader(counted, zstd.WithDecoderMaxMemory(512<<20), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		plain = zr
	default:
		return fmt.Errorf("%w: media type %q", ErrUnsupported, desc.MediaType)
	}
	left := u.opts.MaxBytes - u.total
	start := left
	diffDigester := diffID.Algorithm().Digester()
	limited := &limitReader{r: plain, left: &left, limit: u.opts.MaxBytes}
	stream := io.TeeReader(limited, diffDigester.Hash())
	defer func() { u.total += start - left }()

	u.layer = map[string]bool{}
	tr := tar.NewReader(stream)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, ErrTooLarge) {
				return err
			}
			return fmt.Errorf("%w: tar: %v", ErrUnsafe, err)
		}
		u.count++
		if u.count > u.opts.MaxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrTooLarge, u.opts.MaxEntries)
		}
		if err := u.entry(hdr, tr); err != nil {
			return err
		}
	}
	// The diff_id covers the whole stream, padding after the end marker
	// included; the digest covers the whole blob.
	if _, err := io.Copy(io.Discard, stream); err != nil {
		if errors.Is(err, ErrTooLarge) {
			return err
		}
		return fmt.Errorf("%w: decompressing: %v", ErrDigest, err)
	}
	if got := diffDigester.Digest(); got != diffID {
		return fmt.Errorf("%w: diff_id is %s, config says %s", ErrDigest, got, diffID)
	}
	if _, err := io.Copy(io.Discard, counted); err != nil {
		return fmt.Errorf("reading blob: %w", err)
	}
	if desc.Size > 0 && counted.n != desc.Size {
		return fmt.Errorf("%w: blob has %d bytes, manifest says %d", ErrDigest, counted.n, desc.Size)
	}
	if got := blobDigester.Digest(); got != desc.Digest {
		return fmt.Errorf("%w: blob digest is %s", ErrDigest, got)
	}
	return nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// cleanName splits a tar name into components; "." and "./" give none.
func cleanName(name string) ([]string, error) {
	if name == "" {
		return nil, fmt.Errorf("%w: empty name", ErrUnsafe)
	}
	if strings.HasPrefix(name, "/") {
		return nil, fmt.Errorf("%w: absolute name %q", ErrUnsafe, short(name))
	}
	if strings.IndexByte(name, 0) >= 0 || len(name) > 4096 {
		return nil, fmt.Errorf("%w: bad name %q", ErrUnsafe, short(name))
	}
	var parts []string
	for _, p := range strings.Split(name, "/") {
		switch p {
		case "", ".":
			continue
		case "..":
			return nil, fmt.Errorf("%w: %q has a .. component", ErrUnsafe, short(name))
		}
		if len(p) > 255 {
			return nil, fmt.Errorf("%w: component of %q longer than 255 bytes", ErrUnsafe, short(name))
		}
		parts = append(parts, p)
	}
	return parts, nil
}

func short(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

func join(parts []string) string {
	if len(parts) == 0 {
		return "."
	}
	return strings.Join(parts, "/")
}

// dirsOf makes sure every prefix of parts is a real directory, creating
// missing ones (0755) when create is set. A symlink or file in the way is
// ErrUnsafe: nothing is written through a symlink.
func (u *Unpacker) dirsOf(parts []string, create bool) error {
	for i := range parts {
		p := join(parts[:i+1])
		if u.real[p] {
			continue
		}
		fi, err := u.root.Lstat(p)
		switch {
		case errors.Is(err, os.ErrNotExist) && create:
			if err := u.root.Mkdir(p, 0o700); err != nil {
				return fmt.Errorf("creating %s: %w", p, err)
			}
			u.dirs[p] = dirMeta{mode: 0o755}
			u.layer[p] = true
		case errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("%w: %w: %s", ErrUnsafe, errMissing, p)
		case err != nil:
			return fmt.Errorf("%w: %s: %v", ErrUnsafe, p, err)
		case fi.Mode()&os.ModeSymlink != 0:
			return fmt.Errorf("%w: %s is a symlink; nothing is written through one", ErrUnsafe, p)
		case !fi.IsDir():
			return fmt.Errorf("%w: %s is not a directory", ErrUnsafe, p)
		}
		u.real[p] = true
	}
	return nil
}

// forget drops cached state for p and everything below it.
func (u *Unpacker) forget(p string) {
	prefix := p + "/"
	for k := range u.real {
		if k == p || strings.HasPrefix(k, prefix) {
			delete(u.real, k)
		}
	}
	for k := range u.dirs {
		if k == p || strings.HasPrefix(k, prefix) {
			delete(u.dirs, k)
		}
	}
}

// remove deletes whatever is at p (never following a symlink).
func (u *Unpacker) remove(p string) error {
	fi, err := u.root.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if fi.IsDir() {
		u.forget(p)
		err = u.root.RemoveAll(p)
	} else {
		err = u.root.Remove(p)
	}
	if err != nil {
		return fmt.Errorf("replacing %s: %w", p, err)
	}
	return nil
}

// fileMode converts tar permission bits to an os.FileMode.
func fileMode(perm int64) os.FileMode {
	m := os.FileMode(perm & 0o777)
	if perm&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if perm&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if perm&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m
}

func (u *Unpacker) entry(hdr *tar.Header, body io.Reader) error {
	parts, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid > 1<<31 || hdr.Gid > 1<<31 {
		return fmt.Errorf("%w: %s: bad owner %d:%d", ErrUnsafe, short(hdr.Name), hdr.Uid, hdr.Gid)
	}
	if len(parts) == 0 {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: the root entry is not a directory", ErrUnsafe)
		}
		u.dirs["."] = dirMeta{uid: hdr.Uid, gid: hdr.Gid, mode: fileMode(hdr.Mode)}
		return nil
	}
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	parent, base := parts[:len(parts)-1], parts[len(parts)-1]
	name := join(parts)
	if strings.HasPrefix(base, ".wh.") {
		err := u.dirsOf(parent, false)
		if errors.Is(err, errMissing) {
			u.stats.Whiteouts++
			return nil // nothing below a missing directory to hide
		}
		if err != nil {
			return err
		}
		return u.whiteout(parent, base)
	}
	if err := u.dirsOf(parent, true); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		fi, err := u.root.Lstat(name)
		if err == nil && !fi.IsDir() {
			if err := u.remove(name); err != nil {
				return err
			}
		}
		if err != nil || !fi.IsDir() {
			if err := u.root.Mkdir(name, 0o700); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		u.real[name] = true
		u.dirs[name] = dirMeta{uid: hdr.Uid, gid: hdr.Gid, mode: fileMode(hdr.Mode)}
		u.layer[name] = true
		u.stats.Dirs++
		return u.xattrs(name, hdr)
	case tar.TypeReg, tar.TypeGNUSparse:
		return u.regular(name, hdr, body)
	case tar.TypeSymlink:
		t := hdr.Linkname
		if t == "" || strings.IndexByte(t, 0) >= 0 || len(t) > 4096 {
			return fmt.Errorf("%w: symlink %s has a bad target", ErrUnsafe, name)
		}
		if escapes(path.Dir(name), t) {
			return fmt.Errorf("%w: symlink %s -> %q climbs above the root", ErrUnsafe, name, short(t))
		}
		if err := u.remove(name); err != nil {
			return err
		}
		if err := u.root.Symlink(t, name); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if u.owners {
			if err := u.root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		u.layer[name] = true
		u.stats.Symlinks++
		return u.xattrs(name, hdr)
	case tar.TypeLink:
		tparts, err := cleanName(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hardlink %s: %w", name, err)
		}
		if len(tparts) == 0 {
			return fmt.Errorf("%w: hardlink %s to the root", ErrUnsafe, name)
		}
		target := join(tparts)
		if target == name {
			return fmt.Errorf("%w: hardlink %s to itself", ErrUnsafe, name)
		}
		if err := u.dirsOf(tparts[:len(tparts)-1], false); err != nil {
			return fmt.Errorf("hardlink %s: %w", name, err)
		}
		fi, err := u.root.Lstat(target)
		if err != nil || !fi.Mode().IsRegular() {
			return fmt.Errorf("%w: hardlink %s -> %q names no unpacked regular file", ErrUnsafe, name, short(hdr.Linkname))
		}
		if err := u.remove(name); err != nil {
			return err
		}
		if err := u.root.Link(target, name); err != nil {
			return fmt.Errorf("hardlink %s: %w", name, err)
		}
		u.layer[name] = true
		u.stats.Hardlinks++
		return nil
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if u.opts.SkipSpecial {
			u.note("skipped device node or FIFO %s", name)
			return nil
		}
		return fmt.Errorf("%w: %s", ErrSpecial, name)
	default:
		return fmt.Errorf("%w: %s has entry type %q", ErrUnsupported, name, hdr.Typeflag)
	}
}

// escapes reports whether a relative symlink target, resolved lexically
// from dir (relative to the root), climbs above the root.
func escapes(dir, target string) bool {
	if strings.HasPrefix(target, "/") {
		return false
	}
	depth := 0
	if dir != "." {
		depth = strings.Count(dir, "/") + 1
	}
	for _, p := range strings.Split(target, "/") {
		switch p {
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

func (u *Unpacker) regular(name string, hdr *tar.Header, body io.Reader) error {
	if hdr.Size < 0 {
		return fmt.Errorf("%w: %s has a negative size", ErrUnsafe, name)
	}
	if err := u.remove(name); err != nil {
		return err
	}
	f, err := u.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	n, err := io.Copy(f, body)
	if err == nil && n != hdr.Size {
		err = fmt.Errorf("%w: %s: %d of %d bytes", ErrUnsafe, name, n, hdr.Size)
	}
	mode := fileMode(hdr.Mode)
	if setid := mode & (os.ModeSetuid | os.ModeSetgid); setid != 0 && !(u.opts.KeepSetID && hdr.Uid == 0) {
		mode &^= setid
		u.note("removed setuid/setgid bits from %s", name)
	}
	if err == nil && u.owners {
		err = f.Chown(hdr.Uid, hdr.Gid) // before chmod: chown clears setid bits
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = u.setXattrs(name, hdr, func(k string, v []byte) error { return unix.Fsetxattr(int(f.Fd()), k, v, 0) })
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		if errors.Is(err, ErrTooLarge) || errors.Is(err, ErrUnsafe) {
			return fmt.Errorf("%s: %w", name, err)
		}
		return fmt.Errorf("writing %s: %w", name, err)
	}
	u.layer[name] = true
	u.stats.Files++
	u.stats.Bytes += n
	return nil
}

// xattrs applies hdr's extended attributes to a directory or symlink.
func (u *Unpacker) xattrs(name string, hdr *tar.Header) error {
	if len(hdr.PAXRecords) == 0 {
		return nil
	}
	dir, base := path.Split(name)
	if dir == "" {
		dir = "."
	}
	d, err := u.root.Open(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer d.Close()
	// Lsetxattr through the parent's descriptor: the final component is
	// not followed, the parent was checked to be a real directory.
	p := "/proc/self/fd/" + strconv.Itoa(int(d.Fd())) + "/" + base
	return u.setXattrs(name, hdr, func(k string, v []byte) error { return unix.Lsetxattr(p, k, v, 0) })
}

// setXattrs applies the PAX "SCHILY.xattr." records that policy allows.
func (u *Unpacker) setXattrs(name string, hdr *tar.Header, set func(string, []byte) error) error {
	var keys []string
	for k := range hdr.PAXRecords {
		if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && x != "" {
			keys = append(keys, x)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := []byte(hdr.PAXRecords["SCHILY.xattr."+k])
		switch {
		case k == "security.capability" && !(u.opts.KeepSetID && hdr.Uid == 0 && hdr.Typeflag == tar.TypeReg):
			u.note("removed file capabilities from %s", name)
			continue
		case !u.owners && !strings.HasPrefix(k, "user."):
			u.note("skipped attribute %s of %s (not running as root)", k, name)
			continue
		}
		if err := set(k, v); err != nil {
			return fmt.Errorf("%s: attribute %s: %w", name, k, err)
		}
	}
	return nil
}

// whiteout applies ".wh.NAME" or the opaque marker in directory parent.
func (u *Unpacker) whiteout(parent []string, base string) error {
	dir := join(parent)
	u.stats.Whiteouts++
	if base == ".wh..wh..opq" {
		d, err := u.root.Open(dir)
		if err != nil {
			return fmt.Errorf("opaque %s: %w", dir, err)
		}
		ents, err := d.ReadDir(-1)
		d.Close()
		if err != nil {
			return fmt.Errorf("opaque %s: %w", dir, err)
		}
		for _, e := range ents {
			p := join(append(parent[:len(parent):len(parent)], e.Name()))
			if !u.layer[p] {
				if err := u.remove(p); err != nil {
					return err
				}
			}
		}
		return nil
	}
	target := strings.TrimPrefix(base, ".wh.")
	if target == "" || target == "." || strings.HasPrefix(target, ".wh.") {
		return fmt.Errorf("%w: whiteout %s/%s", ErrUnsupported, dir, base)
	}
	p := join(append(parent[:len(parent):len(parent)], target))
	if u.layer[p] {
		return nil // whiteouts hide lower layers only
	}
	return u.remove(p)
}

// Finish applies the directory metadata (deepest first) and closes the
// destination. The Unpacker cannot be used afterwards.
func (u *Unpacker) Finish() (Stats, error) {
	defer u.root.Close()
	paths := make([]string, 0, len(u.dirs))
	for p := range u.dirs {
		paths = append(paths, p)
	}
	depth := func(p string) int {
		if p == "." {
			return 0
		}
		return strings.Count(p, "/") + 1
	}
	sort.Slice(paths, func(i, j int) bool {
		if di, dj := depth(paths[i]), depth(paths[j]); di != dj {
			return di > dj
		}
		return paths[i] < paths[j]
	})
	for _, p := range paths {
		m := u.dirs[p]
		fi, err := u.root.Lstat(p)
		if err != nil || !fi.IsDir() {
			return u.stats, fmt.Errorf("%w: %s is no longer a directory", ErrUnsafe, p)
		}
		if u.owners {
			if err := u.root.Lchown(p, m.uid, m.gid); err != nil {
				return u.stats, fmt.Errorf("%s: %w", p, err)
			}
		}
		if err := u.root.Chmod(p, m.mode); err != nil {
			return u.stats, fmt.Errorf("%s: %w", p, err)
		}
	}
	return u.stats, nil
}
