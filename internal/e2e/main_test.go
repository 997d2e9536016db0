package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/testtool"
	"github.com/mxos-linux/mxos-update/internal/testtool/pgtest"
)

// binDir holds mxosctl and mxos-server, built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "mxos-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := buildBinaries(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building the binaries under test:", err)
		return 1
	}
	binDir = dir
	defer pgtest.StopShared()
	return m.Run()
}

// buildBinaries runs `go build -o dir/ ./cmd/mxosctl ./cmd/mxos-server`
// from the module root, cgo-free like the release builds.
func buildBinaries(dir string) error {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return fmt.Errorf("not inside a Go module (go env GOMOD = %q)", gomod)
	}
	cmd := exec.Command("go", "build", "-tags", testtool.BuildTags, "-o", dir+string(filepath.Separator), "./cmd/mxosctl", "./cmd/mxos-server")
	cmd.Dir = filepath.Dir(gomod)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%v\n%s", err, buf.String())
	}
	return nil
}

// mxosctl is the path of the built mxosctl binary.
func mxosctl() string { return filepath.Join(binDir, "mxosctl") }

// mxosServer is the path of the built mxos-server binary.
func mxosServer() string { return filepath.Join(binDir, "mxos-server") }
