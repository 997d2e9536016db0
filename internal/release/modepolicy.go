package release

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/mxos-linux/mxos-update/internal/ostree"
)

// The publish policy gate: a tree whose modes would weaken the machines
// that install it is refused before anything is signed or published.
//
// Decisions:
//   - Refused: etc/shadow, etc/gshadow and their backups (shadow-,
//     gshadow-), also under usr/etc, when they are regular files readable
//     or writable by others; and any regular file that is setuid or setgid
//     and writable by others. Directories and symlinks are not judged
//     (a symlink's mode means nothing; a setgid directory is common).
//   - The check reads the tree as stored (after the source is imported,
//     before the commit is made), so it is the same for a directory, a
//     tarball and ostree:REPO:REF, and for local and remote publishing;
//     promotions reuse a tree that passed it. A refusal leaves no commit,
//     no ref move and no upload; the imported file objects stay in the
//     (local or work) repository as unreferenced objects, like a cache.
//   - An intended exception is listed in the file given to
//     --allow-mode-exceptions: one tree path per line ("/etc/shadow" or
//     "etc/shadow"), blank lines and lines starting with # ignored. A path
//     must be clean (no "..", ".", "//", no trailing slash); a bad line is
//     an error naming its line number. Listed paths are exempt from every
//     rule; a listed path that is not in the tree is not an error.
//   - The server does not run this check: it does not hold the tree's
//     exceptions file, and what it accepts is signed by the release key.

// ErrModePolicy is wrapped by every refusal of the publish policy gate.
var ErrModePolicy = errors.New("publish policy")

// ModeProblem is one file the policy refuses.
type ModeProblem struct {
	Path    string // absolute within the tree, e.g. /etc/shadow
	Mode    uint32 // st_mode, type bits included
	Problem string // e.g. "world-readable"
}

func (p ModeProblem) String() string {
	name := p.Path
	if strings.ContainsFunc(name, func(r rune) bool { return !unicode.IsPrint(r) }) {
		name = strconv.Quote(name)
	}
	return fmt.Sprintf("%s is %s (mode %04o)", name, p.Problem, p.Mode&0o7777)
}

// checkSourceModes makes the imported tree readable in the repository and
// runs the policy on it.
func checkSourceModes(ctx context.Context, txn *ostree.Txn, tree ostree.Checksum, allow ModeExceptions) error {
	if err := txn.Commit(); err != nil {
		return err
	}
	return CheckTreeModes(ctx, txn.Repo(), tree, allow)
}

// ModeError is the refusal: every problem found, sorted by path.
type ModeError struct{ Problems []ModeProblem }

// maxListed bounds how many problems the message names.
const maxListed = 10

func (e *ModeError) Error() string {
	var b strings.Builder
	b.WriteString("publish policy: refusing a tree with unsafe modes: ")
	for i, p := range e.Problems {
		if i == maxListed {
			fmt.Fprintf(&b, "; and %d more", len(e.Problems)-maxListed)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	b.WriteString(" (fix the modes, or list intended exceptions in a file for --allow-mode-exceptions)")
	return b.String()
}

// Is makes errors.Is(err, ErrModePolicy) true.
func (e *ModeError) Is(target error) bool { return target == ErrModePolicy }

// st_mode bits.
const (
	modeTypeMask = 0o170000
	modeRegular  = 0o100000
	modeSetuid   = 0o4000
	modeSetgid   = 0o2000
	modeOtherR   = 0o004
	modeOtherW   = 0o002
)

// shadowFiles are the password-hash files, relative to etc/ or usr/etc/.
var shadowFiles = map[string]bool{"shadow": true, "gshadow": true, "shadow-": true, "gshadow-": true}

// CheckMode is the policy for one tree entry: the problem with a file at
// p (absolute within the tree) with st_mode mode, or "" when there is none.
func CheckMode(p string, mode uint32) string {
	if mode&modeTypeMask != modeRegular {
		return ""
	}
	dir, name := path.Split(p)
	if (dir == "/etc/" || dir == "/usr/etc/") && shadowFiles[name] {
		switch {
		case mode&modeOtherW != 0:
			return "world-writable"
		case mode&modeOtherR != 0:
			return "world-readable"
		}
	}
	if mode&modeOtherW != 0 {
		switch {
		case mode&modeSetuid != 0:
			return "a world-writable setuid file"
		case mode&modeSetgid != 0:
			return "a world-writable setgid file"
		}
	}
	return ""
}

// ModeExceptions are tree paths (absolute, e.g. /etc/shadow) the policy
// lets through.
type ModeExceptions map[string]bool

// maxExceptionsFile bounds an exceptions file.
const maxExceptionsFile = 1 << 20

// ParseModeExceptions reads the --allow-mode-exceptions format: one path
// per line, # comments and blank lines ignored.
func ParseModeExceptions(b []byte) (ModeExceptions, error) {
	if len(b) > maxExceptionsFile {
		return nil, fmt.Errorf("mode exceptions: file is larger than %d bytes", maxExceptionsFile)
	}
	out := ModeExceptions{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), maxExceptionsFile)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		p := "/" + strings.TrimPrefix(line, "/")
		if p == "/" || path.Clean(p) != p || strings.ContainsAny(p, "\x00") {
			return nil, fmt.Errorf("mode exceptions: line %d: %q is not a clean path in the tree, like /etc/shadow", n, truncateString(line, 80))
		}
		out[p] = true
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mode exceptions: %w", err)
	}
	return out, nil
}

// LoadModeExceptions reads an exceptions file; an empty path means none.
func LoadModeExceptions(file string) (ModeExceptions, error) {
	if file == "" {
		return nil, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--allow-mode-exceptions: %w", err)
	}
	ex, err := ParseModeExceptions(b)
	if err != nil {
		return nil, fmt.Errorf("--allow-mode-exceptions %s: %w", file, err)
	}
	return ex, nil
}

func truncateString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// CheckTreeModes walks a stored tree and returns a *ModeError listing
// every file the policy refuses that allow does not list.
func CheckTreeModes(ctx context.Context, repo *ostree.Repo, tree ostree.Checksum, allow ModeExceptions) error {
	w := &modeWalker{ctx: ctx, repo: repo, allow: allow, modes: map[ostree.Checksum]uint32{}}
	if err := w.dir("/", tree); err != nil {
		return fmt.Errorf("publish policy: reading the tree: %w", err)
	}
	if len(w.problems) == 0 {
		return nil
	}
	sort.Slice(w.problems, func(i, j int) bool { return w.problems[i].Path < w.problems[j].Path })
	return &ModeError{Problems: w.problems}
}

// maxModeCache bounds the modes a walk remembers (about 64 bytes each), so
// that checking a tree takes memory independent of its number of files;
// beyond it, a content object reached twice is read twice.
const maxModeCache = 1 << 14

type modeWalker struct {
	ctx      context.Context
	repo     *ostree.Repo
	allow    ModeExceptions
	modes    map[ostree.Checksum]uint32 // content objects already read, up to maxModeCache
	problems []ModeProblem
}

func (w *modeWalker) dir(p string, tree ostree.Checksum) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	dt, err := w.repo.ReadDirTree(tree)
	if err != nil {
		return err
	}
	for _, f := range dt.Files {
		mode, ok := w.modes[f.Checksum]
		if !ok {
			cr, err := w.repo.OpenContent(f.Checksum)
			if err != nil {
				return err
			}
			mode = cr.Header.Mode
			cr.Close()
			if len(w.modes) < maxModeCache {
				w.modes[f.Checksum] = mode
			}
		}
		fp := path.Join(p, f.Name)
		if prob := CheckMode(fp, mode); prob != "" && !w.allow[fp] {
			w.problems = append(w.problems, ModeProblem{Path: fp, Mode: mode, Problem: prob})
		}
	}
	for _, d := range dt.Dirs {
		if err := w.dir(path.Join(p, d.Name), d.Tree); err != nil {
			return err
		}
	}
	return nil
}
