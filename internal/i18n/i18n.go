// Package i18n owns the words people read: the es-MX and English message
// catalog of mxosctl, mxos-updater, mxos-server's API error messages and
// the web console, and the choice of language.
//
// Keys are the English texts themselves (the golang.org/x/text/message
// convention), so a message missing from the catalog still prints in
// English. catalog.go holds every message in both languages;
// TestCatalogComplete fails when one lacks a language, and
// TestSourceMessagesInCatalog fails when code passes a text to the
// catalog that it does not hold.
//
// Language choice for the CLIs and the agent is POSIX's: the first
// non-empty of LC_ALL, LC_MESSAGES and LANG. A Spanish locale (es, es_MX,
// es_ES.UTF-8, ...) gives es-MX; anything else, C and POSIX included,
// gives English. Identifiers, versions, commit ids, paths, JSON output,
// table column keys used by scripts and error codes are never translated;
// the detail of an error from deep inside (a checksum, an HTTP status) is
// shown as it is, inside a translated sentence.
//
// mxos-server's API error messages are translated by Accept-Language:
// internal/server's writeError looks up the format api.Errorf was given
// (catalog_server.go) and formats it again in es-MX when the request
// prefers Spanish; a message the catalog lacks stays English. Clients
// branch on the error code, never on the message. The web console
// (internal/console, catalog_console.go) picks its language from its
// switch's cookie, else Accept-Language, and asks the API in the same one.
//
// Not translated (yet): cobra's own errors ("unknown command", argument
// counts), pflag's "(default ...)" and "[flags]", commands' Long help,
// and errors from deep packages (shown as they are, inside a translated
// sentence).
//
// Numbers formatted with %d are localized by x/text (digit grouping); pass
// identifiers that look like numbers as strings.
//
// The package imports only x/text and cobra (Localize), so the device
// binary may link it.
package i18n

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"golang.org/x/text/message/catalog"
)

// The languages of the catalog.
var (
	English = language.English
	Spanish = language.MustParse("es-MX")
)

var cat = func() *catalog.Builder {
	b := catalog.NewBuilder(catalog.Fallback(English))
	for _, m := range messages {
		key := noWrap(m.en)
		if err := b.SetString(English, key, key); err != nil {
			panic(err)
		}
		if err := b.SetString(Spanish, key, noWrap(m.es)); err != nil {
			panic(err)
		}
	}
	return b
}()

var matcher = language.NewMatcher([]language.Tag{English, Spanish})

// Locale returns the language a POSIX locale name asks for ("es_MX.UTF-8",
// "es", "C", "en_US"): Spanish for any Spanish locale, else English.
func Locale(name string) language.Tag {
	name, _, _ = strings.Cut(name, ".")
	name, _, _ = strings.Cut(name, "@")
	if name == "" || name == "C" || name == "POSIX" {
		return English
	}
	tag, err := language.Parse(strings.ReplaceAll(name, "_", "-"))
	if err != nil {
		return English
	}
	if base, _ := tag.Base(); base.String() == "es" {
		return Spanish
	}
	return English
}

// FromEnv returns the printer for the environment getenv reads (os.Getenv):
// the first non-empty of LC_ALL, LC_MESSAGES and LANG decides.
func FromEnv(getenv func(string) string) *Printer {
	for _, k := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		if v := getenv(k); v != "" {
			return New(Locale(v))
		}
	}
	return New(English)
}

// AcceptLanguage returns the printer for an HTTP Accept-Language header
// (for mxos-server's API errors and the console): es-MX for any Spanish
// preference ranked above English, else English.
func AcceptLanguage(header string) *Printer {
	tags, _, err := language.ParseAcceptLanguage(header)
	if err != nil || len(tags) == 0 {
		return New(English)
	}
	_, i, conf := matcher.Match(tags...)
	if conf == language.No || i != 1 {
		return New(English)
	}
	return New(Spanish)
}

// Printer formats catalog messages in one language. A nil *Printer prints
// English.
type Printer struct {
	tag language.Tag
	p   *message.Printer
}

// New returns a printer for tag (English or Spanish).
func New(tag language.Tag) *Printer {
	if tag != Spanish {
		tag = English
	}
	return &Printer{tag: tag, p: message.NewPrinter(tag, message.Catalog(cat))}
}

// Lang is the printer's language.
func (p *Printer) Lang() language.Tag {
	if p == nil {
		return English
	}
	return p.tag
}

// Spanish reports whether p prints Spanish.
func (p *Printer) Spanish() bool { return p.Lang() == Spanish }

// T formats the message key (an English format string in the catalog) in
// p's language. Error arguments are localized first (Error).
func (p *Printer) T(key string, args ...any) string {
	if p == nil {
		p = New(English)
	}
	for i, a := range args {
		if err, ok := a.(error); ok {
			args[i] = p.Error(err)
		}
	}
	return p.p.Sprintf(noWrap(key), args...)
}

// noWrap turns %w (wrap, for Errorf's English error) into %v, which is
// what the x/text printer understands.
func noWrap(s string) string { return strings.ReplaceAll(s, "%w", "%v") }

// Text returns the catalog text key in p's language as it is, with no
// formatting (for help texts, which may hold a literal %).
func (p *Printer) Text(key string) string {
	if p.Spanish() {
		if es, ok := spanish[key]; ok {
			return es
		}
	}
	return key
}

var spanish = func() map[string]string {
	m := make(map[string]string, len(messages))
	for _, e := range messages {
		m[e.en] = e.es
	}
	return m
}()

// Say writes T(key, args...) and a newline to w; nothing when w is nil.
func (p *Printer) Say(w io.Writer, key string, args ...any) {
	if w != nil {
		fmt.Fprintln(w, p.T(key, args...))
	}
}

// Error returns err's text in p's language: the chain's *Error layers are
// translated, anything else is shown as it is.
func (p *Printer) Error(err error) string {
	var e *Error
	if !errors.As(err, &e) {
		return err.Error()
	}
	// Text before the first translatable layer (plain fmt.Errorf context)
	// stays as it is. When plain text also follows it (fmt.Errorf("%w:
	// detail", ErrRefused)), translating only that layer would drop the
	// detail: the whole text is kept as it is.
	full, own := err.Error(), e.Error()
	if !strings.HasSuffix(full, own) {
		return full
	}
	prefix := strings.TrimSuffix(full, own)
	args := make([]any, len(e.args))
	copy(args, e.args)
	return prefix + p.T(e.key, args...)
}

// Error is an error whose text is a catalog message. Error() is English;
// Printer.Error translates it, and the errors among its arguments.
type Error struct {
	key  string
	args []any
	err  error // the English text, and what %w wraps
}

// Errorf returns an *Error for the catalog message key; %w wraps as with
// fmt.Errorf.
func Errorf(key string, args ...any) error {
	return &Error{key: key, args: args, err: fmt.Errorf(key, args...)}
}

func (e *Error) Error() string { return e.err.Error() }

// Unwrap returns what the message wraps (%w), for errors.Is and As.
func (e *Error) Unwrap() []error {
	switch u := e.err.(type) {
	case interface{ Unwrap() []error }:
		return u.Unwrap()
	case interface{ Unwrap() error }:
		return []error{u.Unwrap()}
	}
	return nil
}

// Has reports whether key is a catalog message (for tests of packages
// whose messages are constants).
func Has(key string) bool {
	for _, m := range messages {
		if m.en == key {
			return true
		}
	}
	return false
}

// usageHeadings are the English texts of cobra's usage template.
var usageHeadings = []string{
	"Usage:", "Aliases:", "Examples:", "Available Commands:", "Additional Commands:",
	"Global Flags:", "Flags:", "Additional help topics:",
	`Use "{{.CommandPath}} [command] --help" for more information about a command.`,
}

// UsageTemplate returns cobra's usage template tmpl with its headings in
// p's language.
func UsageTemplate(p *Printer, tmpl string) string {
	if !p.Spanish() {
		return tmpl
	}
	for _, h := range usageHeadings {
		// "Flags:" also ends "Global Flags:"; replace whole lines only.
		tmpl = strings.ReplaceAll(tmpl, "\n"+h, "\n"+p.Text(h))
		if strings.HasPrefix(tmpl, h) {
			tmpl = p.Text(h) + tmpl[len(h):]
		}
	}
	return tmpl
}
