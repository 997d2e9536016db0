package console

import (
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/event"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// maxDevices is how many devices the devices page reads (one API page);
// version, status and id filters apply within them.
const maxDevices = 1000

func (c *Console) routes() {
	p := Prefix
	static, _ := fs.Sub(staticFS, "static")
	c.mux.Handle("GET "+p+"static/", http.StripPrefix(p+"static/", http.FileServerFS(static)))
	c.mux.HandleFunc("GET "+p+"{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, p+"channels", http.StatusSeeOther)
	})
	c.mux.HandleFunc("GET "+p+"login", c.loginPage)
	c.mux.HandleFunc("POST "+p+"login", c.login)
	c.mux.HandleFunc("POST "+p+"lang", c.setLang)
	c.handle("POST "+p+"logout", "", c.logout)
	c.handle("GET "+p+"channels", auth.PermReadChannels, c.channelsPage)
	c.handle("POST "+p+"rollouts/{id}/{action}", auth.PermRollout, c.rolloutAction)
	c.handle("GET "+p+"releases", auth.PermReadChannels, c.releasesPage)
	c.handle("GET "+p+"devices", auth.PermReadDevices, c.devicesPage)
	c.handle("GET "+p+"devices/{id}", auth.PermReadDevices, c.devicePage)
	c.handle("GET "+p+"pins", auth.PermPin, c.pinsPage)
	c.handle("POST "+p+"pins", auth.PermPin, c.setPin)
	c.handle("POST "+p+"pins/delete", auth.PermPin, c.deletePin)
	c.handle("GET "+p+"locks", auth.PermReadDevices, c.locksPage)
	c.handle("POST "+p+"locks/release", auth.PermPin, c.releaseLock)
	c.handle("GET "+p+"tokens", auth.PermManageTokens, c.tokensPage)
	c.handle("POST "+p+"tokens", auth.PermManageTokens, c.createToken)
	c.handle("POST "+p+"tokens/revoke", auth.PermManageTokens, c.revokeToken)
	c.handle("GET "+p+"audit", auth.PermReadAudit, c.auditPage)
}

// --- signing in, out, language ---

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	q := c.newReq(w, r)
	if q.token != "" {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	c.render(q, "login", q.p.T("Sign in"), map[string]any{"Next": safeNext(r.URL.Query().Get("next"))})
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	q := c.newReq(w, r)
	// The form was made for the browser as it was (perhaps signed in).
	if !c.checkForm(q) {
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	tok := strings.TrimSpace(r.PostForm.Get("token"))
	who, err := c.cfg.Identify(r.Context(), tok)
	var msg string
	switch {
	case tok == "":
		msg = q.p.T("Enter your API token.")
	case err != nil:
		msg = q.p.T("That token is unknown, revoked or expired.")
	case !person(who.Role):
		msg = q.p.T("Only release and admin tokens can sign in to the console.")
	}
	if msg != "" {
		c.denied(r, who.Name, http.StatusUnauthorized, "console sign-in refused: "+failReason(tok, err, who))
		w.WriteHeader(http.StatusUnauthorized)
		q.token = ""
		c.render(q, "login", q.p.T("Sign in"), map[string]any{"Next": next, "Error": msg})
		return
	}
	http.SetCookie(w, c.cookie(r, sessionCookie, tok, sessionMaxAge))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) logout(q *req) error {
	http.SetCookie(q.w, c.cookie(q.r, sessionCookie, "", -1))
	return redirect(q, Prefix+"login")
}

func (c *Console) setLang(w http.ResponseWriter, r *http.Request) {
	q := c.newReq(w, r)
	if !c.checkForm(q) {
		return
	}
	lang := r.PostForm.Get("lang")
	if lang != "es" && lang != "en" {
		c.refuse(w, r, q.who.Name, http.StatusBadRequest, "Unknown language.")
		return
	}
	http.SetCookie(w, c.cookie(r, langCookie, lang, 365*24*time.Hour))
	next := r.PostForm.Get("next")
	if strings.HasPrefix(next, Prefix+"login") {
		next = Prefix + "login"
	}
	http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
}

// --- channels and rollouts ---

type channelView struct {
	api.ChannelStatus
	Policy   rollout.HaltPolicy
	Barriers []channel.Barrier
	DeadEnds []channel.DeadEnd
	Arches   []archView
}

type archView struct {
	api.ArchStatus
	Rollout *rolloutView
}

type rolloutView struct {
	api.RolloutStatus
	NextAt      time.Time
	NextShare   float64
	HasNext     bool
	FailureRate float64
	OverHalt    bool
	Judged      bool
	Actions     []string
	Chart       *chart
}

func (c *Console) rolloutView(q *req, st api.RolloutStatus, policy rollout.HaltPolicy) *rolloutView {
	v := &rolloutView{RolloutStatus: st}
	now := c.cfg.Now()
	if ramp, err := rollout.ParseRamp(st.Ramp); err == nil && st.State == string(rollout.StateActive) {
		if at, ok := ramp.NextChange(st.StartedAt, now); ok {
			v.NextAt, v.HasNext, v.NextShare = at, true, ramp.FractionAt(st.StartedAt, at)
		}
	}
	if n := st.Successes + st.Failures; n > 0 {
		v.FailureRate = float64(st.Failures) / float64(n)
		v.Judged = n >= policy.MinSamples
		v.OverHalt, _ = rollout.AutoHalt(rollout.Stats{Successes: st.Successes, Failures: st.Failures}, policy)
	}
	for _, a := range []rollout.Action{rollout.ActionPause, rollout.ActionResume, rollout.ActionHalt, rollout.ActionComplete} {
		if _, err := rollout.Transition(rollout.State(st.State), a); err == nil {
			v.Actions = append(v.Actions, string(a))
		}
	}
	if tl, err := q.api.ReportTimeline(q.ctx, st.ID, 14); err == nil {
		title := q.p.T("Reports of rollout %s (%s %s) over the last 14 days", st.ID, st.Channel, st.Version)
		v.Chart = rolloutChart(title, q.p.T("healthy"), q.p.T("failed"), tl, now)
	}
	return v
}

func (c *Console) channelsPage(q *req) error {
	chs, err := q.api.Channels(q.ctx)
	if err != nil {
		return err
	}
	var out []channelView
	for _, cs := range chs {
		cv := channelView{ChannelStatus: cs}
		if def, err := c.cfg.Channels.Get(cs.Name); err == nil {
			cv.Policy, cv.Barriers, cv.DeadEnds = def.HaltPolicy(), def.Barriers, def.DeadEnds
		}
		for _, as := range cs.Arches {
			av := archView{ArchStatus: as}
			if as.Rollout != nil {
				av.Rollout = c.rolloutView(q, *as.Rollout, cv.Policy)
			}
			cv.Arches = append(cv.Arches, av)
		}
		out = append(out, cv)
	}
	data := map[string]any{"Channels": out}
	if id := q.r.URL.Query().Get("done"); id != "" {
		data["Flash"] = map[string]string{"ID": id, "State": q.r.URL.Query().Get("state")}
	}
	if tl, err := q.api.ReportTimeline(q.ctx, "", 30); err == nil {
		title := q.p.T("Versions across the fleet over the last 30 days (devices reporting each version healthy)")
		ch := versionsChart(title, tl, c.cfg.Now())
		data["Fleet"] = ch
	}
	c.render(q, "channels", q.p.T("Channels"), data)
	return nil
}

func (c *Console) rolloutAction(q *req) error {
	id, action := q.r.PathValue("id"), q.r.PathValue("action")
	reason := strings.TrimSpace(q.r.PostForm.Get("reason"))
	if action == string(rollout.ActionHalt) && reason == "" {
		c.refuse(q.w, q.r, q.who.Name, http.StatusBadRequest, "A halt needs a reason.")
		return nil
	}
	st, err := q.api.RolloutAction(q.ctx, id, action, reason)
	if err != nil {
		return err
	}
	return redirect(q, Prefix+"channels?done="+url.QueryEscape(st.ID)+"&state="+url.QueryEscape(st.State)+"#rollout-"+url.PathEscape(st.ID))
}

// --- releases ---

func (c *Console) releasesPage(q *req) error {
	chs, err := q.api.Channels(q.ctx)
	if err != nil {
		return err
	}
	sel := q.r.URL.Query().Get("channel")
	type group struct {
		Channel, Arch string
		Releases      []api.Release
	}
	var groups []group
	var names []string
	for _, cs := range chs {
		names = append(names, cs.Name)
		if sel != "" && cs.Name != sel {
			continue
		}
		for _, as := range cs.Arches {
			rels, err := q.api.Releases(q.ctx, cs.Name, as.Arch)
			if err != nil {
				return err
			}
			if len(rels) > 0 { // newest first, as the API lists them
				groups = append(groups, group{cs.Name, as.Arch, rels})
			}
		}
	}
	c.render(q, "releases", q.p.T("Releases"), map[string]any{"Groups": groups, "Names": names, "Selected": sel})
	return nil
}

// --- devices ---

type deviceRow struct {
	api.Device
	Last   *api.DeviceReport
	Status string // ok, failed, none
}

func statusOf(last *api.DeviceReport) string {
	switch {
	case last == nil:
		return "none"
	case isFailure(last.Event):
		return "failed"
	}
	return "ok"
}

func (c *Console) devicesPage(q *req) error {
	f := q.r.URL.Query()
	list, err := q.api.Devices(q.ctx, client.DeviceFilter{Channel: f.Get("channel"), Group: f.Get("group"), Limit: maxDevices})
	if err != nil {
		return err
	}
	ids := make([]string, 0, len(list.Devices))
	for _, d := range list.Devices {
		ids = append(ids, d.ID)
	}
	last := map[string]*api.DeviceReport{}
	for chunk := range slices.Chunk(ids, 500) {
		sts, err := q.api.DeviceStatuses(q.ctx, chunk)
		if err != nil {
			return err
		}
		for _, s := range sts {
			last[s.DeviceID] = s.Last
		}
	}
	search, version, status := strings.TrimSpace(f.Get("q")), f.Get("version"), f.Get("status")
	var rows []deviceRow
	versions := map[string]bool{}
	groups := map[string]bool{}
	for _, d := range list.Devices {
		versions[d.Version], groups[d.Group] = true, true
		row := deviceRow{Device: d, Last: last[d.ID], Status: statusOf(last[d.ID])}
		if search != "" && !strings.Contains(strings.ToLower(d.ID), strings.ToLower(search)) ||
			version != "" && d.Version != version || status != "" && row.Status != status {
			continue
		}
		rows = append(rows, row)
	}
	chs, err := q.api.Channels(q.ctx)
	if err != nil {
		return err
	}
	var chNames []string
	for _, cs := range chs {
		chNames = append(chNames, cs.Name)
	}
	c.render(q, "devices", q.p.T("Devices"), map[string]any{"Rows": rows, "Total": list.Total, "More": list.Next != "",
		"Filter":   map[string]string{"q": search, "channel": f.Get("channel"), "group": f.Get("group"), "version": version, "status": status},
		"Versions": sortedKeys(versions), "Groups": sortedKeys(groups), "Channels": chNames})
	return nil
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		if k != "" {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func (c *Console) devicePage(q *req) error {
	d, err := q.api.Device(q.ctx, q.r.PathValue("id"), 100)
	if err != nil {
		return err
	}
	pins, err := q.api.Pins(q.ctx)
	if err != nil {
		return err
	}
	var mine []api.Pin
	for _, p := range pins {
		if p.Scope == "device" && p.Target == d.ID || p.Scope == "group" && d.Group != "" && p.Target == d.Group {
			mine = append(mine, p)
		}
	}
	chs, err := q.api.Channels(q.ctx)
	if err != nil {
		return err
	}
	c.render(q, "device", q.p.T("Device %s", d.ID), map[string]any{"D": d, "Pins": mine, "Channels": channelNames(chs),
		"Form": pinForm{Scope: "device", Target: d.ID}, "From": "device", "Pinned": q.r.URL.Query().Get("pinned") != ""})
	return nil
}

func channelNames(chs []api.ChannelStatus) []string {
	var out []string
	for _, cs := range chs {
		out = append(out, cs.Name)
	}
	return out
}

// --- pins ---

type pinForm struct {
	Scope, Target, Channel, Version string
	Warnings                        []string
	Error                           string
}

func (c *Console) pinsPage(q *req) error {
	return c.showPins(q, pinForm{Scope: "group"})
}

func (c *Console) showPins(q *req, form pinForm) error {
	pins, err := q.api.Pins(q.ctx)
	if err != nil {
		return err
	}
	chs, err := q.api.Channels(q.ctx)
	if err != nil {
		return err
	}
	c.render(q, "pins", q.p.T("Pins"), map[string]any{"Pins": pins, "Form": form, "Channels": channelNames(chs),
		"Pinned": q.r.URL.Query().Get("pinned") != ""})
	return nil
}

// pinWarnings are the advisory checks of a pin before it is set.
func (c *Console) pinWarnings(q *req, f pinForm) ([]string, error) {
	var warn []string
	var arch, follows string
	switch f.Scope {
	case "device":
		d, err := q.api.Device(q.ctx, f.Target, 1)
		var ae *api.Error
		switch {
		case errors.As(err, &ae) && ae.Code == api.CodeNotFound:
			warn = append(warn, q.p.T("No device %s has checked in yet.", f.Target))
		case err != nil:
			return nil, err
		default:
			arch, follows = d.Arch, d.Channel
		}
	case "group":
		list, err := q.api.Devices(q.ctx, client.DeviceFilter{Group: f.Target, Limit: 1})
		if err != nil {
			return nil, err
		}
		if list.Total == 0 {
			warn = append(warn, q.p.T("No device is in group %s.", f.Target))
		}
	}
	ch := f.Channel
	if ch == "" {
		ch = follows
	}
	if f.Channel != "" && follows != "" && f.Channel != follows {
		warn = append(warn, q.p.T("Device %s follows %s: it moves to %s only if its allowed_channels lists it; otherwise it refuses the update.", f.Target, follows, f.Channel))
	}
	if ch != "" && (f.Version != "" || arch != "") {
		chs, err := q.api.Channels(q.ctx)
		if err != nil {
			return nil, err
		}
		published := false
		for _, cs := range chs {
			if cs.Name != ch {
				continue
			}
			for _, as := range cs.Arches {
				if arch != "" && as.Arch != arch {
					continue
				}
				rels, err := q.api.Releases(q.ctx, ch, as.Arch)
				if err != nil {
					return nil, err
				}
				for _, r := range rels {
					if f.Version == "" || r.Version == f.Version {
						published = true
					}
				}
			}
		}
		switch {
		case !published && f.Version != "":
			warn = append(warn, q.p.T("Version %s is not published on %s.", f.Version, ch))
		case !published:
			warn = append(warn, q.p.T("Channel %s has no release for %s yet.", ch, arch))
		}
	}
	return warn, nil
}

func (c *Console) setPin(q *req) error {
	pf := q.r.PostForm
	f := pinForm{Scope: pf.Get("scope"), Target: strings.TrimSpace(pf.Get("target")), Channel: pf.Get("channel"), Version: strings.TrimSpace(pf.Get("version"))}
	back := func(f pinForm) error {
		q.w.WriteHeader(http.StatusUnprocessableEntity)
		if pf.Get("from") == "device" {
			d, err := q.api.Device(q.ctx, f.Target, 100)
			if err == nil {
				chs, _ := q.api.Channels(q.ctx)
				c.render(q, "device", q.p.T("Device %s", d.ID), map[string]any{"D": d, "Channels": channelNames(chs), "Form": f, "From": "device"})
				return nil
			}
		}
		return c.showPins(q, f)
	}
	if f.Scope != "device" && f.Scope != "group" || f.Target == "" {
		f.Error = q.p.T("Choose device or group and give its name.")
		return back(f)
	}
	if pf.Get("confirm") != "1" {
		warn, err := c.pinWarnings(q, f)
		if err != nil {
			return err
		}
		if len(warn) > 0 {
			f.Warnings = warn
			return back(f)
		}
	}
	if _, err := q.api.SetPin(q.ctx, api.Pin{Scope: f.Scope, Target: f.Target, Channel: f.Channel, Version: f.Version}); err != nil {
		f.Error = apiMessage(q.p, err)
		return back(f)
	}
	if pf.Get("from") == "device" {
		return redirect(q, Prefix+"devices/"+url.PathEscape(f.Target)+"?pinned=1")
	}
	return redirect(q, Prefix+"pins?pinned=1")
}

func (c *Console) deletePin(q *req) error {
	if err := q.api.DeletePin(q.ctx, q.r.PostForm.Get("scope"), q.r.PostForm.Get("target")); err != nil {
		return err
	}
	return redirect(q, Prefix+"pins")
}

// --- fleet locks ---

func (c *Console) locksPage(q *req) error {
	locks, err := q.api.FleetLocks(q.ctx, q.r.URL.Query().Get("group"))
	if err != nil {
		return err
	}
	c.render(q, "locks", q.p.T("Fleet locks"), map[string]any{"Locks": locks})
	return nil
}

func (c *Console) releaseLock(q *req) error {
	if err := q.api.ForceReleaseFleetLock(q.ctx, q.r.PostForm.Get("group"), q.r.PostForm.Get("device")); err != nil {
		return err
	}
	return redirect(q, Prefix+"locks")
}

// --- tokens ---

func (c *Console) tokensPage(q *req) error {
	return c.showTokens(q, nil, "")
}

func (c *Console) showTokens(q *req, created *api.TokenCreated, formErr string) error {
	toks, err := q.api.Tokens(q.ctx)
	if err != nil {
		return err
	}
	roles := []string{}
	for _, r := range auth.Roles {
		if r == auth.RoleRelease && !q.who.Can(auth.PermCreateReleaseTokens) {
			continue
		}
		roles = append(roles, string(r))
	}
	if formErr != "" {
		q.w.WriteHeader(http.StatusUnprocessableEntity)
	}
	c.render(q, "tokens", q.p.T("Tokens"), map[string]any{"Tokens": toks, "Created": created, "Roles": roles, "Error": formErr,
		"Now": c.cfg.Now()})
	return nil
}

func (c *Console) createToken(q *req) error {
	pf := q.r.PostForm
	tc, err := q.api.CreateToken(q.ctx, api.TokenCreateRequest{Name: strings.TrimSpace(pf.Get("name")), Role: pf.Get("role"),
		Expires: strings.TrimSpace(pf.Get("expires")), DeviceID: strings.TrimSpace(pf.Get("device_id"))})
	if err != nil {
		return c.showTokens(q, nil, apiMessage(q.p, err))
	}
	return c.showTokens(q, &tc, "")
}

func (c *Console) revokeToken(q *req) error {
	if err := q.api.RevokeToken(q.ctx, q.r.PostForm.Get("name")); err != nil {
		return err
	}
	return redirect(q, Prefix+"tokens")
}

// --- audit ---

func (c *Console) auditPage(q *req) error {
	// The newest page: read the head, then the entries before it.
	head, err := q.api.Audit(q.ctx, 0, 1)
	if err != nil {
		return err
	}
	after := max(head.HeadSeq-200, 0)
	list, err := q.api.Audit(q.ctx, after, 200)
	if err != nil {
		return err
	}
	slices.Reverse(list.Entries)
	c.render(q, "audit", q.p.T("Audit log"), map[string]any{"L": list})
	return nil
}

// --- template helpers ---

var funcs = template.FuncMap{
	"when":   when,
	"pct":    pct,
	"short":  short,
	"failed": isFailure,
	"add":    func(a, b float64) float64 { return a + b },
	"dur":    dur,
}

// when formats a time for people: UTC, to the minute.
func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

func pct(f float64) string {
	s := fmt.Sprintf("%.1f", f*100)
	return strings.TrimSuffix(s, ".0") + "%"
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// isFailure: the events shown as failures (release failures, which
// count toward auto-halt, and refusals and download or configuration
// errors, which do not).
func isFailure(e api.Event) bool {
	return e.ReleaseFailure() || e == event.Failed || e == event.Refused || e == event.DownloadFailed || e == event.ConfigError
}

// dur formats a policy window: "48h", "90m", "1h30m".
func dur(d time.Duration) string {
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	if s == "" {
		return "0s"
	}
	return s
}

// failReason is a refused sign-in's reason for the audit log (English,
// never the token).
func failReason(tok string, err error, who Identity) string {
	switch {
	case tok == "":
		return "no token"
	case err != nil:
		return "unknown, revoked, expired or malformed token"
	}
	return "the " + string(who.Role) + " role cannot sign in"
}
