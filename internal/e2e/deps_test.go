package e2e

import (
	"os/exec"
	"slices"
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
		"internal/api":      {"internal/event"},
		"internal/event":    {},
		"internal/rollout":  {},
		"internal/gvariant": {},
		"internal/auth":     {},
		"internal/channel":  {"internal/rollout"},
		"internal/tlog":     {},
	}
	// Seams (issue 10): these project packages must not import those,
	// directly; the device-side ones are also checked transitively by
	// TestDeviceSideDeps.
	never := map[string][]string{
		"internal/db":                  {"internal/api"},
		"internal/oci/regclient":       {"internal/oci/registry"},
		"internal/oci/ocitest":         {"internal/oci/registry"},
		"internal/oci/imagename":       {"internal/oci/registry", "internal/oci/bootimage"},
		"internal/channelmeta":         {"internal/channelmeta/publish"},
		"internal/channelmeta/publish": {"internal/server", "internal/db"},
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
			if slices.Contains(never[pkg], dep) {
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
// A forbidden entry also forbids the packages under it.
func TestDeviceSideDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags", testtool.BuildTags, "-deps", "github.com/mxos-linux/mxos-update/cmd/mxos-updater").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/mxos-linux/mxos-update/"
	var deps []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if dep, ok := strings.CutPrefix(line, mod); ok {
			deps = append(deps, dep)
		}
	}
	if !slices.Contains(deps, "internal/updater") || !slices.Contains(deps, "internal/channelmeta") {
		t.Fatalf("go list did not list the updater's dependencies: %v", deps)
	}
	// The publishing pipeline, the registry, the image builder, the
	// channel metadata repository and the test helpers are server,
	// release-team or test code: the device checks signatures with
	// internal/commitsig and internal/channelmeta and shares only the wire
	// types, the image names and the signature formats.
	forbidden := []string{"internal/server", "internal/db", "internal/updates", "internal/auth",
		"internal/release", "internal/oci/registry", "internal/oci/regclient", "internal/oci/bootimage",
		"internal/oci/ocitest", "internal/channelmeta/publish", "internal/channelmeta/metatest",
		"internal/testserver", "internal/testtool", "cmd/mxos-server", "cmd/mxosctl", "cmd/mxos-bench",
		"internal/tlogstore", "internal/tlogmon"}
	for _, dep := range deps {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("mxos-updater links %s", dep)
			}
		}
	}
	// The transparency log's writer; the device checks proofs with
	// internal/tlog only.
	if strings.Contains(string(out), "github.com/transparency-dev/tessera") {
		t.Error("mxos-updater links github.com/transparency-dev/tessera")
	}
}
