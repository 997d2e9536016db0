package channel

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The package reads files and nothing else: no server, storage or ostree
// code (the ref grammar is checked locally), no network, no logging.
func TestImports(t *testing.T) {
	allowed := []string{
		"errors", "fmt", "io", "math", "os", "path/filepath", "regexp", "slices", "strings", "time",
		"go.yaml.in/yaml/v4",
		"github.com/mxos-linux/mxos-update/internal/rollout",
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if !slices.Contains(allowed, path) {
				t.Errorf("%s imports %s; channel may only use %v", name, path, allowed)
			}
		}
	}
}
