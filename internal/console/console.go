package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/i18n"
)

// Prefix is where the console is served (a contract).
const Prefix = "/console/"

// Cookie names and lifetimes.
const (
	sessionCookie = "mxos_session"
	csrfCookie    = "mxos_csrf"
	langCookie    = "mxos_lang"
	sessionMaxAge = 12 * time.Hour
	// maxForm bounds a form body; the largest (a halt reason) is short.
	maxForm = 16 << 10
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Identity is who a token belongs to.
type Identity struct {
	Name string
	Role auth.Role
}

// Can reports whether the identity's role has permission p.
func (id Identity) Can(p auth.Permission) bool { return id.Role != "" && auth.Allowed(id.Role, p) }

// Config is what the console needs from the server.
type Config struct {
	// API serves /api/v1 (the server's own routes); the console calls it
	// in-process with the signed-in person's token.
	API http.Handler
	// Channels are the channel definitions (halt policy, barriers, dead
	// ends shown on the channels page).
	Channels *channel.Set
	// Identify returns whom a token belongs to, or an error when it is
	// unknown, revoked or expired.
	Identify func(ctx context.Context, token string) (Identity, error)
	// Metadata, when set, lists the signed metadata roles and their
	// expiry; roles expiring within MetadataWarn are shown on every page.
	Metadata     func() ([]api.MetadataRole, error)
	MetadataWarn time.Duration
	// Denied, when set, is told of every refused request (401 and 403:
	// failed sign-ins, missing roles, bad CSRF tokens, cross-site
	// requests) with the signed-in token's name, if any, and an English
	// reason; the server audits them as auth.denied like the API's.
	Denied func(r *http.Request, token string, status int, reason string)
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	Log *zap.Logger
}

// Console is the web console's handler; mount it at Prefix.
type Console struct {
	cfg   Config
	pages map[string]*template.Template
	mux   *http.ServeMux
	h     http.Handler
}

// New parses the embedded templates and builds the routes.
func New(cfg Config) (*Console, error) {
	if cfg.API == nil || cfg.Channels == nil || cfg.Identify == nil {
		return nil, errors.New("console: API, Channels and Identify are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	c := &Console{cfg: cfg, pages: map[string]*template.Template{}, mux: http.NewServeMux()}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/pinform.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" || name == "pinform" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, n)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	c.routes()
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.refuse(w, r, "", http.StatusForbidden, "This request came from another site and was refused.")
	}))
	c.h = securityHeaders(cop.Handler(c.mux))
	return c, nil
}

func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.h.ServeHTTP(w, r) }

// securityHeaders: no framing (clickjacking), scripts and styles only
// from the console itself, nothing cached.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, Prefix+"static/") {
			hd.Set("Cache-Control", "no-store")
		}
		h.ServeHTTP(w, r)
	})
}

// req is one request's context: language, identity and API client.
type req struct {
	w     http.ResponseWriter
	r     *http.Request
	p     *i18n.Printer
	lang  string // "en" or "es"
	who   Identity
	token string
	csrf  string
	api   *client.Client
	ctx   context.Context
}

// language picks es or en: the switch's cookie, else Accept-Language.
func language(r *http.Request) (*i18n.Printer, string) {
	if ck, err := r.Cookie(langCookie); err == nil {
		switch ck.Value {
		case "es":
			return i18n.New(i18n.Spanish), "es"
		case "en":
			return i18n.New(i18n.English), "en"
		}
	}
	p := i18n.AcceptLanguage(r.Header.Get("Accept-Language"))
	if p.Spanish() {
		return p, "es"
	}
	return p, "en"
}

func acceptFor(lang string) string {
	if lang == "es" {
		return "es-MX"
	}
	return "en"
}

// newReq builds the request context, sets the CSRF cookie when missing
// and identifies the session token, if any.
func (c *Console) newReq(w http.ResponseWriter, r *http.Request) *req {
	p, lang := language(r)
	q := &req{w: w, r: r, p: p, lang: lang}
	q.ctx = withCaller(r.Context(), acceptFor(lang), r.RemoteAddr)
	secret := ""
	if ck, err := r.Cookie(csrfCookie); err == nil && len(ck.Value) >= 32 {
		secret = ck.Value
	} else {
		var b [32]byte
		_, _ = rand.Read(b[:])
		secret = base64.RawURLEncoding.EncodeToString(b[:])
		http.SetCookie(w, c.cookie(r, csrfCookie, secret, 0))
		// A form on this response must carry the new secret's token.
	}
	if ck, err := r.Cookie(sessionCookie); err == nil && ck.Value != "" {
		if who, err := c.cfg.Identify(r.Context(), ck.Value); err == nil && person(who.Role) {
			q.who, q.token = who, ck.Value
		}
	}
	q.csrf = csrfToken(secret, q.token)
	if q.token != "" {
		hc := &http.Client{Transport: inProcess{c.cfg.API}}
		cl, err := client.New("http://console.invalid", q.token, client.WithHTTPClient(hc), client.WithRetries(0, 0))
		if err == nil {
			q.api = cl
		}
	}
	return q
}

func person(r auth.Role) bool { return r == auth.RoleRelease || r == auth.RoleAdmin }

// csrfToken binds a form to the browser's secret and the session.
func csrfToken(secret, session string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("mxos-console-csrf\x00"))
	m.Write([]byte(session))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (c *Console) cookie(r *http.Request, name, value string, maxAge time.Duration) *http.Cookie {
	ck := &http.Cookie{Name: name, Value: value, Path: Prefix, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil}
	if maxAge > 0 {
		ck.MaxAge = int(maxAge / time.Second)
	} else if maxAge < 0 {
		ck.MaxAge = -1
	}
	return ck
}

// checkForm parses a POST form and checks its CSRF token; false means
// the refusal is written.
func (c *Console) checkForm(q *req) bool {
	q.r.Body = http.MaxBytesReader(q.w, q.r.Body, maxForm)
	if err := q.r.ParseForm(); err != nil {
		c.refuse(q.w, q.r, q.who.Name, http.StatusBadRequest, "The form could not be read.")
		return false
	}
	got := q.r.PostForm.Get("csrf")
	ck, err := q.r.Cookie(csrfCookie)
	if err != nil || got == "" || !hmac.Equal([]byte(got), []byte(csrfToken(ck.Value, q.token))) {
		c.refuse(q.w, q.r, q.who.Name, http.StatusForbidden, "This form has expired or did not come from this console. Reload the page and try again.")
		return false
	}
	return true
}

// refuse writes a short page for a refused request, and reports 401s and
// 403s to Config.Denied. who is the signed-in token's name, if any.
func (c *Console) refuse(w http.ResponseWriter, r *http.Request, who string, status int, msg string) {
	c.denied(r, who, status, msg)
	p, _ := language(r)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintln(w, p.T(msg))
}

// handle wraps a page: signed in with perm (or any person when perm is
// ""), and for POST a valid CSRF token.
func (c *Console) handle(pattern string, perm auth.Permission, fn func(*req) error) {
	c.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		q := c.newReq(w, r)
		if q.token == "" {
			if r.Method == http.MethodPost {
				c.refuse(w, r, "", http.StatusForbidden, "Sign in first.")
				return
			}
			http.Redirect(w, r, Prefix+"login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if perm != "" && !q.who.Can(perm) {
			c.refuse(w, r, q.who.Name, http.StatusForbidden, "Your role cannot do this.")
			return
		}
		if r.Method == http.MethodPost && !c.checkForm(q) {
			return
		}
		if err := fn(q); err != nil {
			c.serverError(q, err)
		}
	})
}

// serverError shows an API refusal (its message, in the person's
// language) or logs anything else and shows a generic error.
func (c *Console) serverError(q *req, err error) {
	var ae *api.Error
	status := http.StatusInternalServerError
	msg := q.p.T("Something went wrong; the server log has the details.")
	switch {
	case errors.As(err, &ae):
		status, msg = ae.Code.HTTPStatus(), ae.Message
	default:
		c.cfg.Log.Error("console request failed", zap.String("path", q.r.URL.Path), zap.Error(err))
	}
	q.w.WriteHeader(status)
	c.render(q, "error", q.p.T("Error"), map[string]any{"Message": msg})
}

// apiMessage is the text of an API refusal, for a form's error line.
func apiMessage(p *i18n.Printer, err error) string {
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Message
	}
	return p.T("Something went wrong; the server log has the details.")
}

// navItem is one link of the navigation bar.
type navItem struct {
	Path, Label string
	Current     bool
}

// page is what every template gets.
type page struct {
	q        *req
	Title    string
	Lang     string
	CSRF     string
	Who      Identity
	Nav      []navItem
	Warnings []string
	Path     string
	Data     any
}

// T translates a catalog text for the template.
func (p *page) T(key string, args ...any) string { return p.q.p.T(key, args...) }

// Can reports whether the signed-in role has the permission named.
func (p *page) Can(perm string) bool { return p.Who.Can(auth.Permission(perm)) }

func (c *Console) nav(q *req) []navItem {
	items := []struct {
		path, label string
		perm        auth.Permission
	}{
		{"channels", "Channels", auth.PermReadChannels},
		{"releases", "Releases", auth.PermReadChannels},
		{"devices", "Devices", auth.PermReadDevices},
		{"pins", "Pins", auth.PermPin},
		{"locks", "Fleet locks", auth.PermReadDevices},
		{"tokens", "Tokens", auth.PermManageTokens},
		{"audit", "Audit log", auth.PermReadAudit},
	}
	var out []navItem
	for _, it := range items {
		if q.who.Can(it.perm) {
			p := Prefix + it.path
			out = append(out, navItem{Path: p, Label: q.p.T(it.label), Current: strings.HasPrefix(q.r.URL.Path, p)})
		}
	}
	return out
}

// render writes a page with the layout.
func (c *Console) render(q *req, name, title string, data any) {
	t := c.pages[name]
	pg := &page{q: q, Title: title, Lang: q.lang, CSRF: q.csrf, Who: q.who, Path: q.r.URL.RequestURI(), Data: data}
	if q.token != "" {
		pg.Nav = c.nav(q)
		pg.Warnings = c.metadataWarnings(q)
	}
	q.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := t.ExecuteTemplate(q.w, "layout.html", pg); err != nil {
		c.cfg.Log.Error("rendering console page", zap.String("page", name), zap.Error(err))
	}
}

// metadataWarnings lists signed metadata roles that expire within
// MetadataWarn, or have expired.
func (c *Console) metadataWarnings(q *req) []string {
	if c.cfg.Metadata == nil {
		return nil
	}
	roles, err := c.cfg.Metadata()
	if err != nil {
		return []string{q.p.T("The signed channel metadata could not be read: %v", err)}
	}
	now := c.cfg.Now()
	var out []string
	for _, r := range roles {
		switch {
		case !r.Expires.After(now):
			out = append(out, q.p.T("The signed %s metadata expired on %s: devices refuse updates until it is renewed.", r.Role, when(r.Expires)))
		case r.Expires.Sub(now) < c.cfg.MetadataWarn:
			out = append(out, q.p.T("The signed %s metadata expires on %s: renew it (mxosctl metadata renew).", r.Role, when(r.Expires)))
		}
	}
	return out
}

// redirect answers a form with 303 to a console path.
func redirect(q *req, path string) error {
	http.Redirect(q.w, q.r, path, http.StatusSeeOther)
	return nil
}

// safeNext keeps a "next" parameter inside the console.
func safeNext(s string) string {
	if strings.HasPrefix(s, Prefix) && !strings.HasPrefix(s, "//") && !strings.ContainsAny(s, "\\\r\n") {
		return s
	}
	return Prefix + "channels"
}

// denied reports a 401 or 403 to Config.Denied.
func (c *Console) denied(r *http.Request, who string, status int, reason string) {
	if c.cfg.Denied != nil && (status == http.StatusUnauthorized || status == http.StatusForbidden) {
		c.cfg.Denied(r, who, status, reason)
	}
}
