package i18n

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// translated lists the code whose texts go through the catalog, and which
// of its texts: "calls" are the first argument of say (the agent's), refusef,
// userError, T and i18n.Errorf, and the second of Say and of say(w, key)
// (mxosctl's); "short" the Short of cobra commands;
// "flags" the usage (last argument) of pflag definitions.
var translated = []struct {
	dir   string
	kinds []string
}{
	{"../../internal/updater", []string{"calls"}},
	{"../../cmd/mxos-updater", []string{"calls", "short", "flags"}},
	{"../../cmd/mxosctl", []string{"calls", "short", "flags"}},
	{"../../internal/console", []string{"calls"}}, // its templates: internal/console's TestTemplateTextsInCatalog
	// mxos-server's API error messages (api.Errorf, refuse), translated
	// by Accept-Language in internal/server's writeError.
	{"../../internal/server", []string{"api"}},
	{"../../internal/api", []string{"api"}},
	{"../../internal/updates", []string{"api"}},
}

var flagFunc = regexp.MustCompile(`^(String|Bool|Int|Int64|Uint64|Duration|Float64|StringSlice|StringArray|Count|IntSlice)(Var)?P?$`)

// literal returns the value of a string literal or a + of literals.
func literal(e ast.Expr) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		a, ok1 := literal(e.X)
		b, ok2 := literal(e.Y)
		return a + b, ok1 && ok2
	case *ast.ParenExpr:
		return literal(e.X)
	}
	return "", false
}

type found struct {
	pos  token.Position
	text string
}

// sourceMessages returns the literal texts of the given kinds in dir's
// non-test Go files.
func sourceMessages(t *testing.T, dir string, kinds []string) []found {
	t.Helper()
	want := map[string]bool{}
	for _, k := range kinds {
		want[k] = true
	}
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	var out []found
	add := func(e ast.Expr) {
		if s, ok := literal(e); ok {
			out = append(out, found{fset.Position(e.Pos()), s})
		}
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				name, pkg := "", ""
				switch fn := n.Fun.(type) {
				case *ast.Ident:
					name = fn.Name
				case *ast.SelectorExpr:
					name = fn.Sel.Name
					if id, ok := fn.X.(*ast.Ident); ok {
						pkg = id.Name
					}
				}
				switch {
				case !want["calls"] || len(n.Args) == 0:
				case name == "say" && isLiteral(n.Args[0]) || name == "refusef" || name == "userError" || name == "bad" || name == "T" || name == "Errorf" && pkg == "i18n":
					add(n.Args[0])
				case (name == "Say" || name == "say") && len(n.Args) > 1:
					add(n.Args[1]) // say(w, key, ...) in mxosctl
				}
				if want["api"] && len(n.Args) > 1 && (name == "Errorf" && (pkg == "api" || pkg == "") || name == "refuse" && len(n.Args) > 2) {
					if name == "refuse" {
						add(n.Args[2])
					} else {
						add(n.Args[1])
					}
				}
				if want["flags"] && flagFunc.MatchString(name) && pkg != "strconv" && pkg != "fmt" && len(n.Args) >= 3 {
					add(n.Args[len(n.Args)-1])
				}
			case *ast.KeyValueExpr:
				if id, ok := n.Key.(*ast.Ident); ok && want["short"] && id.Name == "Short" {
					add(n.Value)
				}
			}
			return true
		})
	}
	return out
}

// TestSourceMessagesInCatalog fails when code shows a person a text the
// catalog lacks (so it would print in English only).
func TestSourceMessagesInCatalog(t *testing.T) {
	for _, d := range translated {
		msgs := sourceMessages(t, d.dir, d.kinds)
		if len(msgs) == 0 {
			t.Errorf("%s: no messages found; is the scanner broken?", d.dir)
		}
		for _, m := range msgs {
			if !Has(m.text) {
				t.Errorf("%s: %q is not in the catalog (internal/i18n/catalog.go)", m.pos, m.text)
			}
		}
	}
}

func isLiteral(e ast.Expr) bool { _, ok := literal(e); return ok }
