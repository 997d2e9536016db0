package updater

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/health"
	"github.com/mxos-linux/mxos-update/internal/i18n"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/storage"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
)

// StateFile is the agent's own small state file, kept in the sysroot's
// root directory: the rollout and version of the last update it switched
// to and whether that update still waits for its health verdict.
const StateFile = "mxos-updater.json"

// Agent is the device agent. It composes the update client, the verified
// puller (or, with `transport: oci`, the signed-image fetch of ocifetch.go)
// and a deployment Backend.
//
// Strategies: "immediate" deploys and switches at once; "window" deploys
// at once but switches only inside the maintenance window (outside it the
// deployment stays staged and the next upgrade inside the window switches
// it); "fleet-lock" deploys at once and switches once the server grants
// one of the group's reboot slots (fleetlock.go).
type Agent struct {
	Cfg    *Config
	Client *client.Client
	Puller *pull.Puller
	Sys    Backend
	Repo   *ostree.Repo
	// ImageKeys are the PEM public keys image signatures are checked with
	// (transport oci).
	ImageKeys [][]byte
	// MetaHTTP fetches the signed channel metadata (a client with a 60 s
	// timeout when nil).
	MetaHTTP *http.Client
	// Now is the clock (time.Now when nil). The expiry of the channel
	// metadata is judged by it.
	Now func() time.Time
	// Out receives short messages for the technician (discarded when nil),
	// in Lang's language (English when nil; internal/i18n).
	Out  io.Writer
	Lang *i18n.Printer
	// Reboot restarts the machine after Boot rolled back the running
	// version (reboot.go); nil only tells the technician to.
	Reboot func(ctx context.Context) error

	id identity // credential.go: the device's own credential, report counter

	// offline: an install from a bundle (bundle.go); reports are queued,
	// never sent (reportqueue.go). metaDir: the bundle's channel
	// metadata, the only metadata source while it is set.
	offline bool
	metaDir string
}

// Status is what Agent.Status reports (and `mxos-updater status --json`
// prints). Deployments lists every deployment on disk, oldest first, with
// what it is to the machine.
type Status struct {
	Current     *DeploymentInfo              `json:"current,omitempty"`
	Previous    *DeploymentInfo              `json:"previous,omitempty"`
	Deployments []DeploymentInfo             `json:"deployments"`
	Bad         map[string]sysroot.BadCommit `json:"bad,omitempty"`
}

// DeploymentInfo describes one deployment. The marks: Booted is the one
// the machine runs now (the last boot's); Default the one the next boot
// starts; Pending the default while it waits for a restart and its health
// verdict; Staged a deployment made after the default that is not switched
// on yet (maintenance window, fleet lock); Previous the rollback target;
// Bad a commit rolled back from.
type DeploymentInfo struct {
	Name     string `json:"name"`
	Commit   string `json:"commit"`
	Version  string `json:"version"`
	Booted   bool   `json:"booted,omitempty"`
	Default  bool   `json:"default,omitempty"`
	Pending  bool   `json:"pending,omitempty"`
	Staged   bool   `json:"staged,omitempty"`
	Previous bool   `json:"previous,omitempty"`
	Bad      bool   `json:"bad,omitempty"`
}

// agentState is the content of StateFile.
type agentState struct {
	// Deployment is the deployment name the agent last switched to.
	Deployment string `json:"deployment"`
	Version    string `json:"version"`
	Commit     string `json:"commit"`
	RolloutID  string `json:"rollout_id,omitempty"`
	// Pending is true until the boot step has judged the deployment.
	Pending bool `json:"pending"`
}

func (a *Agent) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// say tells the technician something; format is a catalog message.
func (a *Agent) say(format string, args ...any) { a.Lang.Say(a.Out, format, args...) }

func (a *Agent) statePath() string { return filepath.Join(a.Sys.Root(), StateFile) }

func (a *Agent) loadState() (agentState, error) {
	var st agentState
	b, err := os.ReadFile(a.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("reading updater state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("reading updater state %s: %w", a.statePath(), err)
	}
	return st, nil
}

func (a *Agent) saveState(st agentState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("writing updater state: %w", err)
	}
	if err := storage.WriteFile(a.statePath(), append(b, '\n'), 0o644, storage.TempPath(a.statePath()+".tmp")); err != nil {
		return fmt.Errorf("writing updater state: %w", err)
	}
	return nil
}

// current returns the current deployment, or ok false when there is none.
func (a *Agent) current() (sysroot.Deployment, bool, error) {
	d, err := a.Sys.Current()
	if errors.Is(err, sysroot.ErrNoDeployment) {
		return d, false, nil
	}
	if err != nil {
		return d, false, fmt.Errorf("reading the current deployment: %w", err)
	}
	return d, true, nil
}

func info(d sysroot.Deployment) *DeploymentInfo {
	return &DeploymentInfo{Name: d.Name, Commit: d.Commit.String(), Version: d.Origin.Version}
}

// Status returns the current and previous deployments and the commits
// marked bad.
func (a *Agent) Status(ctx context.Context) (Status, error) {
	var s Status
	if err := ctx.Err(); err != nil {
		return s, err
	}
	cur, ok, err := a.current()
	if err != nil {
		return s, err
	}
	if ok {
		s.Current = info(cur)
	}
	prev, err := a.Sys.Previous()
	switch {
	case err == nil:
		s.Previous = info(prev)
	case !errors.Is(err, sysroot.ErrNoDeployment):
		return s, fmt.Errorf("reading the previous deployment: %w", err)
	}
	bad, err := a.Sys.BadCommits()
	if err != nil {
		return s, fmt.Errorf("reading bad commits: %w", err)
	}
	if len(bad) > 0 {
		s.Bad = bad
	}
	list, err := a.Sys.List()
	if err != nil {
		return s, fmt.Errorf("listing deployments: %w", err)
	}
	booted := ""
	if b, err := a.Sys.Booted(); err == nil {
		booted = b.Name
	}
	pending, err := a.Sys.PendingBoot()
	if err != nil {
		return s, fmt.Errorf("reading the pending boot: %w", err)
	}
	s.Deployments = []DeploymentInfo{}
	afterDefault := false
	for _, d := range list {
		di := *info(d)
		_, di.Bad = bad[di.Commit]
		di.Booted = d.Name == booted
		di.Default = s.Current != nil && d.Name == s.Current.Name
		di.Pending = di.Default && d.Name == pending
		di.Previous = s.Previous != nil && d.Name == s.Previous.Name
		di.Staged = afterDefault && !di.Bad
		afterDefault = afterDefault || di.Default
		s.Deployments = append(s.Deployments, di)
	}
	return s, nil
}

// Check asks the server whether an update is offered for the booted
// (current) deployment and, when one is, verifies the offer (verify.go):
// an offer the device refuses is returned with an error wrapping
// ErrRefused.
func (a *Agent) Check(ctx context.Context) (api.CheckResponse, error) {
	resp, _, err := a.check(ctx)
	return resp, err
}

// check is Check, also returning what the offer's checks established for
// its download.
func (a *Agent) check(ctx context.Context) (api.CheckResponse, offerTrust, error) {
	if a.Cfg.InsecureNoMetadata {
		a.say(InsecureWarning)
	}
	req := api.CheckRequest{DeviceID: a.Cfg.DeviceID, Arch: a.Cfg.Arch, Channel: a.Cfg.Channel, Group: a.Cfg.Group}
	cur, ok, err := a.current()
	if err != nil {
		return api.CheckResponse{}, offerTrust{}, err
	}
	if ok {
		req.BootedCommit = cur.Commit.String()
		req.Version = cur.Origin.Version
	}
	if err := a.ensureCredential(ctx); err != nil { // credential.go
		return api.CheckResponse{}, offerTrust{}, err
	}
	resp, err := a.Client.Check(ctx, req)
	offline := false
	if unreachable(err) { // offline.go: decide from the signed metadata
		r, ok, done := a.decideOffline(ctx, req, err)
		defer done()
		if ok {
			resp, err, offline = r, nil, true
		}
	}
	if err != nil {
		return resp, offerTrust{}, i18n.Errorf("asking the server for updates: %w", err)
	}
	if !offline {
		a.rememberAnswer(resp.Reason)
		// The server answers again: reports that waited go now.
		_ = a.flushReports(ctx) // reportqueue.go; what fails stays queued
	}
	var tr offerTrust
	if resp.Update && resp.Target != nil {
		tr, err = a.verifyOffer(ctx, *resp.Target, req.Version, req.BootedCommit)
		tr.offline = offline
		if err != nil {
			return resp, tr, err
		}
		if err := a.checkLog(ctx, *resp.Target); err != nil { // tlog.go
			return resp, tr, err
		}
	}
	return resp, tr, nil
}

func (a *Agent) report(ctx context.Context, ev api.Event, version, rolloutID, errText string) {
	if version == "" {
		version = "unknown"
	}
	if len(errText) > 4000 {
		errText = errText[:4000]
	}
	err := a.sendReport(ctx, api.ReportRequest{DeviceID: a.Cfg.DeviceID, RolloutID: rolloutID,
		Version: version, Event: ev, Error: errText, At: a.now()})
	if err != nil {
		a.say("Could not tell the server (%s): %v", ev, err)
	}
}

// Upgrade checks for an update and, when one is offered, downloads,
// verifies, deploys and (depending on the strategy) switches to it. It
// returns whether a new deployment was made the default.
func (a *Agent) Upgrade(ctx context.Context) (bool, error) {
	resp, tr, err := a.check(ctx)
	if tr.offline { // decided without the server: its reports wait (reportqueue.go)
		a.offline = true
		defer func() { a.offline = false }()
	}
	if err != nil {
		if errors.Is(err, ErrRefused) && resp.Target != nil {
			a.report(ctx, api.EventRefused, resp.Target.Version, resp.Target.RolloutID, err.Error())
			a.say("Update to %s refused: %v", resp.Target.Version, err)
		}
		return false, err
	}
	if !resp.Update || resp.Target == nil {
		a.say("No update (%s).", a.Lang.Reason(resp.Reason))
		return false, nil
	}
	t := *resp.Target
	want, err := ostree.ParseChecksum(t.Commit)
	if err != nil {
		return false, fmt.Errorf("server offered version %s with a bad commit %q: %w", t.Version, t.Commit, err)
	}
	bad, err := a.Sys.IsBad(want)
	if err != nil {
		return false, fmt.Errorf("checking version %s: %w", t.Version, err)
	}
	if bad {
		a.say("Version %s was rolled back on this machine before; not installing it again.", t.Version)
		return false, nil
	}
	changed, err := a.install(ctx, t, want, tr)
	if err != nil {
		a.report(ctx, failureClass(err), t.Version, t.RolloutID, err.Error()) // credential.go: never a release failure
		a.say("Update to %s failed: %v", t.Version, err)
		return false, err
	}
	return changed, nil
}

func (a *Agent) install(ctx context.Context, t api.Target, want ostree.Checksum, tr offerTrust) (bool, error) {
	cur, haveCur, err := a.current()
	if err != nil {
		return false, err
	}
	// A deployment of the target already staged (window strategy): reuse it.
	var dep sysroot.Deployment
	staged := false
	if list, err := a.Sys.List(); err == nil {
		for _, d := range list {
			if d.Commit == want && (!haveCur || d.Name != cur.Name) {
				dep, staged = d, true
			}
		}
	}
	if haveCur && cur.Commit == want {
		a.say("Version %s is already installed.", t.Version)
		return false, nil
	}
	// A kill or power loss at any step below is resumed by the next run:
	// the pull keeps the objects it verified and fetches only the rest,
	// Deploy builds under a temporary name that sysroot.Open removes, a
	// complete deployment of the target is reused (above), and the switch
	// is recorded in the agent state before the symlinks move.
	if !staged {
		a.say("Downloading version %s...", t.Version)
		a.report(ctx, api.EventDownloadStarted, t.Version, t.RolloutID, "")
		// Each key for its role: the online keys for the summary, the
		// release keys (trusted_keys) for the commit.
		opts := pull.Options{ExpectCommit: t.Commit, ByChecksum: tr.signedCommit, SummaryKeys: tr.summaryKeys, CommitKeys: a.Puller.Verifiers}
		if len(opts.SummaryKeys) == 0 || len(opts.CommitKeys) == 0 {
			return false, fmt.Errorf("download of %s: no summary or release keys", t.Version)
		}
		// The pull moves the local ref; a refused deploy puts it back.
		restore, err := a.refRestorer(t.Ref)
		if err != nil {
			return false, err
		}
		if haveCur {
			c, err := a.Repo.ReadCommit(cur.Commit)
			if err != nil {
				return false, fmt.Errorf("reading the installed commit: %w", err)
			}
			opts.MinTimestamp, opts.Current = c.Timestamp, cur.Commit
		}
		var got ostree.Checksum
		if a.Cfg.Transport == TransportOCI {
			got, err = FetchOCI(ctx, OCIOptions{Server: a.Cfg.Server, SignedHost: a.Cfg.ImageHost,
				Ref: t.Ref, Version: t.Version, Commit: want, ImageKeys: a.ImageKeys,
				Sysroot: a.Sys.Root(), Repo: a.Repo, RepoURLs: a.Puller.URLs, Verifiers: a.Puller.Verifiers,
				MinTimestamp: opts.MinTimestamp, Current: opts.Current, HTTP: a.Puller.HTTP, CAFile: a.Cfg.CAFile})
		} else {
			got, err = a.Puller.Pull(ctx, a.Repo, t.Ref, opts)
		}
		if err != nil {
			return false, restore(i18n.Errorf("download of %s: %w", t.Version, err))
		}
		if got != want {
			return false, restore(i18n.Errorf("download of %s: got commit %s, the server offered %s", t.Version, got, want))
		}
		if err := a.verifyPulled(t, got); err != nil {
			return false, restore(i18n.Errorf("download of %s: %w", t.Version, err))
		}
		a.report(ctx, api.EventDownloadFinished, t.Version, t.RolloutID, "")
		if ds, ok := a.Sys.(DeploySwitcher); ok && a.Cfg.Strategy.Kind != "fleet-lock" && a.Cfg.Strategy.InWindow(a.now()) {
			return a.deploySwitch(ctx, ds, t, want, restore)
		}
		dep, err = a.Sys.Deploy(ctx, a.Repo, want, sysroot.Origin{Ref: t.Ref, Version: t.Version, Commit: t.Commit})
		if err != nil {
			return false, restore(i18n.Errorf("installing %s: %w", t.Version, err))
		}
	}
	if !a.Cfg.Strategy.InWindow(a.now()) {
		a.say("Version %s is ready; it will be switched on in the maintenance window (%s-%s).",
			t.Version, a.Cfg.Strategy.Start, a.Cfg.Strategy.End)
		return false, nil
	}
	if staged {
		if err := a.verifyPulled(t, want); err != nil {
			return false, i18n.Errorf("installing %s: %w", t.Version, err)
		}
	}
	if !a.fleetLockBeforeSwitch(ctx, t) { // fleetlock.go: a reboot slot of the group
		return false, nil
	}
	// State first, then the switch: a crash in between leaves a state
	// naming a deployment that is not current, which Boot ignores. The
	// other order could leave a switched update that Boot never judges.
	if err := a.saveState(agentState{Deployment: dep.Name, Version: t.Version, Commit: t.Commit,
		RolloutID: t.RolloutID, Pending: true}); err != nil {
		return false, err
	}
	if err := a.Sys.Switch(ctx, dep); err != nil {
		return false, i18n.Errorf("switching to %s: %w", t.Version, err)
	}
	a.report(ctx, api.EventDeployed, t.Version, t.RolloutID, "")
	a.say("Version %s is installed. Restart the machine to use it.", t.Version)
	return true, nil
}

// deploySwitch installs and switches in one backend step (DeploySwitcher),
// saving the agent state when the backend has recorded its pending boot
// and before the default moves, the order install keeps between Deploy
// and Switch.
func (a *Agent) deploySwitch(ctx context.Context, ds DeploySwitcher, t api.Target, want ostree.Checksum, restore func(error) error) (bool, error) {
	st := agentState{Version: t.Version, Commit: t.Commit, RolloutID: t.RolloutID, Pending: true}
	_, err := ds.DeploySwitch(ctx, a.Repo, want, sysroot.Origin{Ref: t.Ref, Version: t.Version, Commit: t.Commit}, func(name string) error {
		st.Deployment = name
		return a.saveState(st)
	})
	if err != nil {
		return false, restore(i18n.Errorf("installing %s: %w", t.Version, err))
	}
	a.report(ctx, api.EventDeployed, t.Version, t.RolloutID, "")
	a.say("Version %s is installed. Restart the machine to use it.", t.Version)
	return true, nil
}

// Boot is the boot-time step: it counts the boot attempt, runs the health
// checks and, for a freshly switched update, keeps it (health OK) or rolls
// back to the previous deployment (a required check failed).
func (a *Agent) Boot(ctx context.Context) error {
	defer a.fleetLockAfterBoot(ctx) // fleetlock.go: give back the reboot slot once judged
	st, err := a.loadState()
	if err != nil {
		return err
	}
	if _, err := a.Sys.BootAttempt(); err != nil {
		if !errors.Is(err, sysroot.ErrCounterExhausted) {
			return fmt.Errorf("counting the boot: %w", err)
		}
		version := st.Version
		if prev, perr := a.Sys.Previous(); perr == nil {
			version = prev.Origin.Version
		}
		a.report(ctx, api.EventBootFailed, version, st.RolloutID, "the new version did not start after several tries")
		st.Pending = false
		a.say("Version %s did not start after several tries; went back to the previous version.", version)
		if err := a.saveState(st); err != nil {
			return err
		}
		a.restartAfterRollback(ctx) // reboot.go
		return nil
	}
	cur, ok, err := a.current()
	if err != nil {
		return err
	}
	if !ok {
		a.say("Nothing installed yet.")
		return nil
	}
	// The sysroot's own pending boot (recorded before its symlinks move)
	// also counts, so an update switched by a run that died before it
	// could write the agent state is still judged.
	sysPending, err := a.Sys.PendingBoot()
	if err != nil {
		return fmt.Errorf("reading the pending boot: %w", err)
	}
	judging := st.Pending && st.Deployment == cur.Name || sysPending == cur.Name
	res, err := health.Run(ctx, a.Cfg.HealthDir, health.Options{})
	if err != nil {
		return fmt.Errorf("running health checks: %w", err)
	}
	rolloutID := ""
	if st.Deployment == cur.Name {
		rolloutID = st.RolloutID
	}
	if res.OK {
		if err := a.Sys.MarkGood(); err != nil {
			return fmt.Errorf("keeping version %s: %w", cur.Origin.Version, err)
		}
		if judging {
			st.Pending = false
			if err := a.saveState(st); err != nil {
				return err
			}
			a.report(ctx, api.EventHealthOK, cur.Origin.Version, rolloutID, "")
		}
		a.say("Version %s is healthy.", cur.Origin.Version)
		// Committed: older deployments are no longer needed for rollback.
		// A failed clean-up is retried after the next good boot.
		if err := a.Sys.GC(ctx, 0); err != nil {
			a.say("Could not remove old versions: %v", err)
		}
		return nil
	}
	summary := res.Summary()
	if !judging {
		a.say("Health checks failed on version %s, but it was already accepted; not rolling back: %s", cur.Origin.Version, summary)
		return nil
	}
	if err := a.Sys.Rollback(ctx, summary); err != nil {
		return i18n.Errorf("rolling back version %s: %w", cur.Origin.Version, err)
	}
	st.Pending = false
	if err := a.saveState(st); err != nil {
		return err
	}
	a.report(ctx, api.EventHealthFailed, cur.Origin.Version, rolloutID, summary)
	a.say("Version %s failed its health checks and was rolled back. (%s)", cur.Origin.Version, summary)
	a.restartAfterRollback(ctx) // reboot.go
	return nil
}

// Rollback goes back to the previous deployment by hand; the abandoned
// version is marked bad and not installed again until Unmark forgets the
// mark (a rollback by hand is often a trial, not a verdict on the
// release; the technician decides).
func (a *Agent) Rollback(ctx context.Context) error {
	cur, ok, err := a.current()
	if err != nil {
		return err
	}
	if !ok {
		return i18n.Errorf("nothing is installed, so there is nothing to roll back")
	}
	if err := a.Sys.Rollback(ctx, api.ManualRollback); err != nil {
		return i18n.Errorf("rolling back version %s: %w", cur.Origin.Version, err)
	}
	st, err := a.loadState()
	if err != nil {
		return err
	}
	rolloutID := ""
	if st.Deployment == cur.Name {
		rolloutID = st.RolloutID
		st.Pending = false
		if err := a.saveState(st); err != nil {
			return err
		}
	}
	a.report(ctx, api.EventRolledBack, cur.Origin.Version, rolloutID, api.ManualRollback)
	a.say("Went back from version %s. Restart the machine to use the previous version.", cur.Origin.Version)
	a.say("Version %s will not be installed again until you run: mxos-updater unmark %s", cur.Origin.Version, cur.Commit.String())
	return nil
}

// refRestorer records where the local ref points before a download and
// returns a function that, given the error that ends the install, points
// it back there (or removes it, if it did not exist), so that a refused
// deploy leaves the refs exactly as they were. A failure to restore is
// joined to the error.
func (a *Agent) refRestorer(ref string) (func(error) error, error) {
	prev, err := a.Repo.ResolveRef(ref)
	had := err == nil
	if err != nil && !errors.Is(err, ostree.ErrNotFound) {
		return nil, fmt.Errorf("reading the local ref: %w", err)
	}
	return func(cause error) error {
		cur, err := a.Repo.ResolveRef(ref)
		if (had && err == nil && cur == prev) || (!had && errors.Is(err, ostree.ErrNotFound)) {
			return cause
		}
		txn, err := a.Repo.Begin()
		if err != nil {
			return errors.Join(cause, fmt.Errorf("restoring the local ref %s: %w", ref, err))
		}
		defer txn.Close()
		if had {
			err = txn.SetRef(ref, prev)
		} else {
			err = txn.DeleteRef(ref)
		}
		if err == nil {
			err = txn.Close()
		}
		if err != nil {
			return errors.Join(cause, fmt.Errorf("restoring the local ref %s: %w", ref, err))
		}
		return cause
	}, nil
}

// Unmark lets a version that was rolled back from be installed again
// (after `mxos-updater rollback` by hand, or once a fixed build is known
// to be the same commit). what is a commit checksum, a unique prefix of at
// least 8 hex digits, or the version of a deployment still on disk. It
// returns the commit unmarked.
func (a *Agent) Unmark(ctx context.Context, what string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	bad, err := a.Sys.BadCommits()
	if err != nil {
		return "", fmt.Errorf("reading bad commits: %w", err)
	}
	var match []string
	for c := range bad {
		if c == what || len(what) >= 8 && len(what) < len(c) && c[:len(what)] == what {
			match = append(match, c)
		}
	}
	if len(match) == 0 {
		if list, err := a.Sys.List(); err == nil {
			for _, d := range list {
				if _, ok := bad[d.Commit.String()]; ok && d.Origin.Version == what {
					match = append(match, d.Commit.String())
				}
			}
		}
	}
	switch {
	case len(match) == 0:
		return "", i18n.Errorf("%s is not a version or commit marked as rolled back (see mxos-updater status)", what)
	case len(match) > 1:
		return "", i18n.Errorf("%s matches more than one commit; give more of the checksum", what)
	}
	c, err := ostree.ParseChecksum(match[0])
	if err != nil {
		return "", err
	}
	if _, err := a.Sys.Unmark(c); err != nil {
		return "", fmt.Errorf("unmarking %s: %w", c, err)
	}
	return c.String(), nil
}
