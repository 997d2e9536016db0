package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// TestImportDirection keeps imports flowing one way (DESIGN.md): nothing
// imports the server (but the test-only internal/testserver) or the
// commands, the client (which the device side
// will use) imports only the wire types, and the pure packages import no
// I/O-bound project package.
func TestImportDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags", testtool.BuildTags, "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "github.com/mxos-linux/mxos-update/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/mxos-linux/mxos-update/"
	allowed := map[string][]string{ // package → the only project packages it may import
		"internal/client":   {"internal/api"},
		"internal/api":      {},
		"internal/rollout":  {},
		"internal/gvariant": {},
		"internal/auth":     {},
		"internal/channel":  {"internal/rollout"},
		"internal/tlog":     {},
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], mod)
		for _, imp := range fields[1:] {
			dep, ok := strings.CutPrefix(imp, mod)
			if !ok {
				continue
			}
			// internal/testserver starts a server for tests; it is
			// test-only, so no package (only _test.go files) may import it.
			if strings.HasPrefix(dep, "cmd/") || dep == "internal/testserver" ||
				(dep == "internal/server" && !strings.HasPrefix(pkg, "cmd/") && pkg != "internal/testserver") {
				t.Errorf("%s imports %s", pkg, dep)
			}
			if only, ok := allowed[pkg]; ok {
				okDep := false
				for _, a := range only {
					okDep = okDep || a == dep
				}
				if !okDep {
					t.Errorf("%s may not import %s", pkg, dep)
				}
			}
		}
		seen++
	}
	if seen < 15 {
		t.Fatalf("go list saw only %d packages", seen)
	}
}

// TestDeviceSideDeps: the updater binary never links server-only code.
func TestDeviceSideDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags", testtool.BuildTags, "-deps", "github.com/mxos-linux/mxos-update/cmd/mxos-updater").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := string(out)
	if !strings.Contains(deps, "internal/updater") {
		t.Fatal("go list did not list the updater's dependencies")
	}
	// The publishing pipeline and the registry are server and release-team
	// code too: the device checks signatures with internal/commitsig and
	// shares only the image naming and signature formats.
	for _, forbidden := range []string{"internal/server", "internal/db", "internal/updates", "internal/auth",
		"internal/release", "internal/oci/registry", "internal/oci/regclient", "internal/tlogstore", "internal/tlogmon"} {
		if strings.Contains(deps, "github.com/mxos-linux/mxos-update/"+forbidden+"\n") {
			t.Errorf("mxos-updater links %s", forbidden)
		}
	}
	// The transparency log's writer; the device checks proofs with
	// internal/tlog only.
	if strings.Contains(deps, "github.com/transparency-dev/tessera") {
		t.Error("mxos-updater links github.com/transparency-dev/tessera")
	}
}
