package e2ekit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StartServer runs `mxos-server --data data --listen 127.0.0.1:0` with
// any extra flags and returns the repository URL it prints (https with
// --tls-cert).
func StartServer(t testing.TB, data string, extra ...string) string {
	t.Helper()
	u, _ := StartServerProcess(t, data, extra...)
	return u
}

// StartServerProcess is StartServer that also returns stop, which stops
// the server (SIGTERM) and checks it exited cleanly: a restart on the
// same data directory starts another. stop also runs at cleanup.
func StartServerProcess(t testing.TB, data string, extra ...string) (string, func()) {
	t.Helper()
	p := LaunchServer(t, nil, data, extra...)
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = p.Cmd.Process.Signal(syscall.SIGTERM)
			err := p.Wait(10 * time.Second)
			if ps := p.Cmd.ProcessState; ps == nil || !ps.Success() {
				t.Errorf("mxos-server did not stop cleanly on SIGTERM: %v, %v\n%s", ps, err, p.Stderr.String())
			}
		})
	}
	t.Cleanup(stop)
	return p.URL, stop
}

// ServerProc is a running mxos-server process (possibly under a wrapper
// such as strace, in its own process group).
type ServerProc struct {
	URL    string // the repository URL it printed
	Cmd    *exec.Cmd
	Stderr *LockedBuffer
	done   chan struct{}
	err    error // Wait's, once done is closed
}

// Wait waits up to d for the process to exit (then kills its group) and
// returns Wait's error.
func (p *ServerProc) Wait(d time.Duration) error {
	select {
	case <-p.done:
	case <-time.After(d):
		KillGroup(p.Cmd)
		<-p.done
	}
	return p.err
}

// KilledAtPoint waits up to d for a server started under a strace kill
// point and reports whether strace killed it (SIGKILL), as opposed to it
// exiting by itself or being killed by Wait after d: a point never
// reached, with the server left running, is never taken for one reached.
func (p *ServerProc) KilledAtPoint(d time.Duration) (bool, error) {
	select {
	case <-p.done:
		return Killed(p.err), p.err
	case <-time.After(d):
		err := p.Wait(0)
		return false, fmt.Errorf("still running %s after the request (then killed: %v)", d, err)
	}
}

// LaunchServer starts `mxos-server --data data --listen 127.0.0.1:0`
// with the extra flags, prefixed by the wrap command line if any, and
// returns once it printed its URL. The process group is killed at
// cleanup if it still runs.
func LaunchServer(t testing.TB, wrap []string, data string, extra ...string) *ServerProc {
	t.Helper()
	args := append(append(wrap, MxosServer(), "--data", data, "--listen", "127.0.0.1:0", "--log-level", "warn"), extra...)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &ServerProc{Cmd: cmd, Stderr: &LockedBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		re := regexp.MustCompile(`https?://127\.0\.0\.1:[0-9]+/repo`)
		for sc.Scan() {
			if u := re.FindString(sc.Text()); u != "" {
				urls <- u
				break
			}
		}
		for sc.Scan() { // keep draining
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			KillGroup(cmd)
			<-p.done
		}
	})
	select {
	case p.URL = <-urls:
		return p
	case <-p.done:
		t.Fatalf("mxos-server exited before it printed its URL: %v\n%s", p.err, p.Stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("mxos-server printed no URL:\n%s", p.Stderr.String())
	}
	return nil
}

// KillGroup sends SIGKILL to the process group of cmd.
func KillGroup(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

// Killed reports whether Wait's error says the process died of SIGKILL.
func Killed(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && (ws.Signaled() && ws.Signal() == syscall.SIGKILL || ws.ExitStatus() == 128+int(syscall.SIGKILL))
}

// ExitCode is the exit status in a command's error: 0 for nil, -1 when
// the command did not exit (not started, killed by a signal).
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// LockedBuffer is a bytes.Buffer safe for concurrent writers.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// HTTPGet returns the body of a GET of url, failing the test on any
// error or a status other than 200.
func HTTPGet(t testing.TB, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return b
}
