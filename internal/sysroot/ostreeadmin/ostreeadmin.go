package ostreeadmin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
	"github.com/mxos-linux/mxos-update/internal/sysroot/bootfs"
)

// DefaultStateroot is the stateroot (ostree "osname") MxOS deploys into.
const DefaultStateroot = "mxos"

// StateDir is the backend's own directory, relative to the sysroot.
const StateDir = "ostree/mxos-updater"

// Errors of this package. Deployment-level errors are the sysroot
// package's (sysroot.ErrNoDeployment, ErrBadCommit, ErrCounterExhausted,
// ErrCorrupt) so the agent handles both backends alike.
var (
	// ErrNotSysroot: the path is not an ostree sysroot with the stateroot
	// initialised (ostree admin init-fs and os-init not run).
	ErrNotSysroot = errors.New("ostreeadmin: not an ostree sysroot")
	// ErrOstree: an ostree command failed (errors.Is matches every
	// *CommandError).
	ErrOstree = errors.New("ostree command failed")
)

// CommandError is a failed ostree command with ostree's own error line.
type CommandError struct {
	Command string // e.g. "admin deploy"
	Message string // ostree's last stderr line, without "error: "
	Err     error  // from os/exec
}

func (e *CommandError) Error() string { return "ostree " + e.Command + ": " + e.Message }

// Unwrap returns the os/exec error.
func (e *CommandError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrOstree) true.
func (e *CommandError) Is(target error) bool { return target == ErrOstree }

// Options configures Open.
type Options struct {
	// Stateroot is the ostree osname (DefaultStateroot when empty).
	Stateroot string
	// Bin is the ostree program ("ostree", looked up in PATH, when empty).
	Bin string
	// Env is added to the environment of every ostree command, e.g.
	// OSTREE_SYSROOT_DEBUG=mutable-deployments on a test sysroot whose
	// file system has no immutable bit.
	Env []string
	// Kargs are passed to every deploy as --karg=NAME=VALUE; ostree keeps
	// the other arguments of the current default deployment.
	Kargs []string
	// BootedRoot is the root directory of the running system ("/" when
	// empty). The deployment whose directory is that inode is the booted
	// one, as libostree decides; on a test sysroot none is.
	BootedRoot string
}

// Sysroot drives `ostree admin` on one sysroot. Its methods are safe for
// concurrent use; mutating ones also take an flock on StateDir/.lock.
type Sysroot struct {
	path       string // the sysroot
	stateroot  string
	bin        string
	env        []string
	kargs      []string
	bootedRoot string
	mu         sync.Mutex

	// Tries is the boot counter Switch records
	// (sysroot.DefaultBootTries unless changed before Switch).
	Tries int
	// Now returns the time used for origins and bad marks.
	Now func() time.Time
}

// state is StateDir/state.json.
type state struct {
	Pending   string                       `json:"pending,omitempty"`
	TriesLeft int                          `json:"tries_left,omitempty"`
	Booted    string                       `json:"booted,omitempty"`
	Previous  string                       `json:"previous,omitempty"`
	Bad       map[string]sysroot.BadCommit `json:"bad,omitempty"`
}

// Init makes an empty sysroot at path with stock ostree, as an installer
// (or a test) does: `ostree admin init-fs` and `ostree admin os-init`.
func Init(ctx context.Context, path string, opts Options) error {
	if opts.Stateroot == "" {
		opts.Stateroot = DefaultStateroot
	}
	if !validStateroot(opts.Stateroot) {
		return fmt.Errorf("init sysroot: bad stateroot name %q", opts.Stateroot)
	}
	s := &Sysroot{path: path, bin: opts.Bin, env: opts.Env}
	if s.bin == "" {
		s.bin = "ostree"
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return fmt.Errorf("init sysroot: %w", err)
	}
	if _, err := s.run(ctx, "admin", "init-fs", path); err != nil {
		return fmt.Errorf("init sysroot: %w", err)
	}
	if _, err := s.run(ctx, "admin", "os-init", "--sysroot="+path, opts.Stateroot); err != nil {
		return fmt.Errorf("init sysroot: %w", err)
	}
	return nil
}

// Open opens an existing sysroot (made by ostree admin init-fs and
// os-init; Open creates neither). It creates StateDir and the archive
// staging repository, finishes what an interrupted operation left (ostree
// admin cleanup when a deployment directory has no boot entry) and copies
// the deployed commits into the staging repository when they are missing
// there (a device installed by an image builder), so the agent can read
// the running commit and pull only what changed.
func Open(ctx context.Context, path string, opts Options) (*Sysroot, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open sysroot: %w", err)
	}
	s := &Sysroot{path: abs, stateroot: opts.Stateroot, bin: opts.Bin, env: opts.Env,
		kargs: opts.Kargs, bootedRoot: opts.BootedRoot, Tries: sysroot.DefaultBootTries, Now: time.Now}
	if s.stateroot == "" {
		s.stateroot = DefaultStateroot
	}
	if s.bin == "" {
		s.bin = "ostree"
	}
	if s.bootedRoot == "" {
		s.bootedRoot = "/"
	}
	if !validStateroot(s.stateroot) {
		return nil, fmt.Errorf("open sysroot: bad stateroot name %q", s.stateroot)
	}
	for _, k := range s.kargs {
		if k == "" || strings.ContainsAny(k, " \t\n") {
			return nil, fmt.Errorf("open sysroot: bad kernel argument %q", k)
		}
	}
	cfg, err := os.ReadFile(filepath.Join(abs, "ostree/repo/config"))
	if err != nil {
		return nil, fmt.Errorf("open sysroot %s: %w: no ostree/repo (run ostree admin init-fs)", abs, ErrNotSysroot)
	}
	if m := repoMode(cfg); m != "bare" && m != "bare-user" && m != "bare-split-xattrs" {
		return nil, fmt.Errorf("open sysroot %s: %w: ostree/repo has mode %q, not bare", abs, ErrNotSysroot, m)
	}
	if st, err := os.Stat(filepath.Dir(s.deployDir())); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("open sysroot %s: %w: stateroot %q not initialised (run ostree admin os-init %s)",
			abs, ErrNotSysroot, s.stateroot, s.stateroot)
	}
	if _, err := exec.LookPath(s.bin); err != nil {
		return nil, fmt.Errorf("open sysroot: %w", err)
	}
	if err := os.MkdirAll(s.Root(), 0o755); err != nil {
		return nil, fmt.Errorf("open sysroot: %w", err)
	}
	if _, err := ostree.Create(s.RepoPath()); err != nil {
		return nil, fmt.Errorf("open sysroot: staging repository: %w", err)
	}
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	for _, n := range []string{"state.json.tmp", "origin.tmp"} {
		if err := os.Remove(filepath.Join(s.Root(), n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("open sysroot: %w", err)
		}
	}
	if _, err := s.loadState(); err != nil {
		return nil, err
	}
	if s.HasGrubEnv() && (s.path == "/" || isMountPoint(filepath.Join(s.path, "boot"))) { // a freeze whose thaw never ran (bootfs)
		if err := bootfs.Thaw(filepath.Join(s.path, "boot")); err != nil {
			return nil, fmt.Errorf("open sysroot: %w", err)
		}
	}
	if err := s.cleanupLeftovers(ctx); err != nil {
		return nil, fmt.Errorf("open sysroot: %w", err)
	}
	if err := s.seedStaging(ctx); err != nil {
		return nil, fmt.Errorf("open sysroot: %w", err)
	}
	return s, nil
}

func repoMode(cfg []byte) string {
	kf, err := parseKeyFile(cfg)
	if err != nil {
		return ""
	}
	return kf.get("core", "mode")
}

// Path is the sysroot directory (what --sysroot= names).
func (s *Sysroot) Path() string { return s.path }

// Stateroot is the ostree osname deployments go to.
func (s *Sysroot) Stateroot() string { return s.stateroot }

// Root is the backend's own directory (SYSROOT/ostree/mxos-updater): its
// state file, the staging repository, and the agent's files.
func (s *Sysroot) Root() string { return filepath.Join(s.path, filepath.FromSlash(StateDir)) }

// RepoPath is the archive staging repository the agent pulls into
// (Root()/repo). Deploy copies commits from it into the sysroot's bare
// repository with `ostree pull-local`.
func (s *Sysroot) RepoPath() string { return filepath.Join(s.Root(), "repo") }

// SysrootRepoPath is the sysroot's own bare repository (ostree/repo).
func (s *Sysroot) SysrootRepoPath() string { return filepath.Join(s.path, "ostree", "repo") }

func (s *Sysroot) deployDir() string {
	return filepath.Join(s.path, "ostree", "deploy", s.stateroot, "deploy")
}

// lock takes the in-process mutex and the cross-process flock. ostree
// commands take the sysroot's own lock themselves.
func (s *Sysroot) lock() (func(), error) {
	return sysroot.Lock(&s.mu, s.Root())
}

// run executes the ostree program and returns its standard output. A
// failure is a *CommandError.
func (s *Sysroot) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Env = append(os.Environ(), s.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("ostree %s: %w", commandName(args), ctx.Err())
		}
		msg := strings.TrimPrefix(lastLine(stderr.String()), "error: ")
		if msg == "" {
			msg = err.Error()
		}
		return "", &CommandError{Command: commandName(args), Message: msg, Err: err}
	}
	return stdout.String(), nil
}

// admin runs `ostree admin SUB --sysroot=PATH ARGS...`. After a deploy or
// undeploy, failed or not, the boot file system is settled (bootcount.go):
// ostree swaps /boot/loader, which GRUB must see after a power cut.
func (s *Sysroot) admin(ctx context.Context, sub string, args ...string) (string, error) {
	out, err := s.run(ctx, append([]string{"admin", sub, "--sysroot=" + s.path}, args...)...)
	if sub == "deploy" || sub == "undeploy" {
		if serr := s.settleBoot(); serr != nil && err == nil {
			err = fmt.Errorf("ostree admin %s: %w", sub, serr)
		}
	}
	return out, err
}

func commandName(args []string) string {
	if len(args) >= 2 && args[0] == "admin" {
		return "admin " + args[1]
	}
	if len(args) >= 1 {
		return args[0]
	}
	return ""
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			if len(l) > 500 {
				l = l[:500]
			}
			return l
		}
	}
	return ""
}

func (s *Sysroot) loadState() (*state, error) {
	st := &state{}
	if err := sysroot.ReadState(filepath.Join(s.Root(), "state.json"), filepath.Join(StateDir, "state.json"), st); err != nil {
		return nil, err
	}
	return st, nil
}

func (s *Sysroot) saveState(st *state) error {
	return sysroot.WriteState(filepath.Join(s.Root(), "state.json"), st)
}
