package e2ekit

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/testtool"
	"github.com/mxos-linux/mxos-update/internal/testtool/pgtest"
)

// binDir holds mxosctl and mxos-server, built once by Main.
var binDir string

// Main builds the binaries under test, runs the tests and stops the
// shared PostgreSQL server if one was started: a test package's TestMain
// is os.Exit(e2ekit.Main(m)).
func Main(m *testing.M) int {
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

// BinDir is the directory of the built binaries (Main).
func BinDir() string { return binDir }

// Mxosctl is the path of the built mxosctl binary.
func Mxosctl() string { return filepath.Join(binDir, "mxosctl") }

// MxosServer is the path of the built mxos-server binary.
func MxosServer() string { return filepath.Join(binDir, "mxos-server") }

var (
	updaterOnce sync.Once
	updaterBin  string
	updaterErr  error
)

// MxosUpdater builds the mxos-updater binary once for the test binary.
func MxosUpdater(t testing.TB) string {
	t.Helper()
	updaterOnce.Do(func() {
		p := filepath.Join(binDir, "mxos-updater")
		out, err := exec.Command("go", "build", "-tags", testtool.BuildTags, "-o", p, "github.com/mxos-linux/mxos-update/cmd/mxos-updater").CombinedOutput()
		if err != nil {
			updaterErr = fmt.Errorf("go build mxos-updater: %v\n%s", err, out)
			return
		}
		updaterBin = p
	})
	if updaterErr != nil {
		t.Fatal(updaterErr)
	}
	return updaterBin
}
