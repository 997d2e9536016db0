package main

import (
	"archive/tar"
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
)

// Generated trees are deterministic functions of their spec: the same
// flags give byte-identical trees on every machine, so figures from
// different runs measure the same input.

// treeSpec describes a generated rootfs-like publish tree.
type treeSpec struct {
	Files int
	Size  int64
	Seed  uint64
}

func (s treeSpec) key() string {
	return fmt.Sprintf("tree-f%d-s%d-seed%d-v1", s.Files, s.Size, s.Seed)
}

// serveSpec describes the serve repository's tree: many small files and a
// few large incompressible ones.
type serveSpec struct {
	Small     int
	Large     int
	LargeSize int64
	Seed      uint64
}

func (s serveSpec) key() string {
	return fmt.Sprintf("serve-n%d-l%dx%d-seed%d-v1", s.Small, s.Large, s.LargeSize, s.Seed)
}

// treeStats counts what a generated tree holds.
type treeStats struct {
	Files     int   `json:"files"`
	Dirs      int   `json:"dirs"`
	Symlinks  int   `json:"symlinks"`
	Hardlinks int   `json:"hardlinks"`
	Bytes     int64 `json:"bytes"`
}

func (s treeStats) String() string {
	return fmt.Sprintf("%d files, %d dirs, %d symlinks, %d hardlinks, %.1f MB",
		s.Files, s.Dirs, s.Symlinks, s.Hardlinks, float64(s.Bytes)/1e6)
}

// content kinds, each with a different compressibility.
const (
	kindText   = iota // source, configs, docs: deflate shrinks it ~3x
	kindBinary        // executables and libraries: ~1.5-2x
	kindRandom        // compressed archives, firmware: incompressible
)

// generator writes file contents from one seed.
type generator struct {
	seed   uint64
	corpus []byte // pseudo-text, reused at random offsets
	buf    []byte
}

func newGenerator(seed uint64) *generator {
	g := &generator{seed: seed, buf: make([]byte, 1<<20)}
	g.corpus = makeCorpus(rand.New(rand.NewPCG(seed, 0x636f72707573)), 1<<20)
	return g
}

// makeCorpus builds text from a vocabulary of pseudo-words with the shape
// of config files and source code.
func makeCorpus(rng *rand.Rand, n int) []byte {
	const letters = "etaoinshrdlcumwfgypbvkjxqz_"
	vocab := make([]string, 3000)
	for i := range vocab {
		l := 2 + rng.IntN(9)
		w := make([]byte, l)
		for j := range w {
			// Skewed towards frequent letters, like real text.
			w[j] = letters[int(math.Pow(rng.Float64(), 1.7)*float64(len(letters)))]
		}
		vocab[i] = string(w)
	}
	seps := []string{" ", " ", " ", " ", ", ", " = ", "(", ") ", ".", ": ", "/", "\n", "\n\t", "\n    ", "; ", " # "}
	out := make([]byte, 0, n+64)
	for len(out) < n {
		// Zipf-like: a few words are very common.
		w := vocab[int(math.Pow(rng.Float64(), 3)*float64(len(vocab)))]
		out = append(out, w...)
		out = append(out, seps[rng.IntN(len(seps))]...)
	}
	return out[:n]
}

// fileRand is the random stream for one file, independent of the order
// in which files are written.
func (g *generator) fileRand(id uint64) *rand.ChaCha8 {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[0:], g.seed)
	binary.LittleEndian.PutUint64(seed[8:], id)
	binary.LittleEndian.PutUint64(seed[16:], 0x6d786f732d62656e) // "mxos-ben"
	return rand.NewChaCha8(seed)
}

// writeFile writes size bytes of the given kind to p.
func (g *generator) writeFile(p string, id uint64, kind int, size int64, perm fs.FileMode) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("generating %s: %w", p, err)
	}
	err = g.fill(f, id, kind, size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("generating %s: %w", p, err)
	}
	return nil
}

func (g *generator) fill(w io.Writer, id uint64, kind int, size int64) error {
	cr := g.fileRand(id)
	pick := rand.New(cr)
	// Every file starts with its own id, so no two generated files are
	// equal by accident (duplicates are made on purpose).
	hdr := []byte("# " + strconv.FormatUint(id, 10) + "\n")
	for size > 0 {
		n := min(int64(len(g.buf)), size)
		b := g.buf[:n]
		switch kind {
		case kindText:
			g.textChunk(b, pick)
		case kindBinary:
			g.binaryChunk(b, cr, pick)
		default:
			g.randomChunk(b, cr, pick)
		}
		copy(b, hdr)
		hdr = nil
		if _, err := w.Write(b); err != nil {
			return err
		}
		size -= n
	}
	return nil
}

// textChunk fills b with corpus runs taken at random offsets.
func (g *generator) textChunk(b []byte, pick *rand.Rand) {
	for i := 0; i < len(b); {
		run := 256 + pick.IntN(2048)
		off := pick.IntN(len(g.corpus) - run)
		i += copy(b[i:], g.corpus[off:off+run])
	}
}

// binaryChunk mixes random blocks, text (string tables) and structured
// blocks (aligned small integers, zero padding), like an ELF file.
func (g *generator) binaryChunk(b []byte, cr *rand.ChaCha8, pick *rand.Rand) {
	const block = 4096
	for i := 0; i < len(b); i += block {
		blk := b[i:min(i+block, len(b))]
		switch r := pick.IntN(20); {
		case r < 9:
			_, _ = cr.Read(blk)
		case r < 15:
			g.textChunk(blk, pick)
		default:
			base := pick.Uint32() & 0xffff
			for j := 0; j+8 <= len(blk); j += 8 {
				binary.LittleEndian.PutUint64(blk[j:], uint64(base)+uint64(j))
			}
			clear(blk[len(blk)/2:])
		}
	}
}

// randomChunk is incompressible apart from rare runs of zeros.
func (g *generator) randomChunk(b []byte, cr *rand.ChaCha8, pick *rand.Rand) {
	_, _ = cr.Read(b)
	if len(b) >= 64<<10 && pick.IntN(10) == 0 {
		clear(b[:64<<10])
	}
}

// logUniform draws from [lo, hi] with a log-uniform distribution.
func logUniform(rng *rand.Rand, lo, hi float64) float64 {
	return math.Exp(math.Log(lo) + rng.Float64()*(math.Log(hi)-math.Log(lo)))
}

// plannedFile is one regular file of a generated tree.
type plannedFile struct {
	size int64
	kind int
}

// planSizes splits the size budget over the files: about 40% in a few
// 20-50 MB files (when the budget allows), 35% in medium binaries, the rest
// in many small text-like files.
func planSizes(rng *rand.Rand, regular int, total int64) []plannedFile {
	var plan []plannedFile
	nLarge := int(float64(total) * 0.4 / 35e6)
	nLarge = min(nLarge, regular/10)
	var largeBytes int64
	for range nLarge {
		s := int64(20e6 + rng.Float64()*30e6)
		plan = append(plan, plannedFile{size: s, kind: kindRandom})
		largeBytes += s
	}
	if largeBytes > total*6/10 { // never more than 60% in large files
		scale := float64(total) * 0.6 / float64(largeBytes)
		largeBytes = 0
		for i := range plan {
			plan[i].size = int64(float64(plan[i].size) * scale)
			largeBytes += plan[i].size
		}
	}
	rest := total - largeBytes
	nMedium := max(1, (regular-nLarge)*3/40)
	nSmall := regular - nLarge - nMedium
	mediumBudget := rest * 35 / 60
	smallBudget := rest - mediumBudget
	scaleClass := func(n int, lo, hi float64, budget int64, kind func(i int) int) {
		raw := make([]float64, n)
		var sum float64
		for i := range raw {
			raw[i] = logUniform(rng, lo, hi)
			sum += raw[i]
		}
		for i := range raw {
			plan = append(plan, plannedFile{size: int64(raw[i] * float64(budget) / sum), kind: kind(i)})
		}
	}
	scaleClass(nMedium, 32<<10, 4<<20, mediumBudget, func(i int) int {
		if i%5 == 4 {
			return kindRandom // compressed data files
		}
		return kindBinary
	})
	scaleClass(nSmall, 64, 48<<10, smallBudget, func(i int) int {
		switch {
		case i%100 == 0:
			return -1 // empty file
		case i%10 == 9:
			return kindBinary
		}
		return kindText
	})
	for i := range plan {
		if plan[i].kind == -1 {
			plan[i] = plannedFile{size: 0, kind: kindText}
		}
	}
	// Interleave classes so large files are spread over the tree.
	rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	return plan
}

// generateTree writes a rootfs-like tree into dir (which must not exist):
// nested directories, mostly small text files, medium binaries, a few large
// files, symlinks (relative and absolute), hardlinks, duplicates and empty
// files.
func generateTree(dir string, spec treeSpec) (treeStats, error) {
	var st treeStats
	rng := rand.New(rand.NewPCG(spec.Seed, 0x74726565))
	g := newGenerator(spec.Seed)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return st, fmt.Errorf("generating tree: %w", err)
	}

	// Directories: a skeleton like usr/lib/..., each new one under a random
	// earlier one that is not too deep.
	nDirs := max(1, spec.Files/25)
	dirs := []string{""}
	depth := map[string]int{"": 0}
	top := []string{"etc", "usr", "var", "opt", "srv", "lib-data"}
	for i := 0; i < nDirs; i++ {
		var parent, name string
		if i < len(top) {
			name = top[i]
		} else {
			for {
				parent = dirs[rng.IntN(len(dirs))]
				if depth[parent] < 7 {
					break
				}
			}
			name = fmt.Sprintf("d%d-%s", i, g.word(rng))
		}
		p := path.Join(parent, name)
		if err := os.Mkdir(filepath.Join(dir, p), 0o755); err != nil {
			return st, fmt.Errorf("generating tree: %w", err)
		}
		dirs = append(dirs, p)
		depth[p] = depth[parent] + 1
		st.Dirs++
	}

	nSymlinks := spec.Files * 4 / 100
	nHardlinks := spec.Files / 500
	nRegular := spec.Files - nSymlinks - nHardlinks
	plan := planSizes(rng, nRegular, spec.Size)
	var regular []string   // paths of regular files, for links
	var smallOnes []string // small text files, for duplicates
	symlinksLeft, hardlinksLeft := nSymlinks, nHardlinks
	// addLink adds a hardlink or a symlink (relative or absolute) to a
	// random earlier regular file.
	addLink := func() error {
		d := dirs[rng.IntN(len(dirs))]
		target := regular[rng.IntN(len(regular))]
		lp := path.Join(d, fmt.Sprintf("l%d-%s", symlinksLeft+hardlinksLeft, g.word(rng)))
		if hardlinksLeft > 0 && (symlinksLeft == 0 || rng.IntN(symlinksLeft+hardlinksLeft) < hardlinksLeft) {
			if err := os.Link(filepath.Join(dir, target), filepath.Join(dir, lp)); err != nil {
				return fmt.Errorf("generating tree: %w", err)
			}
			hardlinksLeft--
			st.Hardlinks++
			return nil
		}
		dest := "/" + target // absolute: resolved inside the deployment
		if rng.IntN(3) != 0 {
			rel, err := filepath.Rel(filepath.Join("/", d), filepath.Join("/", target))
			if err != nil {
				return fmt.Errorf("generating tree: %w", err)
			}
			dest = rel
		}
		if err := os.Symlink(dest, filepath.Join(dir, lp)); err != nil {
			return fmt.Errorf("generating tree: %w", err)
		}
		symlinksLeft--
		st.Symlinks++
		return nil
	}
	for i, pf := range plan {
		// Spread links over the tree once there are files to point at.
		if len(regular) > 10 && symlinksLeft+hardlinksLeft > 0 && rng.IntN(len(plan)-i) < symlinksLeft+hardlinksLeft {
			if err := addLink(); err != nil {
				return st, err
			}
		}
		d := dirs[rng.IntN(len(dirs))]
		name := fmt.Sprintf("f%d-%s", i, g.word(rng))
		switch pf.kind {
		case kindText:
			name += [...]string{".conf", ".txt", ".py", ".h", ".sh", ""}[rng.IntN(6)]
		case kindBinary:
			name += [...]string{".so", "", ".bin", ".mo"}[rng.IntN(4)]
		default:
			name += [...]string{".gz", ".xz", ".img", ".zst"}[rng.IntN(4)]
		}
		p := path.Join(d, name)
		perm := fs.FileMode(0o644)
		if pf.kind == kindBinary && rng.IntN(2) == 0 || rng.IntN(20) == 0 {
			perm = 0o755
		}
		full := filepath.Join(dir, p)
		if len(smallOnes) > 0 && pf.size < 48<<10 && rng.IntN(50) == 0 {
			// A duplicate of an earlier file: stored once by both tools.
			src := smallOnes[rng.IntN(len(smallOnes))]
			data, err := os.ReadFile(filepath.Join(dir, src))
			if err != nil {
				return st, fmt.Errorf("generating tree: %w", err)
			}
			if err := os.WriteFile(full, data, perm); err != nil {
				return st, fmt.Errorf("generating tree: %w", err)
			}
			pf.size = int64(len(data))
		} else if err := g.writeFile(full, uint64(i), pf.kind, pf.size, perm); err != nil {
			return st, err
		}
		if err := os.Chmod(full, perm); err != nil { // umask-independent
			return st, fmt.Errorf("generating tree: %w", err)
		}
		regular = append(regular, p)
		if pf.kind == kindText && pf.size < 48<<10 {
			smallOnes = append(smallOnes, p)
		}
		st.Files++
		st.Bytes += pf.size
	}
	for len(regular) > 0 && symlinksLeft+hardlinksLeft > 0 {
		if err := addLink(); err != nil {
			return st, err
		}
	}
	return st, nil
}

// word is a short file-name-safe pseudo-word.
func (g *generator) word(rng *rand.Rand) string {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 3+rng.IntN(6))
	for i := range b {
		b[i] = letters[rng.IntN(len(letters))]
	}
	return string(b)
}

// generateServeTree writes the serve benchmark's tree into dir: spec.Small
// files of 1-16 KiB (half text, half random, so objects fall on both sides
// of any small-file threshold) in 1 + Small/100 directories, and spec.Large
// incompressible files of spec.LargeSize bytes.
func generateServeTree(dir string, spec serveSpec) (treeStats, error) {
	var st treeStats
	rng := rand.New(rand.NewPCG(spec.Seed, 0x7365727665))
	g := newGenerator(spec.Seed)
	nDirs := 1 + spec.Small/100
	for i := range nDirs {
		if err := os.MkdirAll(filepath.Join(dir, "small", strconv.Itoa(i)), 0o755); err != nil {
			return st, fmt.Errorf("generating serve tree: %w", err)
		}
		st.Dirs++
	}
	for i := range spec.Small {
		size := int64(1<<10 + rng.IntN(15<<10+1))
		kind := kindText
		if i%2 == 1 {
			kind = kindRandom
		}
		p := filepath.Join(dir, "small", strconv.Itoa(i%nDirs), "s"+strconv.Itoa(i))
		if err := g.writeFile(p, uint64(i), kind, size, 0o644); err != nil {
			return st, err
		}
		st.Files++
		st.Bytes += size
	}
	if err := os.MkdirAll(filepath.Join(dir, "large"), 0o755); err != nil {
		return st, fmt.Errorf("generating serve tree: %w", err)
	}
	for i := range spec.Large {
		p := filepath.Join(dir, "large", "l"+strconv.Itoa(i))
		if err := g.writeFile(p, uint64(1<<40+i), kindRandom, spec.LargeSize, 0o644); err != nil {
			return st, err
		}
		st.Files++
		st.Bytes += spec.LargeSize
	}
	return st, nil
}

// writeTar archives the tree at dir into the file out, the way
// `tar --numeric-owner --xattrs -C dir -cf out .` does: "./"-prefixed names,
// numeric owners, hardlinks as link entries, entries in sorted order.
func writeTar(dir, out string) (err error) {
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("writing tarball: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("writing tarball: %w", cerr)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	seen := map[[2]uint64]string{}
	var walk func(rel string) error
	walk = func(rel string) error {
		full := filepath.Join(dir, rel)
		ents, err := os.ReadDir(full)
		if err != nil {
			return err
		}
		names := make([]string, 0, len(ents))
		for _, e := range ents {
			names = append(names, e.Name())
		}
		slices.Sort(names)
		for _, name := range names {
			p := path.Join(rel, name)
			fp := filepath.Join(dir, p)
			fi, err := os.Lstat(fp)
			if err != nil {
				return err
			}
			sys := fi.Sys().(*syscall.Stat_t)
			link := ""
			if fi.Mode()&fs.ModeSymlink != 0 {
				if link, err = os.Readlink(fp); err != nil {
					return err
				}
			}
			hdr, err := tar.FileInfoHeader(fi, link)
			if err != nil {
				return err
			}
			hdr.Name = "./" + p
			hdr.Uname, hdr.Gname = "", ""
			hdr.Format = tar.FormatPAX
			key := [2]uint64{uint64(sys.Dev), sys.Ino}
			if fi.Mode().IsRegular() && sys.Nlink > 1 {
				if first, ok := seen[key]; ok {
					hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, "./"+first, 0
				} else {
					seen[key] = p
				}
			}
			if fi.IsDir() {
				hdr.Name += "/"
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if hdr.Typeflag == tar.TypeReg {
				src, err := os.Open(fp)
				if err != nil {
					return err
				}
				_, err = io.Copy(tw, src)
				src.Close()
				if err != nil {
					return err
				}
			}
			if fi.IsDir() {
				if err := walk(p); err != nil {
					return err
				}
			}
		}
		return nil
	}
	root, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("writing tarball: %w", err)
	}
	rh, err := tar.FileInfoHeader(root, "")
	if err != nil {
		return fmt.Errorf("writing tarball: %w", err)
	}
	rh.Name, rh.Uname, rh.Gname, rh.Format = "./", "", "", tar.FormatPAX
	if err := tw.WriteHeader(rh); err != nil {
		return fmt.Errorf("writing tarball: %w", err)
	}
	if err := walk(""); err != nil {
		return fmt.Errorf("writing tarball: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("writing tarball: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing tarball: %w", err)
	}
	return nil
}

// cached builds path once with make: an existing path with a ".done"
// stamp beside it (holding the stats as JSON) is reused; anything else is
// removed and rebuilt.
func cached(path string, make func(tmp string) (treeStats, error)) (st treeStats, reused bool, err error) {
	stamp := path + ".done"
	if b, err := os.ReadFile(stamp); err == nil && fileExists(path) && json.Unmarshal(b, &st) == nil {
		return st, true, nil
	}
	for _, p := range []string{stamp, path, path + ".partial"} {
		if err := os.RemoveAll(p); err != nil {
			return st, false, fmt.Errorf("removing stale %s: %w", p, err)
		}
	}
	tmp := path + ".partial"
	if st, err = make(tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return st, false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return st, false, fmt.Errorf("finishing %s: %w", path, err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return st, false, fmt.Errorf("finishing %s: %w", path, err)
	}
	if err := os.WriteFile(stamp, b, 0o644); err != nil {
		return st, false, fmt.Errorf("finishing %s: %w", path, err)
	}
	return st, false, nil
}
