// Package health runs greenboot-style health checks after an update has been
// switched in and the device has rebooted into it.
//
// A check directory holds four optional sub-directories:
//
//	required.d/  checks that must pass; any failure makes the boot unhealthy
//	wanted.d/    checks that may fail; a failure is only reported as a warning
//	green.d/     hooks run after all checks when the boot is healthy
//	red.d/       hooks run after all checks when the boot is unhealthy
//
// Every executable regular file in a directory is run in name order, each with
// its own timeout. A check that does not finish in time is killed together with
// every process it started. Hook failures are logged but never change the
// verdict. The caller (the updater's boot step) decides what to do with an
// unhealthy Result, typically rolling back to the previous deployment.
package health

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Kinds of scripts run by Run.
const (
	KindRequired = "required"
	KindWanted   = "wanted"
	KindGreen    = "green"
	KindRed      = "red"
)

const (
	// DefaultTimeout is the per-check time limit used when Options.Timeout is zero.
	DefaultTimeout = 5 * time.Minute
	// DefaultMaxOutput is how much output (the last bytes) is kept per check
	// when Options.MaxOutput is zero.
	DefaultMaxOutput = 16 << 10
	// waitDelay bounds how long we wait for output pipes held open by
	// background processes after a check has exited or been killed.
	waitDelay = 2 * time.Second
)

// Options configures Run.
type Options struct {
	// Timeout is the time limit for each check or hook; DefaultTimeout if zero.
	Timeout time.Duration
	// Env holds extra "KEY=value" entries added to the updater's environment.
	Env []string
	// Log receives progress and warnings; nil means no logging.
	Log *zap.Logger
	// MaxOutput is how many trailing bytes of output are kept per check;
	// DefaultMaxOutput if zero or negative.
	MaxOutput int
}

// CheckResult is the outcome of one check or hook script.
type CheckResult struct {
	Name     string        `json:"name"`
	Kind     string        `json:"kind"`
	ExitCode int           `json:"exit_code"` // -1 when the script did not exit normally
	Duration time.Duration `json:"duration"`
	Output   string        `json:"output,omitempty"` // combined stdout and stderr, tail only
	Err      string        `json:"error,omitempty"`  // why it did not run or finish, if so
	TimedOut bool          `json:"timed_out,omitempty"`
}

// Passed reports whether the script ran to completion and exited with 0.
func (c CheckResult) Passed() bool { return c.ExitCode == 0 && c.Err == "" }

// Problem describes a failed check in a few words, e.g. "exit 1" or
// "timed out after 5m0s". It is empty for a passed check.
func (c CheckResult) Problem() string {
	switch {
	case c.Passed():
		return ""
	case c.Err != "":
		return c.Err
	default:
		return fmt.Sprintf("exit %d", c.ExitCode)
	}
}

// Result is the outcome of a health run.
type Result struct {
	Required []CheckResult `json:"required"`
	Wanted   []CheckResult `json:"wanted"`
	// Hooks holds the green.d or red.d scripts that were run.
	Hooks []CheckResult `json:"hooks,omitempty"`
	// Notes lists files that were skipped and why.
	Notes []string `json:"notes,omitempty"`
	// OK is false when any required check failed or timed out, or the run
	// was cancelled.
	OK bool `json:"ok"`
}

// Summary returns short plain sentences describing the run, e.g.
// "2 required checks passed; 1 wanted check failed: 20-network (exit 1).
// The system is healthy."
func (r Result) Summary() string {
	if len(r.Required) == 0 && len(r.Wanted) == 0 {
		if r.OK {
			return "No health checks are installed, so there was nothing to check. The system is considered healthy."
		}
		return "The health checks did not run. The system is not considered healthy."
	}
	var parts []string
	parts = append(parts, summarize(KindRequired, r.Required)...)
	parts = append(parts, summarize(KindWanted, r.Wanted)...)
	s := strings.Join(parts, "; ") + "."
	switch {
	case r.OK && wantedFailed(r.Wanted):
		s += " The system is healthy, but the wanted checks that failed should be looked at."
	case r.OK:
		s += " The system is healthy."
	default:
		s += " The system is not healthy."
	}
	return s
}

func wantedFailed(cs []CheckResult) bool {
	for _, c := range cs {
		if !c.Passed() {
			return true
		}
	}
	return false
}

func summarize(kind string, cs []CheckResult) []string {
	if len(cs) == 0 {
		return nil
	}
	var passed int
	var failed []string
	for _, c := range cs {
		if c.Passed() {
			passed++
			continue
		}
		failed = append(failed, fmt.Sprintf("%s (%s)", c.Name, c.Problem()))
	}
	var out []string
	if passed > 0 {
		out = append(out, fmt.Sprintf("%d %s %s passed", passed, kind, plural(passed)))
	}
	if len(failed) > 0 {
		out = append(out, fmt.Sprintf("%d %s %s failed: %s", len(failed), kind, plural(len(failed)), strings.Join(failed, ", ")))
	}
	return out
}

func plural(n int) string {
	if n == 1 {
		return "check"
	}
	return "checks"
}

// Run runs the checks in dir/required.d and dir/wanted.d, then the hooks in
// dir/green.d (healthy) or dir/red.d (unhealthy). Missing directories are
// treated as empty. It returns an error only when the run could not be
// completed (a directory could not be read or ctx was cancelled); the Result
// gathered so far is returned with it and has OK set to false.
func Run(ctx context.Context, dir string, opts Options) (Result, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxOutput <= 0 {
		opts.MaxOutput = DefaultMaxOutput
	}
	log := opts.Log
	if log == nil {
		log = zap.NewNop()
	}
	r := runner{dir: dir, opts: opts, log: log, env: append(os.Environ(), opts.Env...)}
	var res Result

	for _, kind := range []string{KindRequired, KindWanted} {
		scripts, notes, err := r.list(kind)
		res.Notes = append(res.Notes, notes...)
		if err != nil {
			return res, err
		}
		for _, name := range scripts {
			if err := ctx.Err(); err != nil {
				return res, fmt.Errorf("health checks stopped before %s.d/%s: %w", kind, name, err)
			}
			c := r.run(ctx, kind, name)
			if ctx.Err() != nil {
				c.Err = "stopped because the health run was cancelled"
			}
			if kind == KindRequired {
				res.Required = append(res.Required, c)
			} else {
				res.Wanted = append(res.Wanted, c)
			}
			if err := ctx.Err(); err != nil {
				return res, fmt.Errorf("health checks stopped during %s.d/%s: %w", kind, name, err)
			}
		}
	}

	res.OK = true
	for _, c := range res.Required {
		if !c.Passed() {
			res.OK = false
		}
	}

	hookKind := KindGreen
	if !res.OK {
		hookKind = KindRed
	}
	hooks, notes, err := r.list(hookKind)
	res.Notes = append(res.Notes, notes...)
	if err != nil {
		// Hooks never change the verdict; report and carry on.
		log.Warn("could not list health hooks", zap.String("kind", hookKind), zap.Error(err))
		return res, nil
	}
	for _, name := range hooks {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("health hooks stopped before %s.d/%s: %w", hookKind, name, err)
		}
		res.Hooks = append(res.Hooks, r.run(ctx, hookKind, name))
	}
	log.Info("health checks finished", zap.Bool("ok", res.OK), zap.String("summary", res.Summary()))
	return res, nil
}

type runner struct {
	dir  string
	opts Options
	log  *zap.Logger
	env  []string
}

// list returns the executable scripts of kind in name order, plus notes for
// the files it skipped.
func (r runner) list(kind string) (scripts, notes []string, err error) {
	sub := filepath.Join(r.dir, kind+".d")
	entries, err := os.ReadDir(sub)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read health check directory %s: %w", sub, err)
	}
	skip := func(name, why string) {
		n := fmt.Sprintf("skipped %s.d/%s: %s", kind, name, why)
		notes = append(notes, n)
		r.log.Info("skipping health script", zap.String("kind", kind), zap.String("name", name), zap.String("reason", why))
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			skip(name, "hidden file")
			continue
		}
		fi, err := os.Stat(filepath.Join(sub, name)) // follows symlinks
		switch {
		case err != nil:
			skip(name, "cannot be read: "+err.Error())
		case !fi.Mode().IsRegular():
			skip(name, "not a regular file")
		case fi.Mode().Perm()&0o111 == 0:
			skip(name, "not executable")
		default:
			scripts = append(scripts, name)
		}
	}
	sort.Strings(scripts)
	return scripts, notes, nil
}

// run runs one script with the per-check timeout.
func (r runner) run(ctx context.Context, kind, name string) CheckResult {
	c := CheckResult{Name: name, Kind: kind, ExitCode: -1}
	cctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()

	out := &tailBuffer{max: r.opts.MaxOutput}
	cmd := exec.CommandContext(cctx, filepath.Join(r.dir, kind+".d", name))
	cmd.Dir = filepath.Join(r.dir, kind+".d")
	cmd.Env = r.env
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.WaitDelay = waitDelay
	setProcessGroup(cmd)

	start := time.Now()
	err := cmd.Run()
	c.Duration = time.Since(start)
	c.Output = out.String()
	if cmd.ProcessState != nil && cmd.ProcessState.Exited() {
		c.ExitCode = cmd.ProcessState.ExitCode()
	}

	var exitErr *exec.ExitError
	switch {
	case errors.Is(cctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		c.TimedOut = true
		c.Err = "timed out after " + r.opts.Timeout.String()
	case err == nil:
	case errors.As(err, &exitErr):
		if c.ExitCode < 0 {
			c.Err = "stopped: " + exitErr.Error()
		}
	case errors.Is(err, exec.ErrWaitDelay):
		// The script finished but left a background process holding its
		// output open; its exit code still counts.
	default:
		c.Err = "could not start: " + err.Error()
	}

	fields := []zap.Field{
		zap.String("kind", kind), zap.String("name", name),
		zap.Int("exit_code", c.ExitCode), zap.Duration("duration", c.Duration),
	}
	switch {
	case c.Passed():
		r.log.Info("health script passed", fields...)
	case kind == KindRequired:
		r.log.Error("required health check failed", append(fields, zap.String("problem", c.Problem()), zap.String("output", c.Output))...)
	default:
		r.log.Warn("health script failed", append(fields, zap.String("problem", c.Problem()), zap.String("output", c.Output))...)
	}
	return c
}

// tailBuffer keeps the last max bytes written to it. os/exec guarantees only
// one goroutine writes at a time when Stdout and Stderr are the same value.
type tailBuffer struct {
	max     int
	buf     []byte
	dropped int64
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= t.max {
		t.dropped += int64(len(t.buf) + len(p) - t.max)
		t.buf = append(t.buf[:0], p[len(p)-t.max:]...)
		return n, nil
	}
	if over := len(t.buf) + len(p) - t.max; over > 0 {
		t.dropped += int64(over)
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

func (t *tailBuffer) String() string {
	if t.dropped == 0 {
		return string(t.buf)
	}
	return fmt.Sprintf("[... %d earlier bytes not kept ...]\n%s", t.dropped, t.buf)
}
