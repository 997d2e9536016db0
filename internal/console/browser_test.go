package console_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// screenshotsEnv, when set to 1, makes TestBrowser write one screenshot
// of each main page to internal/console/screenshots (the README's).
const screenshotsEnv = "MXOS_CONSOLE_SCREENSHOTS"

// chrome drives Debian's chromium against a fleet; each step that fails
// saves a screenshot to shots and names it.
type chrome struct {
	t     *testing.T
	f     *fleet
	ctx   context.Context
	shots string
	n     int
}

func newChrome(t *testing.T, f *fleet) *chrome {
	path := testtool.Require(t, "chromium")
	shots, err := os.MkdirTemp("", "mxos-console-screenshots-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900), chromedp.UserDataDir(t.TempDir()))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 6*time.Minute)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	c := &chrome{t: t, f: f, ctx: ctx, shots: shots}
	// The browser lives as long as the context of the first run: start
	// it on the test's context, not on one step's.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			_ = os.RemoveAll(shots)
		}
	})
	return c
}

// run runs a step's actions; on error it saves a screenshot and fails.
func (c *chrome) run(step string, actions ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	var err error
	for range 3 {
		ctx, cancel := context.WithTimeout(c.ctx, 60*time.Second)
		err = chromedp.Do(ctx, actions...)
		cancel()
		// -32000 "No node with given id": chromedp's copy of a document
		// just replaced by a navigation was stale; the step failed
		// before it acted, so it is safe to run again.
		if err == nil || !strings.Contains(err.Error(), "(-32000)") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		c.fail(step, err)
	}
}

// value runs an action that returns a value; on error it fails as run.
func value[T any](c *chrome, step string, a chromedp.Action[T]) T {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		c.fail(step, err)
	}
	return v
}

// eval runs JavaScript and discards its value.
func eval(expr string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Evaluate[any](expr)(ctx, t)
		return chromedp.Void{}, err
	}
}

func (c *chrome) fail(step string, err error) {
	c.t.Helper()
	c.n++
	file := filepath.Join(c.shots, fmt.Sprintf("%02d-%s.png", c.n, strings.NewReplacer(" ", "-", ":", "", "/", "-").Replace(step)))
	sctx, cancel := context.WithTimeout(c.ctx, 20*time.Second)
	defer cancel()
	url, _ := chromedp.Run(sctx, chromedp.Location())
	if buf, serr := chromedp.Run(sctx, chromedp.FullScreenshot(100)); serr == nil {
		_ = os.WriteFile(file, buf, 0o644)
	} else {
		file = "none (" + serr.Error() + ")"
	}
	c.t.Fatalf("%s: %v (page %s; screenshot: %s; all screenshots in %s)", step, err, url, file, c.shots)
}

// waitFor polls until an element matching the CSS selector exists in a
// fully loaded page, across the navigation a form's submission starts
// (queries made while the old document is replaced can fail; they are
// retried). On timeout it fails as run.
func (c *chrome) waitFor(step, css string) {
	c.t.Helper()
	expr := fmt.Sprintf(`document.readyState === "complete" && !!document.querySelector(%q)`, css)
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	c.fail(step, fmt.Errorf("no %s after 60s (last error: %v)", css, last))
}

// click clicks an element, then waits for css on the page that follows.
func (c *chrome) click(step string, sel chromedp.Action[chromedp.Void], css string) {
	c.t.Helper()
	c.run(step, sel)
	c.waitFor(step, css)
}

// page navigates to a console path and waits for its heading.
func (c *chrome) page(path string) {
	c.t.Helper()
	// A navigation right after a form's redirect can be reported as
	// aborted while the previous load finishes: try again then.
	var err error
	for range 3 {
		ctx, cancel := context.WithTimeout(c.ctx, 60*time.Second)
		err = chromedp.Do(ctx, chromedp.Navigate(c.f.URL+path), chromedp.WaitVisible(chromedp.CSS("h1")))
		cancel()
		if err == nil || !strings.Contains(err.Error(), "ERR_ABORTED") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		c.fail("open "+path, err)
	}
}

// text returns the text of the first element matching sel.
func (c *chrome) text(sel string) string {
	c.t.Helper()
	// Read with JavaScript, not a DOM query: chromedp's node ids of a
	// document that was just replaced can be stale for a moment.
	expr := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.innerText : null; })()`, sel)
	var last error
	for range 50 {
		ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
		s, err := chromedp.Run(ctx, chromedp.Evaluate[*string](expr))
		cancel()
		if err == nil && s != nil {
			return *s
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	c.fail("read "+sel, fmt.Errorf("no %s (last error: %v)", sel, last))
	return ""
}

// expect fails (with a screenshot) unless the element's text contains want.
func (c *chrome) expect(sel, want string) {
	c.t.Helper()
	if got := c.text(sel); !strings.Contains(got, want) {
		c.fail("expect "+sel, fmt.Errorf("%q does not contain %q", got, want))
	}
}

// a11yScript names every visible control and tags it with data-a11y:
// inputs, selects and buttons need an accessible name (a label, aria-label
// or aria-labelledby, or their text), no tabindex may be positive.
const a11yScript = `(() => {
  const visible = el => { const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
    return s.visibility !== 'hidden' && s.display !== 'none' && (r.width > 0 || r.height > 0); };
  const name = el => {
    const al = el.getAttribute('aria-label'); if (al && al.trim()) return al.trim();
    const lb = el.getAttribute('aria-labelledby');
    if (lb) return lb.split(/\s+/).map(id => (document.getElementById(id) || {}).textContent || '').join(' ').trim();
    if (el.labels && el.labels.length) return Array.from(el.labels).map(l => l.textContent).join(' ').trim();
    if (['BUTTON', 'A', 'SUMMARY'].includes(el.tagName)) return el.textContent.trim();
    return (el.getAttribute('title') || '').trim();
  };
  const problems = [];
  const all = Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea, button, a[href], summary, [tabindex]')).filter(visible);
  let n = 0;
  all.forEach(el => {
    const ti = el.getAttribute('tabindex');
    if (ti !== null && +ti > 0) problems.push('positive tabindex: ' + el.outerHTML.slice(0, 100));
    // Only a non-control (main, the skip link's target) may leave the
    // tab order; a control with tabindex=-1 must still be reached.
    if (ti === '-1' && !el.matches('input, select, textarea, button, a[href], summary')) return;
    el.setAttribute('data-a11y', String(n++));
    if (!name(el)) problems.push('no accessible name: ' + el.outerHTML.slice(0, 160));
  });
  return {count: n, problems: problems};
})()`

type a11yResult struct {
	Count    int      `json:"count"`
	Problems []string `json:"problems"`
}

// checkA11y: every control on the page has an accessible name, and
// pressing Tab from the top reaches every one of them.
func (c *chrome) checkA11y(name string) {
	c.t.Helper()
	res := value(c, name+": label check", chromedp.Evaluate[a11yResult](a11yScript))
	for _, p := range res.Problems {
		c.t.Errorf("%s: %s", name, p)
	}
	if res.Count == 0 {
		c.fail(name+": keyboard check", fmt.Errorf("no controls found"))
	}
	c.run(name+": focus start", eval(`document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)`))
	seen := map[string]bool{}
	for range res.Count + 2 {
		c.run(name+": tab", chromedp.KeyEvent(kb.Tab))
		idx := value(c, name+": focus", chromedp.Evaluate[string](`(document.activeElement && document.activeElement.getAttribute('data-a11y')) || ''`))
		if idx != "" {
			seen[idx] = true
		}
	}
	var missed []string
	for i := range res.Count {
		if !seen[fmt.Sprint(i)] {
			html := value(c, name+": describe", chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector('[data-a11y="%d"]').outerHTML.slice(0, 120)`, i)))
			missed = append(missed, html)
		}
	}
	if len(missed) > 0 {
		c.fail(name+": keyboard check", fmt.Errorf("Tab never reaches %d of %d controls: %s", len(missed), res.Count, strings.Join(missed, "; ")))
	}
}

// shoot saves the README's screenshot of the current page when asked.
func (c *chrome) shoot(name string) {
	c.t.Helper()
	if os.Getenv(screenshotsEnv) != "1" {
		return
	}
	c.run("scroll up", eval(`document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)`))
	buf := value(c, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join("screenshots", name+".png"), buf, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// signIn fills the sign-in form with the keyboard.
func (c *chrome) signIn(token string) {
	c.t.Helper()
	c.page("/console/login")
	c.run("sign in", chromedp.SendKeys(chromedp.ID("#token"), token))
	c.click("sign in", chromedp.Click(chromedp.ID("signin")), ".channel")
}

// TestBrowser drives the console in Debian's chromium as the release
// team and an admin would: sign in, see a channel's rollout, pause and
// resume it, open a device's failed report, pin the device (past the
// form's warnings), switch to Spanish; and checks on every main page that
// each control has a label and Tab reaches it. Under CI a missing
// chromium fails the test.
func TestBrowser(t *testing.T) {
	f := newFleet(t)
	c := newChrome(t, f)
	ro := "#rollout-" + f.rollout

	// The release team.
	c.page("/console/login")
	c.checkA11y("sign-in page")
	c.shoot("login")
	c.signIn(f.Tokens[auth.RoleRelease])
	c.expect(ro, "10.0.2")
	c.expect(ro, "50% of devices offered now")
	c.expect(ro, "Next step: 100% on ")
	c.expect(ro, "1 healthy, 1 failed")
	c.checkA11y("channels page")
	c.shoot("channels")
	c.click("pause", chromedp.Click(chromedp.ID("pause-"+f.rollout)), "#resume-"+f.rollout)
	c.expect("#flash", "paused")
	if st := f.rolloutState(t); st != "paused" {
		c.fail("pause", fmt.Errorf("the API says the rollout is %s", st))
	}
	c.click("resume", chromedp.Click(chromedp.ID("resume-"+f.rollout)), "#pause-"+f.rollout)
	c.expect("#flash", "active")
	if st := f.rolloutState(t); st != "active" {
		c.fail("resume", fmt.Errorf("the API says the rollout is %s", st))
	}
	for _, p := range []string{"releases", "audit"} {
		c.page("/console/" + p)
		c.checkA11y(p + " page")
		c.shoot(p)
	}
	c.expect("#chain", "verifies")
	c.click("sign out", chromedp.Click(chromedp.Search(`//button[normalize-space()="Sign out"]`)), "#token")

	// An admin.
	c.signIn(f.Tokens[auth.RoleAdmin])
	c.page("/console/devices")
	c.checkA11y("devices page")
	c.shoot("devices")
	c.run("filter failed", chromedp.SetValue(chromedp.ID("f-status"), "failed"))
	c.click("filter failed", chromedp.Click(chromedp.ID("filter")), `#f-status option[value="failed"][selected]`)
	c.click("open d-bad", chromedp.Click(chromedp.CSS(`a[href="/console/devices/d-bad"]`)), "#h-reports")
	c.run("open the failed report", chromedp.Click(chromedp.CSS("#report-0 summary")), chromedp.WaitVisible(chromedp.CSS("#report-0 pre")))
	c.expect("#report-0 pre", failText)
	c.checkA11y("device page")
	c.shoot("device")
	c.run("pin", chromedp.SetValue(chromedp.ID("pin-channel"), "stable"))
	c.click("pin", chromedp.Click(chromedp.ID("pin-submit")), "#pin-warnings")
	c.expect("#pin-warnings", "follows testing")
	c.click("pin anyway", chromedp.Click(chromedp.ID("pin-submit")), ".flash")
	pins, err := f.Client(t, auth.RoleAdmin).Pins(c.ctx)
	if err != nil || !slices.ContainsFunc(pins, func(p apiPin) bool { return p.Scope == "device" && p.Target == "d-bad" && p.Channel == "stable" }) {
		c.fail("pin", fmt.Errorf("pins after pinning: %+v, %v", pins, err))
	}
	for _, p := range []string{"pins", "locks", "tokens"} {
		c.page("/console/" + p)
		c.checkA11y(p + " page")
		c.shoot(p)
	}

	// Spanish.
	c.page("/console/devices/d-bad")
	c.run("switch to Spanish", chromedp.SetValue(chromedp.ID("lang-select"), "es"))
	c.click("switch to Spanish", chromedp.Click(chromedp.ID("lang-apply")), `html[lang="es-MX"]`)
	c.expect("h1", "Equipo d-bad")
	c.expect("#h-reports", "Historial de reportes")
	c.page("/console/channels")
	c.expect("nav", "Canales")
	c.checkA11y("channels page in Spanish")
	c.shoot("channels-es")
}
