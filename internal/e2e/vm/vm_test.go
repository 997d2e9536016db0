// Package vm runs deploy/vm/e2e.sh, the real machine test: a Debian
// image with an OSTree sysroot and GRUB boots in QEMU against a real
// mxos-server and is upgraded, rolled back by its health check and by the
// boot loader, and cut off from power while it installs (issue 11).
//
// It is part of the README's test command with steps 1, 3 and 4 and two
// power cuts (defaultSteps, defaultCuts); MXOS_VM_STEPS and MXOS_VM_CUTS
// change that (the script alone runs all four steps and five cuts). With
// TCG only (the Debian kernel hangs under KVM on our machines) every boot
// is slow, and the CI machine ran the earlier scope (all steps, five
// cuts: about 40 minutes here) past 70 minutes. Step 2 (the health
// rollback, 568 s on an idle machine here, the longest step) is what was
// left out: the agent's rollback is also tested without the VM against
// stock `ostree admin` (internal/updater), while the boot loader's
// fall-back (3) and the power cuts (4) can only be tested by booting. The
// scope takes about 19 minutes on an idle machine here, so a CI machine
// three times slower still finishes inside budget. The script is bounded
// at budget; past it the whole process group is stopped and the test
// fails with the lines it printed (streamed to stderr as they come) and
// the serial logs, not with the test binary's timeout.
//
// The Debian base (debootstrap) is cached by package versions in
// ~/.cache/mxos-update/vm; .ci/run builds it in the background while the
// Go tools and the tests compile, and base.sh's lock makes this test's
// own call wait for that build.
// It needs root and the tools .ci/run installs; under CI a missing one
// fails the test.
package vm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// budget bounds the script, below the test command's -timeout 75m.
const budget = 65 * time.Minute

// The test command's scope (see the package doc); MXOS_VM_STEPS and
// MXOS_VM_CUTS widen it.
const (
	defaultSteps = "1 3 4"
	defaultCuts  = 2
)

var (
	summary = regexp.MustCompile(`^vm: (\d+) passed, (\d+) failed$`)
	kept    = regexp.MustCompile(`logs kept in (\S+)`)
)

func TestVMEndToEnd(t *testing.T) {
	if testing.Short() {
		testtool.Skip(t, "the VM test boots QEMU for half an hour or more; not with -short")
	}
	testtool.RequireRoot(t, "the VM image is made on loop devices")
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "debootstrap", "ostree", "losetup",
		"sfdisk", "mkfs.ext4", "debugfs", "nc", "sqlite3", "curl", "python3", "go", "flock"} {
		testtool.Require(t, tool)
	}
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "deploy", "vm", "e2e.sh")
	cuts, steps := defaultCuts, defaultSteps
	if v := os.Getenv("MXOS_VM_STEPS"); v != "" {
		steps = v
	}
	if v := os.Getenv("MXOS_VM_CUTS"); v != "" {
		if cuts, err = strconv.Atoi(v); err != nil || cuts < 1 {
			t.Fatalf("MXOS_VM_CUTS=%q: want a number of power cuts", v)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	cmd := exec.CommandContext(ctx, script)
	cmd.Env = append(os.Environ(), "MXOS_VM_CUTS="+strconv.Itoa(cuts), "MXOS_VM_STEPS="+steps)
	cmd.Dir = root
	// The script, QEMU and the server share one process group: past the
	// budget all of them get SIGTERM (the script's trap stops QEMU and
	// keeps the logs), and whatever is left a minute later is killed, so
	// the test ends with its lines instead of the test binary's timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	lines := &lineWriter{start: time.Now(), passes: map[string]bool{}}
	cmd.Stdout = lines
	cmd.Stderr = lines // one stream, in order
	t.Logf("deploy/vm/e2e.sh with MXOS_VM_STEPS=%q MXOS_VM_CUTS=%d, bounded at %s", steps, cuts, budget)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) //nolint:errcheck // stragglers only
	werr := cmd.Wait()
	start, passes, last, logs := lines.result()
	if logs != "" {
		t.Logf("serial logs kept in %s", logs)
		tailSerial(t, logs)
	}
	if ctx.Err() != nil {
		t.Fatalf("deploy/vm/e2e.sh ran past %s (last summary: %q)", budget, last)
	}
	if werr != nil {
		t.Fatalf("deploy/vm/e2e.sh: %v (last summary: %q)", werr, last)
	}
	m := summary.FindStringSubmatch(last)
	if m == nil {
		t.Fatal(`deploy/vm/e2e.sh ended without its "vm: N passed, M failed" line`)
	}
	if m[2] != "0" {
		t.Fatalf("deploy/vm/e2e.sh: %s", last)
	}
	for _, step := range append([]string{"boot"}, strings.Fields(steps)...) {
		if !passes[step] {
			t.Errorf("step %s never printed PASS", step)
		}
	}
	t.Logf("deploy/vm/e2e.sh: %s in %s", last, time.Since(start).Round(time.Second))
}

// tailSerial prints the end of each serial log the script kept.
func tailSerial(t *testing.T, dir string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.serial.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		t.Logf("--- end of %s ---\n%s", filepath.Base(f), strings.ToValidUTF8(string(b), "?"))
	}
}

// lineWriter takes the script's output: each line goes to stderr at once
// with the seconds since the start (so a run that is cut short still shows
// how far it got), and the PASS lines, the summary and the kept log
// directory are remembered.
type lineWriter struct {
	mu      sync.Mutex
	start   time.Time
	partial []byte
	passes  map[string]bool
	last    string
	logs    string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

func (w *lineWriter) line(line string) {
	fmt.Fprintf(os.Stderr, "vm %5.0fs %s\n", time.Since(w.start).Seconds(), line)
	if rest, ok := strings.CutPrefix(line, "PASS "); ok {
		step, _, _ := strings.Cut(rest, ":")
		w.passes[step] = true
	}
	if m := kept.FindStringSubmatch(line); m != nil {
		w.logs = m[1]
	}
	if strings.HasPrefix(line, "vm: ") && summary.MatchString(line) {
		w.last = line
	}
}

// result is what the lines told, read under the lock: past WaitDelay the
// copying goroutine may still be writing.
func (w *lineWriter) result() (start time.Time, passes map[string]bool, last, logs string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	passes = make(map[string]bool, len(w.passes))
	for k, v := range w.passes {
		passes[k] = v
	}
	return w.start, passes, w.last, w.logs
}
