package sysroot

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/storage"
)

// Errors returned by the package; they are wrapped with context.
var (
	// ErrBadCommit: the commit was rolled back from and is never deployed
	// or switched to again.
	ErrBadCommit = errors.New("sysroot: commit is marked bad")
	// ErrNoDeployment: there is no such deployment (no current, no
	// previous, or an unknown name).
	ErrNoDeployment = errors.New("sysroot: no such deployment")
	// ErrCounterExhausted: the pending deployment used all its boot
	// attempts and BootAttempt rolled back.
	ErrCounterExhausted = errors.New("sysroot: boot counter exhausted, rolled back")
	// ErrBadTree: the commit's tree cannot be deployed (escaping symlink,
	// both etc and usr/etc, ...).
	ErrBadTree = errors.New("sysroot: tree cannot be deployed")
	// ErrCorrupt: on-disk state of the sysroot is unreadable.
	ErrCorrupt = errors.New("sysroot: corrupt state")
)

// DefaultBootTries is the number of boots a newly switched deployment gets
// before BootAttempt rolls back.
const DefaultBootTries = 3

// Origin records where a deployment came from.
type Origin struct {
	Ref     string    `json:"ref,omitempty"`
	Version string    `json:"version,omitempty"`
	Commit  string    `json:"commit"`
	Created time.Time `json:"created"`
}

// Deployment is one checked-out commit under R/deploy.
type Deployment struct {
	Name   string // <commit>.<serial>
	Commit ostree.Checksum
	Serial int
	Path   string // absolute directory
	Origin Origin
}

// BadCommit records why a commit was abandoned.
type BadCommit struct {
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
}

type state struct {
	Pending   string               `json:"pending,omitempty"`
	TriesLeft int                  `json:"tries_left,omitempty"`
	Booted    string               `json:"booted,omitempty"`
	Bad       map[string]BadCommit `json:"bad,omitempty"`
}

// Sysroot is an opened root directory. Its methods are safe for
// concurrent use; mutating ones also take an flock on R/.lock.
type Sysroot struct {
	root string
	mu   sync.Mutex
	// Tries is the boot counter Switch records (DefaultBootTries unless
	// changed before Switch).
	Tries int
	// Now returns the time used for origins and bad marks.
	Now func() time.Time
}

// Open opens root, creating the skeleton if needed, and removes leftovers
// of interrupted operations.
func Open(root string) (*Sysroot, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("sysroot open: %w", err)
	}
	for _, d := range []string{abs, filepath.Join(abs, "deploy"), filepath.Join(abs, "objects-cache")} {
		if err := storage.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("sysroot open: %w", err)
		}
	}
	s := &Sysroot{root: abs, Tries: DefaultBootTries, Now: time.Now}
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := s.cleanup(); err != nil {
		return nil, fmt.Errorf("sysroot open: cleanup: %w", err)
	}
	if _, err := s.loadState(); err != nil {
		return nil, err
	}
	return s, nil
}

// Root returns the sysroot's directory.
func (s *Sysroot) Root() string { return s.root }

// RepoPath is where the local archive repository lives (R/repo).
func (s *Sysroot) RepoPath() string { return filepath.Join(s.root, "repo") }

func (s *Sysroot) deployDir() string { return filepath.Join(s.root, "deploy") }
func (s *Sysroot) cacheDir() string  { return filepath.Join(s.root, "objects-cache") }

// lock takes the in-process mutex and the cross-process flock.
func (s *Sysroot) lock() (func(), error) {
	return Lock(&s.mu, s.root)
}

func (s *Sysroot) cleanup() error {
	for _, n := range []string{"current.tmp", "previous.tmp", "state.json.tmp"} {
		if err := os.Remove(filepath.Join(s.root, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	ents, err := os.ReadDir(s.deployDir())
	if err != nil {
		return err
	}
	names := map[string]bool{}
	for _, e := range ents {
		names[e.Name()] = true
	}
	for _, e := range ents {
		n := e.Name()
		p := filepath.Join(s.deployDir(), n)
		switch {
		case strings.Contains(n, ".tmp-"):
			if err := removeTree(p); err != nil {
				return err
			}
		case strings.HasSuffix(n, ".origin"):
			if !names[strings.TrimSuffix(n, ".origin")] {
				if err := os.Remove(p); err != nil {
					return err
				}
			}
		}
	}
	return filepath.WalkDir(s.cacheDir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), ".tmp-") {
			return os.Remove(p)
		}
		return nil
	})
}

// removeTree deletes p even when it holds read-only directories.
func removeTree(p string) error {
	filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(q, 0o700)
		}
		return nil
	})
	return os.RemoveAll(p)
}

func randSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// setLink atomically points R/name at deploy/<target>.
func (s *Sysroot) setLink(name, target string) error {
	tmp := filepath.Join(s.root, name+".tmp")
	os.Remove(tmp)
	if err := os.Symlink("deploy/"+target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.root, name)); err != nil {
		os.Remove(tmp)
		return err
	}
	return storage.SyncDir(s.root)
}

func (s *Sysroot) loadState() (*state, error) {
	st := &state{}
	if err := ReadState(filepath.Join(s.root, "state.json"), "state.json", st); err != nil {
		return nil, err
	}
	return st, nil
}

func (s *Sysroot) saveState(st *state) error {
	return WriteState(filepath.Join(s.root, "state.json"), st)
}

// parseName splits "<commit>.<serial>".
func parseName(name string) (ostree.Checksum, int, bool) {
	c, ser, ok := strings.Cut(name, ".")
	if !ok {
		return ostree.Checksum{}, 0, false
	}
	sum, err := ostree.ParseChecksum(c)
	if err != nil {
		return ostree.Checksum{}, 0, false
	}
	n, err := strconv.Atoi(ser)
	if err != nil || n < 0 || strconv.Itoa(n) != ser {
		return ostree.Checksum{}, 0, false
	}
	return sum, n, true
}

// load returns the complete deployment called name.
func (s *Sysroot) load(name string) (Deployment, error) {
	sum, serial, ok := parseName(name)
	if !ok {
		return Deployment{}, fmt.Errorf("%w: bad name %q", ErrNoDeployment, name)
	}
	p := filepath.Join(s.deployDir(), name)
	st, err := os.Lstat(p)
	if err != nil || !st.IsDir() {
		return Deployment{}, fmt.Errorf("%w: %s", ErrNoDeployment, name)
	}
	d := Deployment{Name: name, Commit: sum, Serial: serial, Path: p}
	if b, err := os.ReadFile(p + ".origin"); err == nil {
		if err := json.Unmarshal(b, &d.Origin); err != nil {
			return Deployment{}, fmt.Errorf("%w: %s.origin: %v", ErrCorrupt, name, err)
		}
	}
	return d, nil
}

// linkTarget returns the deployment name R/link points at, or "".
func (s *Sysroot) linkTarget(link string) (string, error) {
	t, err := os.Readlink(filepath.Join(s.root, link))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("sysroot: %s: %w", link, err)
	}
	name, ok := strings.CutPrefix(t, "deploy/")
	if !ok || strings.Contains(name, "/") {
		return "", fmt.Errorf("%w: %s -> %q", ErrCorrupt, link, t)
	}
	return name, nil
}

func (s *Sysroot) linked(link string) (Deployment, error) {
	name, err := s.linkTarget(link)
	if err != nil {
		return Deployment{}, err
	}
	if name == "" {
		return Deployment{}, fmt.Errorf("%w: no %s deployment", ErrNoDeployment, link)
	}
	return s.load(name)
}

// Current returns the default deployment (R/current).
func (s *Sysroot) Current() (Deployment, error) { return s.linked("current") }

// Previous returns the rollback target (R/previous).
func (s *Sysroot) Previous() (Deployment, error) { return s.linked("previous") }

// Booted returns the deployment recorded by the last BootAttempt.
func (s *Sysroot) Booted() (Deployment, error) {
	st, err := s.loadState()
	if err != nil {
		return Deployment{}, err
	}
	if st.Booted == "" {
		return Deployment{}, fmt.Errorf("%w: nothing booted yet", ErrNoDeployment)
	}
	return s.load(st.Booted)
}

// List returns the complete deployments, oldest first.
func (s *Sysroot) List() ([]Deployment, error) {
	ents, err := os.ReadDir(s.deployDir())
	if err != nil {
		return nil, fmt.Errorf("sysroot list: %w", err)
	}
	var out []Deployment
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if _, _, ok := parseName(e.Name()); !ok {
			continue
		}
		d, err := s.load(e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	SortDeployments(out)
	return out, nil
}

// IsBad reports whether commit was rolled back from.
func (s *Sysroot) IsBad(commit ostree.Checksum) (bool, error) {
	st, err := s.loadState()
	if err != nil {
		return false, err
	}
	_, bad := st.Bad[commit.String()]
	return bad, nil
}

// BadCommits returns the abandoned commits, keyed by hex checksum.
func (s *Sysroot) BadCommits() (map[string]BadCommit, error) {
	st, err := s.loadState()
	if err != nil {
		return nil, err
	}
	out := make(map[string]BadCommit, len(st.Bad))
	for k, v := range st.Bad {
		out[k] = v
	}
	return out, nil
}
