package i18n

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/rollout"
)

func TestFromEnv(t *testing.T) {
	for _, tc := range []struct {
		all, msgs, lang string
		spanish         bool
	}{
		{"", "", "", false},
		{"", "", "es_MX.UTF-8", true},
		{"", "", "es_ES", true},
		{"", "", "es", true},
		{"", "", "en_US.UTF-8", false},
		{"", "", "C", false},
		{"", "", "POSIX", false},
		{"", "", "C.UTF-8", false},
		{"", "", "de_DE.UTF-8", false},
		{"", "", "es_MX.UTF-8@euro", true},
		{"", "en_US.UTF-8", "es_MX.UTF-8", false}, // LC_MESSAGES over LANG
		{"", "es_MX", "en_US", true},
		{"C", "es_MX", "es_MX", false}, // LC_ALL over both
		{"es_MX.utf8", "C", "C", true},
		{"", "", "not a locale!!", false},
	} {
		env := map[string]string{"LC_ALL": tc.all, "LC_MESSAGES": tc.msgs, "LANG": tc.lang}
		p := FromEnv(func(k string) string { return env[k] })
		if p.Spanish() != tc.spanish {
			t.Errorf("LC_ALL=%q LC_MESSAGES=%q LANG=%q: Spanish %v, want %v", tc.all, tc.msgs, tc.lang, p.Spanish(), tc.spanish)
		}
	}
}

func TestAcceptLanguage(t *testing.T) {
	for h, spanish := range map[string]bool{
		"":                             false,
		"es-MX":                        true,
		"es":                           true,
		"es-ES,es;q=0.9":               true,
		"en-US,en;q=0.9,es;q=0.8":      false,
		"fr-FR, es;q=0.5":              true,
		"de":                           false,
		";;;garbage":                   false,
		"es-419,en;q=0.5":              true,
		"en;q=0.1, es-MX;q=0.9":        true,
		"*":                            false,
		"zz-ZZ, en-GB;q=0.3, es;q=0.2": false,
	} {
		if got := AcceptLanguage(h).Spanish(); got != spanish {
			t.Errorf("Accept-Language %q: Spanish %v, want %v", h, got, spanish)
		}
	}
}

var verbRE = regexp.MustCompile(`%[-+# 0]*[0-9]*(\.[0-9]+)?[a-zA-Z%]`)

// TestCatalogComplete: every message has both languages, no key twice,
// and the same verbs in the same order in both.
func TestCatalogComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range messages {
		if strings.TrimSpace(m.en) == "" || strings.TrimSpace(m.es) == "" {
			t.Errorf("message %q lacks a language (es %q)", m.en, m.es)
			continue
		}
		if seen[m.en] {
			t.Errorf("message %q twice", m.en)
		}
		seen[m.en] = true
		ve, vs := verbRE.FindAllString(m.en, -1), verbRE.FindAllString(m.es, -1)
		if fmt.Sprint(ve) != fmt.Sprint(vs) {
			t.Errorf("message %q: verbs %v in English, %v in Spanish", m.en, ve, vs)
		}
		// A text with words must be translated (identical only when it
		// is verbs and punctuation, or a command line).
		if m.en == m.es && regexp.MustCompile(`[a-z]{3,} [a-z]{3,}`).MatchString(verbRE.ReplaceAllString(m.en, "")) {
			t.Errorf("message %q is not translated", m.en)
		}
	}
}

func TestTranslate(t *testing.T) {
	es, en := New(Spanish), New(English)
	key := "Restart the machine to use version %s."
	if got := es.T(key, "10.0.3"); got != "Reinicie el equipo para usar la versión 10.0.3." {
		t.Errorf("Spanish: %q", got)
	}
	for _, p := range []*Printer{en, nil} {
		if got := p.T(key, "10.0.3"); got != "Restart the machine to use version 10.0.3." {
			t.Errorf("English: %q", got)
		}
	}
	// A text not in the catalog prints as it is.
	if got := es.T("not in the catalog %s", "x"); got != "not in the catalog x" {
		t.Errorf("unknown key: %q", got)
	}
}

func TestErrors(t *testing.T) {
	refused := Errorf("update refused")
	inner := Errorf("%w: %w", refused, Errorf("the server offered version %s, older than the installed %s", "10.0.1", "10.0.2"))
	err := fmt.Errorf("context: %w", Errorf("download of %s: %w", "10.0.1", inner))
	if !errors.Is(err, refused) {
		t.Fatal("errors.Is lost the wrapped sentinel")
	}
	wantEn := "context: download of 10.0.1: update refused: the server offered version 10.0.1, older than the installed 10.0.2"
	if err.Error() != wantEn || New(English).Error(err) != wantEn {
		t.Errorf("English:\n%s\n%s", err.Error(), New(English).Error(err))
	}
	wantEs := "context: descarga de 10.0.1: actualización rechazada: el servidor ofreció la versión 10.0.1, más vieja que la instalada 10.0.2"
	if got := New(Spanish).Error(err); got != wantEs {
		t.Errorf("Spanish:\n%s\nwant\n%s", got, wantEs)
	}
	// An error argument of T is localized; a plain one is kept.
	if got := New(Spanish).T("Update to %s failed: %v", "10.0.1", errors.New("EOF")); got != "Falló la actualización a 10.0.1: EOF" {
		t.Errorf("plain error: %q", got)
	}
	if got := New(Spanish).T("Update to %s refused: %v", "10.0.1", inner); !strings.Contains(got, "actualización rechazada: el servidor") {
		t.Errorf("catalog error: %q", got)
	}
	// A catalog error wrapped inside plain text with a detail after it
	// (fmt.Errorf("%w: detail", ErrRefused)) keeps the detail: the merged
	// tree printed only "update refused" for every metadata refusal.
	mid := fmt.Errorf("%w: the signed channel metadata could not be verified: %w", refused, errors.New("meta lists \"evil.json\""))
	for _, p := range []*Printer{New(English), New(Spanish)} {
		if got := p.Error(mid); got != mid.Error() {
			t.Errorf("%v: %q, want the whole text %q", p.Lang(), got, mid.Error())
		}
		if got := p.T("Update to %s refused: %v", "10.0.1", mid); !strings.Contains(got, `meta lists "evil.json"`) {
			t.Errorf("%v: the refusal lost its detail: %q", p.Lang(), got)
		}
	}
}

func FuzzLocale(f *testing.F) {
	for _, s := range []string{"es_MX.UTF-8", "C", "", "es@x", "_", ".", "en-US-u-va-posix", "x-private"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tag := Locale(s)
		if tag != English && tag != Spanish {
			t.Fatalf("Locale(%q) = %v", s, tag)
		}
		_ = AcceptLanguage(s).T("%s", s)
	})
}

// Every reason code internal/rollout defines has plain Spanish words.
func TestReasons(t *testing.T) {
	for _, r := range []rollout.Reason{rollout.ReasonEligible, rollout.ReasonBarrier, rollout.ReasonSuccessor, rollout.ReasonNotYet,
		rollout.ReasonPaused, rollout.ReasonHalted, rollout.ReasonRolledBack, rollout.ReasonUpToDate, rollout.ReasonDeadEnd, rollout.ReasonInvalid} {
		if New(Spanish).Reason(string(r)) == string(r) {
			t.Errorf("reason %q has no Spanish text", r)
		}
		if New(English).Reason(string(r)) != string(r) {
			t.Errorf("reason %q changed in English", r)
		}
	}
	if New(Spanish).Reason("something-new") != "something-new" {
		t.Error("an unknown reason is not shown as it is")
	}
}
