package health

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func writeScript(t *testing.T, dir, kind, name, body string, mode os.FileMode) {
	t.Helper()
	sub := filepath.Join(dir, kind+".d")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, name), []byte("#!/bin/sh\n"+body+"\n"), mode); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestAllPass(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, dir, KindRequired, "10-disk", "echo disk ok", 0o755)
	writeScript(t, dir, KindRequired, "20-boot", "exit 0", 0o755)
	writeScript(t, dir, KindWanted, "10-net", "echo net ok >&2", 0o755)
	res, err := Run(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || len(res.Required) != 2 || len(res.Wanted) != 1 {
		t.Fatalf("unexpected result: %+v", res)
	}
	if res.Required[0].Output != "disk ok\n" || res.Wanted[0].Output != "net ok\n" {
		t.Fatalf("output not captured: %q %q", res.Required[0].Output, res.Wanted[0].Output)
	}
	if got, want := res.Summary(), "2 required checks passed; 1 wanted check passed. The system is healthy."; got != want {
		t.Fatalf("summary = %q, want %q", got, want)
	}
}

func TestRequiredFailure(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, dir, KindRequired, "10-disk", "exit 0", 0o755)
	writeScript(t, dir, KindRequired, "30-display", "echo no screen; exit 3", 0o755)
	res, err := Run(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK {
		t.Fatal("want not OK")
	}
	c := res.Required[1]
	if c.ExitCode != 3 || c.Passed() || c.Output != "no screen\n" {
		t.Fatalf("unexpected check: %+v", c)
	}
	s := res.Summary()
	if !strings.Contains(s, "1 required check failed: 30-display (exit 3)") || !strings.Contains(s, "not healthy") {
		t.Fatalf("summary = %q", s)
	}
}

func TestWantedFailureOnlyWarns(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, dir, KindRequired, "10-disk", "exit 0", 0o755)
	writeScript(t, dir, KindRequired, "11-disk", "exit 0", 0o755)
	writeScript(t, dir, KindWanted, "20-network", "exit 1", 0o755)
	res, err := Run(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK {
		t.Fatal("wanted failure must not make the run fail")
	}
	s := res.Summary()
	if !strings.HasPrefix(s, "2 required checks passed; 1 wanted check failed: 20-network (exit 1).") || !strings.Contains(s, "should be looked at") {
		t.Fatalf("summary = %q", s)
	}
}

func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	// A killed child reparented to a PID 1 that does not reap may linger
	// as a zombie; that counts as gone.
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

func TestTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	writeScript(t, dir, KindRequired, "10-slow", "sleep 10 &\necho $! > "+pidFile+"\nwait", 0o755)
	start := time.Now()
	res, err := Run(context.Background(), dir, Options{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("run took %v", el)
	}
	if res.OK {
		t.Fatal("want not OK after a timeout")
	}
	c := res.Required[0]
	if !c.TimedOut || c.ExitCode != -1 || !strings.Contains(c.Err, "timed out after 200ms") {
		t.Fatalf("unexpected check: %+v", c)
	}
	if !strings.Contains(res.Summary(), "10-slow (timed out after 200ms)") {
		t.Fatalf("summary = %q", res.Summary())
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("child process %d still running after timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSkipsNonExecutableAndDotfiles(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, dir, KindRequired, "10-ok", "exit 0", 0o755)
	writeScript(t, dir, KindRequired, "20-readme", "exit 1", 0o644)
	writeScript(t, dir, KindRequired, ".30-hidden", "exit 1", 0o755)
	if err := os.Mkdir(filepath.Join(dir, "required.d", "40-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || len(res.Required) != 1 || res.Required[0].Name != "10-ok" {
		t.Fatalf("unexpected result: %+v", res)
	}
	notes := strings.Join(res.Notes, "\n")
	for _, want := range []string{"20-readme: not executable", ".30-hidden: hidden file", "40-dir: not a regular file"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes %q missing %q", notes, want)
		}
	}
}

func TestOrderByName(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "order.log")
	for _, n := range []string{"30-c", "10-a", "20-b"} {
		writeScript(t, dir, KindRequired, n, "echo "+n+" >> "+log, 0o755)
	}
	writeScript(t, dir, KindWanted, "05-w", "echo 05-w >> "+log, 0o755)
	res, err := Run(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "10-a\n20-b\n30-c\n05-w\n"; got != want {
		t.Fatalf("order = %q, want %q", got, want)
	}
	for i, want := range []string{"10-a", "20-b", "30-c"} {
		if res.Required[i].Name != want {
			t.Fatalf("Required[%d] = %s, want %s", i, res.Required[i].Name, want)
		}
	}
}

func TestOutputBounded(t *testing.T) {
	dir := t.TempDir()
	// About 200 KB of output ending with a recognisable line.
	writeScript(t, dir, KindRequired, "10-chatty", `i=0
while [ $i -lt 4000 ]; do echo "line $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"; i=$((i+1)); done
echo THE-END`, 0o755)
	res, err := Run(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := res.Required[0].Output
	if len(out) > DefaultMaxOutput+100 {
		t.Fatalf("output not bounded: %d bytes", len(out))
	}
	if !strings.HasSuffix(out, "THE-END\n") || !strings.HasPrefix(out, "[... ") {
		t.Fatalf("unexpected output head/tail: %q ... %q", out[:40], out[len(out)-20:])
	}
}

func TestTailBuffer(t *testing.T) {
	tb := &tailBuffer{max: 5}
	for _, s := range []string{"ab", "cd", "ef", "0123456789", "x"} {
		if n, err := tb.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatal(n, err)
		}
	}
	if got := string(tb.buf); got != "6789x" {
		t.Fatalf("buf = %q", got)
	}
	if tb.dropped != 12 { // 17 bytes written, 5 kept
		t.Fatalf("dropped = %d", tb.dropped)
	}
}

func TestGreenAndRedHooks(t *testing.T) {
	for _, healthy := range []bool{true, false} {
		dir := t.TempDir()
		green, red := filepath.Join(dir, "green.marker"), filepath.Join(dir, "red.marker")
		code := "0"
		if !healthy {
			code = "1"
		}
		writeScript(t, dir, KindRequired, "10-check", "exit "+code, 0o755)
		writeScript(t, dir, KindGreen, "10-mark", "touch "+green+"; exit 7", 0o755)
		writeScript(t, dir, KindRed, "10-mark", "touch "+red+"; exit 7", 0o755)
		res, err := Run(context.Background(), dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if res.OK != healthy {
			t.Fatalf("healthy=%v: OK = %v (hook failure must not change it)", healthy, res.OK)
		}
		if exists(green) != healthy || exists(red) == healthy {
			t.Fatalf("healthy=%v: green marker %v, red marker %v", healthy, exists(green), exists(red))
		}
		if len(res.Hooks) != 1 || res.Hooks[0].ExitCode != 7 {
			t.Fatalf("hooks = %+v", res.Hooks)
		}
	}
}

func TestMissingDirs(t *testing.T) {
	res, err := Run(context.Background(), filepath.Join(t.TempDir(), "nope"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK || len(res.Required)+len(res.Wanted)+len(res.Hooks) != 0 {
		t.Fatalf("unexpected result: %+v", res)
	}
	if !strings.Contains(res.Summary(), "No health checks are installed") {
		t.Fatalf("summary = %q", res.Summary())
	}
}

func TestEnvPassed(t *testing.T) {
	dir := t.TempDir()
	writeScript(t, dir, KindRequired, "10-env", `[ "$MXOS_TEST" = yes ]`, 0o755)
	res, err := Run(context.Background(), dir, Options{Env: []string{"MXOS_TEST=yes"}})
	if err != nil || !res.OK {
		t.Fatalf("res=%+v err=%v", res, err)
	}
}

func TestContextCancellation(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "second.ran")
	red := filepath.Join(dir, "red.ran")
	writeScript(t, dir, KindRequired, "10-slow", "sleep 10", 0o755)
	writeScript(t, dir, KindRequired, "20-next", "touch "+marker, 0o755)
	writeScript(t, dir, KindRed, "10-mark", "touch "+red, 0o755)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	res, err := Run(ctx, dir, Options{Timeout: time.Minute})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("run took %v", el)
	}
	if res.OK || len(res.Required) != 1 || res.Required[0].TimedOut || !strings.Contains(res.Required[0].Err, "cancelled") {
		t.Fatalf("unexpected result: %+v", res)
	}
	if exists(marker) || exists(red) {
		t.Fatal("scripts ran after cancellation")
	}
}

func TestStartFailure(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "required.d")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "10-bad"), []byte("#!/nonexistent/interpreter\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK || !strings.HasPrefix(res.Required[0].Err, "could not start") {
		t.Fatalf("unexpected result: %+v", res.Required)
	}
}
