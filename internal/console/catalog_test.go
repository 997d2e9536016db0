package console

import (
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/i18n"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// TestTemplateTextsInCatalog: every text a template or the console's Go
// code shows (T calls, refusals, navigation labels) and every rollout
// state has both languages in internal/i18n (T calls in Go are checked by
// i18n's TestSourceMessagesInCatalog too).
func TestTemplateTextsInCatalog(t *testing.T) {
	tmplRE := regexp.MustCompile(`\$\.T ("(?:[^"\\]|\\.)*")`)
	goRE := regexp.MustCompile(`(?:c\.refuse\([^\n]*?http\.Status\w+, |\{"[a-z]+", )("(?:[^"\\]|\\.)*")`)
	n := 0
	check := func(where, quoted string) {
		s, err := strconv.Unquote(quoted)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		n++
		if !i18n.Has(s) {
			t.Errorf("%s: %q is not in the catalog (internal/i18n/catalog_console.go)", where, s)
		}
	}
	err := fs.WalkDir(templateFS, "templates", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(templateFS, p)
		for _, m := range tmplRE.FindAllStringSubmatch(string(data), -1) {
			check(p, m[1])
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"console.go", "pages.go"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range goRE.FindAllStringSubmatch(string(data), -1) {
			check(f, m[1])
		}
	}
	for _, st := range []rollout.State{rollout.StatePending, rollout.StateActive, rollout.StatePaused, rollout.StateHalted, rollout.StateComplete} {
		check("rollout states", strconv.Quote(string(st)))
	}
	if n < 100 {
		t.Errorf("only %d texts found; is the scanner broken?", n)
	}
}
