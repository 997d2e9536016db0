// Package console owns the web console that mxos-server serves at
// /console/: server-rendered pages (html/template, assets embedded) for
// channels and rollouts, releases, devices and their report history, pins,
// fleet locks, tokens and the audit log, in es-MX and English.
//
// # Same services as the API
//
// The console holds no business logic and no database access. Every page
// and every form calls the admin API (internal/client) in-process,
// through the server's own handler, with the signed-in person's token:
// the API checks the role, validates, writes the audit entry (actor
// "token:NAME", as from mxosctl) and returns its stable error codes.
// Pure policy the CLI also uses (rollout.Ramp's next step, the channel
// definitions' halt policy, barriers and dead ends) is read from its
// packages. What the console adds is presentation: filters by version,
// last status and id search over the devices the API lists (the first
// 1,000 matching channel and group), chart geometry, and the advisory
// warnings of the pin form (unknown device or group, a version the
// channel never published, a channel other than the one the device
// follows, which it accepts only if its allowed_channels lists it).
//
// # Signing in
//
// A person signs in with an API token of the release or admin role
// (device and enroll tokens are refused: the console is for people). The
// token is kept in the cookie mxos_session (HttpOnly, SameSite=Strict,
// Path=/console/, Secure when the request came over TLS, 12 hours), so
// the console keeps no session state and works the same behind several
// replicas; signing out clears it. Revoking the token ends the session at
// the next request.
//
// # Cross-site requests
//
// Every form is a POST carrying a CSRF token: an HMAC, keyed by a random
// per-browser cookie (mxos_csrf, HttpOnly, SameSite=Strict), of the
// session token, so a page on another site can neither read nor forge it,
// and it changes at sign-in. Before that, net/http's CrossOriginProtection
// refuses any state-changing request a browser marks as cross-site
// (Sec-Fetch-Site) or whose Origin is not this host. Refusals are 403 and
// change nothing. Refused sign-ins (401) and every 403 are audited as
// auth.denied by the server, within the API's rate limit of those
// entries.
//
// # What a role sees
//
// Navigation, pages and buttons appear only for roles that may use them
// (auth.Allowed, the same matrix the API enforces); a request made anyway
// is refused by the API.
//
// # Language
//
// es-MX or English: the mxos_lang cookie set by the switch on every page,
// else Accept-Language (i18n.AcceptLanguage). Every text goes through the
// internal/i18n catalog (catalog_console.go); the API is asked in the same
// language, so its error messages match.
//
// # Charts
//
// Inline SVG drawn on the server, no JavaScript: versions across the
// fleet over time (devices that reported each version healthy, per day)
// and each rollout's reports over time (successes and failures per
// bucket), from GET /api/v1/reports/timeline. Each chart has a text
// summary for screen readers.
package console
