package testtool

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// earlyExitPipe matches a pipe into a reader that may stop before its
// writer is done (head, grep -q/-m/-l, sed/awk that quit, tail is fine):
// under pipefail the writer's SIGPIPE (141) stops the script.
var earlyExitPipe = regexp.MustCompile(`\|\s*(head\b|grep\s+(-\S*[qml]|--quiet|--max-count|--files-with-matches)|sed\s+[^|]*[^a-zA-Z\\]q\b|awk\s+[^|]*\bexit\b)`)

// TestCIRunHasNoEarlyExitPipes reads .ci/run: bash must parse it, it must
// run with pipefail and CI=true, and no command line may pipe into a
// reader that exits early (failure 1 of issue 10: `ostree --version |
// head -2` stopped about 2 runs in 5).
func TestCIRunHasNoEarlyExitPipes(t *testing.T) {
	script := filepath.Join(ModuleRoot(t), ".ci", "run")
	b, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	Require(t, "bash")
	if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n .ci/run: %v\n%s", err, out)
	}
	for _, want := range []string{"set -euo pipefail", "export CI=true", "./..."} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf(".ci/run lacks %q", want)
		}
	}
	for i, line := range strings.Split(string(b), "\n") {
		if code, _, _ := strings.Cut(line, "#"); earlyExitPipe.MatchString(code) {
			t.Errorf(".ci/run:%d: %q pipes into a reader that may exit early: SIGPIPE under pipefail", i+1, strings.TrimSpace(line))
		}
	}
	for _, bad := range []string{"ostree --version | head -2", "x | grep -q y", "a | grep -m1 b", "a | sed 2q", "a | awk 'NR==2{exit}'"} {
		if !earlyExitPipe.MatchString(bad) {
			t.Errorf("the check misses %q", bad)
		}
	}
}

// TestCIRunWithStubTools runs .ci/run with every tool it calls replaced by
// a stub on PATH: ostree prints far more than a pipe buffer holds (so a
// pipe into head would fail with SIGPIPE every time), and go records how
// it was called. The script must finish with go's status, run the README's
// test command with CI=true and the extra arguments, and print its timing.
func TestCIRunWithStubTools(t *testing.T) {
	bash := Require(t, "bash")
	work := t.TempDir()
	root := filepath.Join(work, "repo")
	bin := filepath.Join(work, "bin")
	src, err := os.ReadFile(filepath.Join(ModuleRoot(t), ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	record := filepath.Join(work, "go-calls")
	stubs := map[string]string{
		// 200,000 lines (about 4 MB): more than any pipe buffer.
		"ostree": `echo 'libostree:'; echo " Version: '2022.7'"; i=0; while [ $i -lt 200000 ]; do echo "  - feature-$i"; i=$((i+1)); done`,
		"cosign": `echo GitVersion: v2.6.5`,
		"go": `echo "CI=$CI $*" >>` + record + `
case "$1" in
env) echo ` + work + `/gopath ;;
version) echo go version go1.26 linux/amd64 ;;
test) exit 3 ;;
esac`,
		"apt-get": `echo "apt-get $*" >>` + record,
	}
	for _, tool := range []string{"gpg", "nginx", "strace", "skopeo", "openssl"} {
		stubs[tool] = "exit 0"
	}
	for name, body := range stubs {
		writeExec(t, filepath.Join(bin, name), "#!/bin/sh\n"+body+"\n")
	}
	writeExec(t, filepath.Join(root, ".ci", "run"), string(src))

	for _, tool := range []string{"bash", "sed", "awk", "mktemp", "env", "dirname", "rm", "tail", "sleep", "tr", "head", "grep"} {
		if p, err := exec.LookPath(tool); err == nil {
			if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
				t.Fatal(err)
			}
		}
	}
	cmd := exec.Command(bash, filepath.Join(root, ".ci", "run"), "-json", "-count=1")
	cmd.Env = []string{"PATH=" + bin, "HOME=" + work}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 3 {
		t.Fatalf(".ci/run: %v, want exit status 3 (go test's)\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	calls, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	want := "CI=true test -timeout 75m -tags " + BuildTags + " -json -count=1 ./..."
	if !strings.Contains(string(calls), want+"\n") {
		t.Errorf("go was called as:\n%s\nwant a line %q", calls, want)
	}
	for _, want := range []string{"ostree 2022.7, cosign v2.6.5,", "tests finished in ", "with status 3; total "} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, &stderr)
		}
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout has more than go test's output:\n%s", &stdout)
	}
}

func writeExec(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}
