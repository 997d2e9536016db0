package delta

import (
	"bytes"
	"fmt"
	"io"
	"path"
	"sort"

	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// A changed file is sent as ranges copied from the file at the same path
// in the release the client has, plus the new bytes between them (ops
// 'o', 'r', 'w', 'R', 'c', as libostree's rollsum deltas do). The ranges
// are found by matching diffBlock-byte blocks of the old file, indexed
// at block boundaries, against a rolling hash of the new one, and then
// extended byte by byte both ways: an O(old + new) scan, good for the
// usual package update (text and binaries with inserted or shifted
// sections). No bsdiff.
//
// A new file (no file at its path in the client's release) is tried
// against the client's files of the same name elsewhere in the tree, as
// libostree's generator does for bsdiff: a package's
// /usr/share/doc/P/copyright mostly repeats the license texts of the other
// packages' copyright files. At most maxSimilar of them are diffed, those
// closest in size (of the first maxSimilarHeaders found), and the one
// leaving the fewest new bytes is used.
const (
	diffBlock = 32
	// diffMinShare: a diff is used only when at least this share of the
	// new file is copied; otherwise the file is sent whole.
	diffMinShare = 4
	// maxSimilar bounds the files of the same name a new file is diffed
	// against; maxSimilarHeaders the ones whose size is read to pick them.
	maxSimilar        = 4
	maxSimilarHeaders = 64
)

// byBaseName indexes the regular files and symlinks of a tree by base
// name, each object once, in path order.
func byBaseName(files map[string]ostree.Checksum) map[string][]ostree.Checksum {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	out := map[string][]ostree.Checksum{}
	seen := map[ostree.Checksum]bool{}
	for _, p := range paths {
		c := files[p]
		if seen[c] {
			continue
		}
		seen[c] = true
		name := path.Base(p)
		out[name] = append(out[name], c)
	}
	return out
}

// diffSources returns the client's files to try a diff of the new file
// at path p against: the file at the same path when it changed, else
// those of the same base name closest in size.
func diffSources(repo *ostree.Repo, old map[string]ostree.Checksum, byName map[string][]ostree.Checksum, p string, obj ostree.Checksum) []ostree.Checksum {
	if p == "" || old == nil {
		return nil
	}
	if c, ok := old[p]; ok {
		if c == obj {
			return nil
		}
		return []ostree.Checksum{c}
	}
	cands := byName[path.Base(p)]
	if len(cands) == 0 {
		return nil
	}
	if len(cands) > maxSimilarHeaders {
		cands = cands[:maxSimilarHeaders]
	}
	newSize, ok := objectSize(repo, obj)
	if !ok {
		return nil
	}
	type cand struct {
		c    ostree.Checksum
		dist uint64
	}
	var cs []cand
	for _, c := range cands {
		n, ok := objectSize(repo, c)
		if !ok {
			continue
		}
		d := n - newSize
		if n < newSize {
			d = newSize - n
		}
		cs = append(cs, cand{c, d})
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].dist < cs[j].dist })
	var out []ostree.Checksum
	for i := 0; i < len(cs) && i < maxSimilar; i++ {
		out = append(out, cs[i].c)
	}
	return out
}

// segment is a range of the new file: copied from old[Off:Off+N], or
// (Copy false) new[Off:Off+N] sent as is.
type segment struct {
	Copy   bool
	Off, N int
}

const rollBase = 0x100000001b3

// diff splits new into copies from old and literals; nil when too little
// of new is found in old to be worth it.
func diff(old, new []byte) []segment {
	if len(old) < diffBlock || len(new) < diffBlock {
		return nil
	}
	var pow uint64 = 1
	for range diffBlock - 1 {
		pow *= rollBase
	}
	hash := func(b []byte) uint64 {
		var h uint64
		for _, c := range b {
			h = h*rollBase + uint64(c)
		}
		return h
	}
	idx := make(map[uint64]int, len(old)/diffBlock)
	for j := 0; j+diffBlock <= len(old); j += diffBlock {
		h := hash(old[j : j+diffBlock])
		if _, ok := idx[h]; !ok {
			idx[h] = j
		}
	}
	var segs []segment
	copied := 0
	lit := 0
	i := 0
	h := hash(new[:diffBlock])
	for i+diffBlock <= len(new) {
		if j, ok := idx[h]; ok && bytes.Equal(old[j:j+diffBlock], new[i:i+diffBlock]) {
			s, t := i, j
			for s > lit && t > 0 && new[s-1] == old[t-1] {
				s, t = s-1, t-1
			}
			e, f := i+diffBlock, j+diffBlock
			for e < len(new) && f < len(old) && new[e] == old[f] {
				e, f = e+1, f+1
			}
			if s > lit {
				segs = append(segs, segment{Off: lit, N: s - lit})
			}
			segs = append(segs, segment{Copy: true, Off: t, N: e - s})
			copied += e - s
			lit, i = e, e
			if i+diffBlock <= len(new) {
				h = hash(new[i : i+diffBlock])
			}
			continue
		}
		if i+diffBlock < len(new) {
			h = (h-uint64(new[i])*pow)*rollBase + uint64(new[i+diffBlock])
		}
		i++
	}
	if lit < len(new) {
		segs = append(segs, segment{Off: lit, N: len(new) - lit})
	}
	if copied*diffMinShare < len(new) {
		return nil
	}
	return segs
}

// index returns the part's mode and xattr table indexes for h.
func (pb *partBuilder) index(h *ostree.FileHeader) (int, int) {
	m := Mode{h.UID, h.GID, h.Mode}
	mi, ok := pb.modes[m]
	if !ok {
		mi = len(pb.p.Modes)
		pb.modes[m] = mi
		pb.p.Modes = append(pb.p.Modes, m)
	}
	key := fmt.Sprintf("%q", h.Xattrs)
	xi, ok := pb.xattrs[key]
	if !ok {
		xi = len(pb.p.Xattrs)
		pb.xattrs[key] = xi
		pb.p.Xattrs = append(pb.p.Xattrs, h.Xattrs)
	}
	return mi, xi
}

// addDiff adds regular file o (header h, content data) as segs over the
// client's file old.
func (pb *partBuilder) addDiff(o ostree.ObjectRef, h *ostree.FileHeader, old ostree.Checksum, data []byte, segs []segment) {
	mi, xi := pb.index(h)
	pb.ops = append(pb.ops, OpOpen)
	pb.ops = appendVarint(pb.ops, uint64(mi))
	pb.ops = appendVarint(pb.ops, uint64(xi))
	pb.ops = appendVarint(pb.ops, uint64(len(data)))
	src := len(pb.data)
	pb.data = append(pb.data, old[:]...)
	reading := false
	for _, s := range segs {
		if s.Copy {
			if !reading {
				pb.ops = append(pb.ops, OpSetRead)
				pb.ops = appendVarint(pb.ops, uint64(src))
				reading = true
			}
			pb.ops = append(pb.ops, OpWrite)
			pb.ops = appendVarint(pb.ops, uint64(s.N))
			pb.ops = appendVarint(pb.ops, uint64(s.Off))
			continue
		}
		if reading {
			pb.ops = append(pb.ops, OpUnsetRead)
			reading = false
		}
		pb.ops = append(pb.ops, OpWrite)
		pb.ops = appendVarint(pb.ops, uint64(s.N))
		pb.ops = appendVarint(pb.ops, uint64(len(pb.data)))
		pb.data = append(pb.data, data[s.Off:s.Off+s.N]...)
	}
	pb.ops = append(pb.ops, OpClose)
	pb.objects = append(pb.objects, Object{o.Type, o.Checksum})
	pb.usize += uint64(len(data))
}

// objectSize is the size of regular file c, when it can be diffed (at
// most MaxInlineObject).
func objectSize(repo *ostree.Repo, c ostree.Checksum) (uint64, bool) {
	cr, err := repo.OpenContent(c)
	if err != nil {
		return 0, false
	}
	defer cr.Close()
	h := cr.Header
	return h.Size, !h.IsSymlink() && h.Size <= MaxInlineObject
}

// readContent reads a regular file's content (at most MaxInlineObject).
func readContent(repo *ostree.Repo, c ostree.Checksum) (*ostree.FileHeader, []byte, error) {
	cr, err := repo.OpenContent(c)
	if err != nil {
		return nil, nil, err
	}
	defer cr.Close()
	if cr.Header.IsSymlink() || cr.Header.Size > MaxInlineObject {
		return cr.Header, nil, nil
	}
	b, err := io.ReadAll(cr)
	return cr.Header, b, err
}

// filePaths maps each path of commit's tree to its content object.
func filePaths(repo *ostree.Repo, commit ostree.Checksum) (map[string]ostree.Checksum, error) {
	cm, err := repo.ReadCommit(commit)
	if err != nil {
		return nil, err
	}
	out := map[string]ostree.Checksum{}
	var walk func(dir string, tree ostree.Checksum) error
	walk = func(dir string, tree ostree.Checksum) error {
		dt, err := repo.ReadDirTree(tree)
		if err != nil {
			return err
		}
		for _, f := range dt.Files {
			out[dir+f.Name] = f.Checksum
		}
		for _, d := range dt.Dirs {
			if err := walk(dir+d.Name+"/", d.Tree); err != nil {
				return err
			}
		}
		return nil
	}
	return out, walk("/", cm.RootTree)
}
