package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// childEnv marks a process started by mxos-bench as one of its children:
// tests re-execute the test binary, whose TestMain hands such a process to
// run instead of the test runner.
const childEnv = "MXOS_BENCH_CHILD"

// tailBuffer keeps the last max bytes written to it, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// childEnviron is the environment of every child: no proxies (everything
// here talks to 127.0.0.1, and ostree honours http_proxy), and the child
// marker.
func childEnviron(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "http_proxy", "https_proxy", "all_proxy", "no_proxy", strings.ToLower(childEnv):
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "no_proxy=127.0.0.1,localhost", childEnv+"=1")
	return append(env, extra...)
}

// sysProcAttr puts a child in its own process group (so it can be killed
// with everything it started) and has the kernel kill it if we die.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup sends sig to the process group led by pid.
func killGroup(pid int, sig syscall.Signal) {
	if pid > 0 {
		_ = syscall.Kill(-pid, sig)
	}
}

// daemon is a long-running child (a server).
type daemon struct {
	name   string
	cmd    *exec.Cmd
	stderr *tailBuffer
	done   chan struct{}
	err    error
	once   sync.Once
}

// daemons tracks every running server so all are stopped on every exit path.
type daemons struct {
	mu   sync.Mutex
	list []*daemon
}

// start runs cmd as a daemon in its own process group.
func (ds *daemons) start(name string, cmd *exec.Cmd) (*daemon, error) {
	d := &daemon{name: name, cmd: cmd, stderr: &tailBuffer{max: 16 << 10}, done: make(chan struct{})}
	cmd.SysProcAttr = sysProcAttr()
	cmd.Stdout = d.stderr
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	ds.mu.Lock()
	ds.list = append(ds.list, d)
	ds.mu.Unlock()
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// stop asks the daemon to exit with sig, waits up to grace, then kills its
// whole process group. It returns the stderr tail when the exit was not
// clean, for diagnosis.
func (d *daemon) stop(sig syscall.Signal, grace time.Duration) error {
	var err error
	d.once.Do(func() {
		pid := d.cmd.Process.Pid
		select {
		case <-d.done:
		default:
			_ = d.cmd.Process.Signal(sig)
			select {
			case <-d.done:
			case <-time.After(grace):
				killGroup(pid, syscall.SIGKILL)
				<-d.done
				err = fmt.Errorf("%s did not stop within %s and was killed", d.name, grace)
			}
		}
		// Leftovers such as nginx workers go with the group.
		killGroup(pid, syscall.SIGKILL)
	})
	return err
}

// exited reports whether the daemon has died, with its stderr tail.
func (d *daemon) exited() error {
	select {
	case <-d.done:
		return fmt.Errorf("%s exited: %v: %s", d.name, d.err, d.stderr.String())
	default:
		return nil
	}
}

// stopAll stops every daemon still running.
func (ds *daemons) stopAll() {
	ds.mu.Lock()
	list := ds.list
	ds.list = nil
	ds.mu.Unlock()
	for _, d := range list {
		_ = d.stop(syscall.SIGTERM, 10*time.Second)
	}
}

// runResult is what one timed command cost.
type runResult struct {
	wall time.Duration
	cpu  time.Duration // user + system, the command and the children it waited for
	// maxRSS is the peak resident set of the command, or of the largest
	// child it waited for (getrusage's ru_maxrss).
	maxRSS int64
	out    string
}

// runTimed runs a command to completion within timeout and measures it.
// The command gets its own process group, killed whole on timeout or
// cancellation.
func runTimed(ctx context.Context, timeout time.Duration, env []string, name string, args ...string) (runResult, error) {
	return runTimedIn(ctx, "", timeout, env, name, args...)
}

// runTimedIn is runTimed in directory dir ("" for this one).
func runTimedIn(ctx context.Context, dir string, timeout time.Duration, env []string, name string, args ...string) (runResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error {
		killGroup(cmd.Process.Pid, syscall.SIGKILL)
		return nil
	}
	cmd.WaitDelay = 5 * time.Second
	out := &tailBuffer{max: 16 << 10}
	cmd.Stdout = out
	cmd.Stderr = out
	start := time.Now()
	err := cmd.Run()
	res := runResult{wall: time.Since(start), out: out.String()}
	if cmd.ProcessState != nil {
		res.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			res.maxRSS = ru.Maxrss << 10 // KiB on Linux
		}
		killGroup(cmd.Process.Pid, syscall.SIGKILL) // anything it left behind
	}
	if err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.Canceled) {
			err = fmt.Errorf("timed out after %s", timeout)
		}
		return res, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, res.out)
	}
	return res, nil
}

// selfExe is the binary to re-execute for hidden child subcommands.
func selfExe() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding this binary to start a child process: %w", err)
	}
	return exe, nil
}

// clockTicks is the unit of CPU times in /proc/PID/stat (USER_HZ), 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// groupPIDs returns every live process in process group pgid: a server
// and, for nginx, its workers.
func groupPIDs(pgid int) ([]string, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("reading /proc: %w", err)
	}
	var pids []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		f, ok := procStat(e.Name())
		if !ok {
			continue
		}
		if pg, err := strconv.Atoi(f[2]); err == nil && pg == pgid {
			pids = append(pids, e.Name())
		}
	}
	return pids, nil
}

// procStat returns the fields of /proc/PID/stat after the command name,
// f[0] being field 3 (state); false if the process is gone.
func procStat(pid string) ([]string, bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return nil, false // exited meanwhile
	}
	// The command name may hold spaces and parentheses: fields are
	// counted from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, false
	}
	f := strings.Fields(string(b[i+1:]))
	// pgrp is field 5, utime 14, stime 15.
	if len(f) < 13 {
		return nil, false
	}
	return f, true
}

// groupCPU returns the CPU time used so far by every live process in
// process group pgid. It sums the nanosecond run times of every thread
// (/proc/PID/task/TID/schedstat) and falls back to the 10 ms ticks of
// /proc/PID/stat where schedstat is missing.
func groupCPU(pgid int) (time.Duration, error) {
	pids, err := groupPIDs(pgid)
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, pid := range pids {
		if d, ok := schedRuntime(pid); ok {
			total += d
			continue
		}
		f, ok := procStat(pid)
		if !ok {
			continue
		}
		ut, err1 := strconv.ParseInt(f[11], 10, 64)
		st, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("parsing /proc/%s/stat", pid)
		}
		total += time.Duration(ut+st) * time.Second / clockTicks
	}
	return total, nil
}

// resetPeakRSS restarts the peak-RSS count (VmHWM) of every process in
// group pgid (clear_refs 5, Linux 4.0+), so groupPeakRSS measures one
// phase. A failure leaves the peak since the process started, which is
// only ever higher.
func resetPeakRSS(pgid int) {
	pids, err := groupPIDs(pgid)
	if err != nil {
		return
	}
	for _, pid := range pids {
		_ = os.WriteFile("/proc/"+pid+"/clear_refs", []byte("5"), 0)
	}
}

// groupPeakRSS returns the sum of the peak resident sets (VmHWM) of the
// processes in group pgid, in bytes: for nginx, master and workers.
func groupPeakRSS(pgid int) (int64, error) {
	pids, err := groupPIDs(pgid)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + pid + "/status")
		if err != nil {
			continue // exited
		}
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				f := strings.Fields(v)
				if len(f) >= 1 {
					kb, err := strconv.ParseInt(f[0], 10, 64)
					if err != nil {
						return 0, fmt.Errorf("parsing /proc/%s/status: %w", pid, err)
					}
					total += kb << 10
				}
				break
			}
		}
	}
	return total, nil
}

// schedRuntime sums the on-CPU nanoseconds of every thread of pid.
func schedRuntime(pid string) (time.Duration, bool) {
	tasks, err := os.ReadDir("/proc/" + pid + "/task")
	if err != nil {
		return 0, false
	}
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/" + pid + "/task/" + t.Name() + "/schedstat")
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // thread exited
			}
			return 0, false
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return 0, false
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, false
		}
		total += time.Duration(ns)
	}
	return total, true
}

// selfCPU is the CPU time this process has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
