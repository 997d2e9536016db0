package bootimage

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"

	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// entry is one path of the tree, in walk order (parents first, names
// sorted within a directory).
type entry struct {
	path string // relative, no leading or trailing slash
	dir  *ostree.DirMeta
	file ostree.Checksum // content object, when dir is nil
}

// walkTree lists the tree below the root (the root itself is left out).
func walkTree(ctx context.Context, repo *ostree.Repo, tree, meta ostree.Checksum) ([]entry, error) {
	var out []entry
	metas := map[ostree.Checksum]*ostree.DirMeta{}
	var walk func(rel string, tree ostree.Checksum) error
	walk = func(rel string, tree ostree.Checksum) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		dt, err := repo.ReadDirTree(tree)
		if err != nil {
			return err
		}
		// Merge files and directories by name: one sorted listing.
		fi, di := 0, 0
		for fi < len(dt.Files) || di < len(dt.Dirs) {
			if di >= len(dt.Dirs) || (fi < len(dt.Files) && dt.Files[fi].Name < dt.Dirs[di].Name) {
				f := dt.Files[fi]
				fi++
				out = append(out, entry{path: path.Join(rel, f.Name), file: f.Checksum})
				continue
			}
			d := dt.Dirs[di]
			di++
			dm, ok := metas[d.Meta]
			if !ok {
				if dm, err = repo.ReadDirMeta(d.Meta); err != nil {
					return err
				}
				metas[d.Meta] = dm
			}
			p := path.Join(rel, d.Name)
			out = append(out, entry{path: p, dir: dm})
			if err := walk(p, d.Tree); err != nil {
				return err
			}
		}
		return nil
	}
	if _, err := repo.ReadDirMeta(meta); err != nil {
		return nil, err
	}
	if err := walk("", tree); err != nil {
		return nil, err
	}
	return out, nil
}

// layerPlan is what goes into one layer, in order.
type layerPlan struct {
	name    string
	entries []entry
}

// groupOf is the index of the first group that takes p.
func groupOf(p string, groups []LayerGroup) int {
	for i, g := range groups {
		if len(g.Prefixes) == 0 {
			return i
		}
		for _, pre := range g.Prefixes {
			pre = strings.Trim(pre, "/")
			if p == pre || strings.HasPrefix(p, pre+"/") {
				return i
			}
		}
	}
	return -1
}

// planLayers assigns entries to groups. A directory goes to its own group
// and, as a parent, to every layer that holds something below it. Entries
// no group takes go to the last layer. Empty groups make no layer.
func planLayers(entries []entry, groups []LayerGroup) []layerPlan {
	if len(groups) == 0 {
		groups = []LayerGroup{{Name: "tree"}}
	}
	dirs := map[string]*ostree.DirMeta{}
	plans := make([]layerPlan, len(groups))
	emitted := make([]map[string]bool, len(groups))
	for i := range groups {
		plans[i].name = groups[i].Name
		emitted[i] = map[string]bool{}
	}
	for _, e := range entries {
		if e.dir != nil {
			dirs[e.path] = e.dir
		}
		g := groupOf(e.path, groups)
		if g < 0 {
			g = len(groups) - 1
		}
		// Parents first, outermost first.
		var parents []string
		for p := path.Dir(e.path); p != "." && !emitted[g][p]; p = path.Dir(p) {
			parents = append(parents, p)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			p := parents[i]
			emitted[g][p] = true
			plans[g].entries = append(plans[g].entries, entry{path: p, dir: dirs[p]})
		}
		if e.dir != nil {
			if emitted[g][e.path] {
				continue
			}
			emitted[g][e.path] = true
		}
		plans[g].entries = append(plans[g].entries, e)
	}
	out := plans[:0]
	for _, p := range plans {
		if len(p.entries) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// builtLayer is a stored layer.
type builtLayer struct {
	name   string
	digest digest.Digest
	diffID digest.Digest
	size   int64
}

// countWriter counts bytes.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// buildLayer writes the layer to a temporary file, hashing the tar (diff
// ID) and the gzip stream (digest) on the way, then stores it unless the
// store has it already.
func buildLayer(ctx context.Context, repo *ostree.Repo, store ContentStore, repoName string, p layerPlan, tmpDir string) (builtLayer, error) {
	bl := builtLayer{name: p.name}
	f, err := os.CreateTemp(tmpDir, "mxos-layer-*")
	if err != nil {
		return bl, err
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	blobHash := sha256.New()
	count := &countWriter{}
	zw, err := gzip.NewWriterLevel(io.MultiWriter(f, blobHash, count), gzip.DefaultCompression)
	if err != nil {
		return bl, err
	}
	diffHash := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(zw, diffHash))
	if err := writeTar(ctx, repo, tw, p.entries); err != nil {
		return bl, err
	}
	if err := tw.Close(); err != nil {
		return bl, err
	}
	if err := zw.Close(); err != nil {
		return bl, err
	}
	bl.digest = digest.NewDigest(digest.SHA256, blobHash)
	bl.diffID = digest.NewDigest(digest.SHA256, diffHash)
	bl.size = count.n
	has, err := store.HasBlob(ctx, repoName, bl.digest)
	if err != nil {
		return bl, err
	}
	if has {
		return bl, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return bl, err
	}
	if err := store.PutBlob(ctx, repoName, bl.digest, bl.size, f); err != nil {
		return bl, fmt.Errorf("storing %s: %w", bl.digest, err)
	}
	return bl, nil
}

// whiteoutPrefix marks deletions in OCI layers; a tree file named so
// cannot be carried.
const whiteoutPrefix = ".wh."

// writeTar writes the entries. The second path with the same content
// object becomes a hardlink to the first: same checksum means same bytes,
// owner, mode and xattrs.
func writeTar(ctx context.Context, repo *ostree.Repo, tw *tar.Writer, entries []entry) error {
	first := map[ostree.Checksum]string{}
	for i, e := range entries {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if strings.HasPrefix(path.Base(e.path), whiteoutPrefix) {
			return fmt.Errorf("%w: %s (unpackers read it as a deletion)", ErrWhiteoutName, e.path)
		}
		if e.dir != nil {
			h := &tar.Header{Typeflag: tar.TypeDir, Name: e.path + "/", Mode: int64(e.dir.Mode & 0o7777),
				Uid: int(e.dir.UID), Gid: int(e.dir.GID), ModTime: epoch, Format: tar.FormatPAX,
				PAXRecords: xattrRecords(e.dir.Xattrs)}
			if err := tw.WriteHeader(h); err != nil {
				return fmt.Errorf("%s: %w", e.path, err)
			}
			continue
		}
		if err := writeFile(repo, tw, e, first); err != nil {
			return fmt.Errorf("%s: %w", e.path, err)
		}
	}
	return nil
}

func writeFile(repo *ostree.Repo, tw *tar.Writer, e entry, first map[ostree.Checksum]string) error {
	cr, err := repo.OpenContent(e.file)
	if err != nil {
		return err
	}
	defer cr.Close()
	fh := cr.Header
	h := &tar.Header{Name: e.path, Mode: int64(fh.Mode & 0o7777), Uid: int(fh.UID), Gid: int(fh.GID),
		ModTime: epoch, Format: tar.FormatPAX, PAXRecords: xattrRecords(fh.Xattrs)}
	switch {
	case fh.IsSymlink():
		h.Typeflag, h.Linkname = tar.TypeSymlink, fh.SymlinkTarget
	case first[e.file] != "":
		h.Typeflag, h.Linkname = tar.TypeLink, first[e.file]
	default:
		h.Typeflag, h.Size = tar.TypeReg, int64(fh.Size)
		first[e.file] = e.path
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	switch h.Typeflag {
	case tar.TypeLink:
		return nil // the first copy was read and verified
	case tar.TypeSymlink:
		_, err := io.Copy(io.Discard, cr) // verifies the object's checksum
		return err
	}
	if _, err := io.Copy(tw, cr); err != nil {
		return err
	}
	return nil
}

// xattrRecords are the PAX records containers/storage and GNU tar read
// extended attributes from.
func xattrRecords(x []ostree.Xattr) map[string]string {
	if len(x) == 0 {
		return nil
	}
	m := make(map[string]string, len(x))
	for _, a := range x {
		m["SCHILY.xattr."+a.Name] = string(a.Value)
	}
	return m
}
