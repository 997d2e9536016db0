package rollout

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The package is pure policy: the same on server and device, reproducible
// from its inputs. No clock, no randomness, no I/O, no logging.
func TestPure(t *testing.T) {
	allowed := []string{"crypto/sha256", "encoding/binary", "errors", "fmt", "math", "strconv", "strings", "time"}
	forbidden := []string{"time.Now", "time.Since", "time.Until", "time.Sleep", "time.After", "time.Tick", "time.NewTimer", "time.NewTicker"}
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
				t.Errorf("%s imports %s; rollout may only use %v", name, path, allowed)
			}
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, call := range forbidden {
			if strings.Contains(string(src), call+"(") {
				t.Errorf("%s calls %s; time must come in as an argument", name, call)
			}
		}
	}
}
