package testtool

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// skipMethods are the testing.TB methods that skip.
var skipMethods = map[string]bool{"Skip": true, "Skipf": true, "SkipNow": true}

// skipHelpers are this package's functions that may skip (or, under CI,
// fail instead).
var skipHelpers = map[string]bool{"Skip": true, "Missing": true, "Require": true, "RequireRoot": true, "SkipIfShort": true}

// skipCall is one call that can skip a test.
type skipCall struct {
	pos    string // file:line relative to the module root
	call   string // t.Skip, testtool.Skip, ...
	direct bool   // a testing.TB method called outside this package
}

// skipCalls lists the calls in the Go files under root that can skip a
// test: direct Skip/Skipf/SkipNow method calls and calls of this
// package's skip helpers. Only this package's own non-test source may
// call the methods directly.
func skipCalls(t *testing.T, root string) []skipCall {
	t.Helper()
	var out []skipCall
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); p != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		self := rel == "internal/testtool/testtool.go"
		ast.Inspect(f, func(n ast.Node) bool {
			c, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := c.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			name := sel.Sel.Name
			recv, _ := sel.X.(*ast.Ident)
			line := fmt.Sprintf("%s:%d", rel, fset.Position(c.Pos()).Line)
			switch {
			case recv != nil && recv.Name == "testtool" && skipHelpers[name]:
				out = append(out, skipCall{pos: line, call: "testtool." + name})
			case skipMethods[name] && !self:
				r := "?"
				if recv != nil {
					r = recv.Name
				}
				out = append(out, skipCall{pos: line, call: r + "." + name, direct: true})
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestNoDirectSkips lists every call in the module that can skip a test
// and fails on a direct t.Skip, t.Skipf or t.SkipNow (or b., f.): those
// skip silently under CI, where testtool.Skip fails instead.
func TestNoDirectSkips(t *testing.T) {
	calls := skipCalls(t, ModuleRoot(t))
	helpers := 0
	for _, c := range calls {
		if c.direct {
			t.Errorf("%s: %s skips silently under CI; call testtool.Skip (or testtool.SkipIfShort for -short)", c.pos, c.call)
			continue
		}
		helpers++
		t.Logf("%s: %s", c.pos, c.call)
	}
	// The tree has dozens of interop tests guarded by these helpers; none
	// found means the walk looked in the wrong place.
	if helpers < 10 {
		t.Fatalf("found only %d testtool skip calls: the walk missed the module's tests", helpers)
	}
}

// TestSkipCallsFindsDirectSkips checks the lister on a tree with each
// kind of call, so TestNoDirectSkips cannot pass by finding nothing.
func TestSkipCallsFindsDirectSkips(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"go.mod": "module example\n",
		"a/a_test.go": `package a
import ("testing"; "example/internal/testtool")
func TestA(t *testing.T) { t.Skip("x"); testtool.Skip(t, "y") }
func BenchmarkB(b *testing.B) { b.Skipf("%d", 1) }
func FuzzC(f *testing.F) { f.SkipNow() }
func TestD(t *testing.T) { testtool.Require(t, "ostree"); testtool.RequireRoot(t, "z") }
`,
		"internal/testtool/testtool.go": "package testtool\nfunc Skip(t interface{ Skipf(string, ...any) }) { t.Skipf(\"ok here\") }\n",
		"testdata/x.go":                 "package x\nfunc f(t T) { t.Skip() }\n",
	}
	for name, body := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, c := range skipCalls(t, root) {
		got = append(got, fmt.Sprintf("%s %s %v", c.pos, c.call, c.direct))
	}
	want := []string{
		"a/a_test.go:3 t.Skip true",
		"a/a_test.go:3 testtool.Skip false",
		"a/a_test.go:4 b.Skipf true",
		"a/a_test.go:5 f.SkipNow true",
		"a/a_test.go:6 testtool.Require false",
		"a/a_test.go:6 testtool.RequireRoot false",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("skip calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestSkipUnderCI checks that Skip, Missing and Unsupported fail under
// CI and skip or log elsewhere.
func TestSkipUnderCI(t *testing.T) {
	tests := []struct {
		name    string
		ci      string
		call    func(testing.TB)
		failed  bool
		skipped bool
	}{
		{"Skip in CI", "true", func(t testing.TB) { Skip(t, "no strace") }, true, false},
		{"Skip locally", "", func(t testing.TB) { Skip(t, "no strace") }, false, true},
		{"Missing in CI", "1", func(t testing.TB) { Missing(t, "no ostree") }, true, false},
		{"Missing locally", "", func(t testing.TB) { Missing(t, "no ostree") }, false, true},
		{"Unsupported in CI", "true", func(t testing.TB) { Unsupported(t, "no xattrs") }, true, false},
		{"Unsupported locally", "", func(t testing.TB) { Unsupported(t, "no xattrs") }, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			r := &recorder{TB: t}
			done := make(chan struct{})
			go func() { // Fatal and Skip end the goroutine, as in a test
				defer close(done)
				tc.call(r)
			}()
			<-done
			if r.failed != tc.failed || r.skipped != tc.skipped {
				t.Errorf("failed=%v skipped=%v, want failed=%v skipped=%v (%q)", r.failed, r.skipped, tc.failed, tc.skipped, r.msg)
			}
		})
	}
}

// recorder is a testing.TB that records failures and skips instead of
// acting on them.
type recorder struct {
	testing.TB
	failed, skipped bool
	msg             string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Logf(format string, args ...any) { r.msg = fmt.Sprintf(format, args...) }
