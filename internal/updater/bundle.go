package updater

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/bundle"
	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/i18n"
	"github.com/mxos-linux/mxos-update/internal/ostree"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// Installing from a bundle (`mxos-updater upgrade --from DIR`, package
// bundle for the layout). The bundle stands in for the server and its
// mirrors, and nothing else changes: its manifest is only a proposal,
// like a server's offer, and goes through the checks of verify.go:
//
//   - the bundle's channel and arch must be this machine's (or a channel
//     of allowed_channels), its ref mxos/<major>/<arch>/<channel>;
//   - the bundle's signed channel metadata is loaded from the shipped
//     trusted_root with this machine's metadata cache as the baseline, so
//     expired metadata, metadata older than what this machine has already
//     seen, and bad signatures are refused, and the metadata must list
//     the bundle's version with its commit and ref; a halted rollout of
//     that version is refused too;
//   - the version must not be older than the installed one;
//   - the pull from DIR/repo checks the summary with the online keys of
//     the verified root, the commit with the release keys (trusted_keys),
//     its ref binding and timestamp, and every object, exactly as from a
//     server; then the same deploy through the configured backend.
//
// What differs, by decision: nothing is sent over the network (reports
// wait in the queue, reportqueue.go, and leave at the next check that
// reaches the server); the technician's act is the decision, so the
// rollout's ramp and pause and the strategy's window or fleet lock do not
// delay it (the deployment is switched on at once, restart to use it);
// transport oci devices install the OSTree commit of the same release,
// which the metadata binds to the same version. A device with log_key
// (transparency log) is refused: a bundle cannot carry a consistency
// proof from the checkpoint that device remembers, so it is updated from
// the network instead.

// UpgradeFrom installs the release in the bundle dir. It returns whether
// a new deployment was made the default.
func (a *Agent) UpgradeFrom(ctx context.Context, dir string) (bool, error) {
	m, err := bundle.Open(dir)
	if err != nil {
		return false, i18n.Errorf("%s is not a usable update bundle: %w", dir, err)
	}
	switch {
	case a.Cfg.InsecureNoMetadata || a.Cfg.TrustedRoot == "":
		return false, i18n.Errorf("a bundle is installed only with signed channel metadata: set trusted_root to the shipped root.json")
	case a.Cfg.LogKey != "":
		return false, i18n.Errorf("this machine checks the public transparency log (log_key), which a bundle cannot prove; update it from the server or a school mirror")
	}
	root, err := os.OpenRoot(filepath.Join(dir, bundle.RepoDir))
	if err != nil {
		return false, i18n.Errorf("%s is not a usable update bundle: %w", dir, err)
	}
	defer root.Close()

	// The bundle stands in for the server: its metadata, its repository,
	// no network, the technician's timing.
	savedCfg, savedPuller := a.Cfg, a.Puller
	cfg := *a.Cfg
	cfg.Transport, cfg.Strategy = TransportOSTree, Strategy{Kind: "immediate"}
	a.Cfg = &cfg
	a.Puller = &pull.Puller{URLs: []string{"file:///"}, Verifiers: savedPuller.Verifiers, Progress: savedPuller.Progress, OnDelta: savedPuller.OnDelta,
		HTTP: &http.Client{Transport: http.NewFileTransportFS(root.FS())}}
	a.offline, a.metaDir = true, filepath.Join(dir, bundle.MetadataDir)
	defer func() { a.Cfg, a.Puller, a.offline, a.metaDir = savedCfg, savedPuller, false, "" }()

	t := api.Target{Channel: m.Channel, Arch: m.Arch, Version: m.Version, Ref: m.Ref, Commit: m.Commit}
	a.say("Bundle %s: version %s of channel %s for %s.", dir, m.Version, m.Channel, m.Arch)
	tr, err := a.verifyBundle(ctx, &t)
	if err == nil && len(m.From) > 0 {
		err = a.checkBases(m)
	}
	if err != nil {
		if errors.Is(err, ErrRefused) {
			a.report(ctx, api.EventRefused, t.Version, t.RolloutID, err.Error())
			a.say("Bundle refused: %v", err)
		}
		return false, err
	}
	want, err := ostree.ParseChecksum(t.Commit)
	if err != nil {
		return false, err
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
		if damaged(err) {
			err = refusef("the files of the bundle do not match their signatures (the stick is damaged or was altered; make a new bundle): %w", err)
		}
		a.report(ctx, failureClass(err), t.Version, t.RolloutID, err.Error())
		a.say("Update to %s failed: %v", t.Version, err)
		return false, err
	}
	return changed, nil
}

// verifyBundle runs the checks of verify.go on the bundle's proposal t
// (with messages that speak of the bundle) and sets t.RolloutID from the
// signed rollout state.
func (a *Agent) verifyBundle(ctx context.Context, t *api.Target) (offerTrust, error) {
	var tr offerTrust
	allowed := false
	for _, c := range a.channelsAllowed() {
		allowed = allowed || c == t.Channel
	}
	if t.Arch != a.Cfg.Arch || !allowed {
		return tr, refusef("this bundle is for channel %s on %s, but this machine follows %s on %s",
			t.Channel, t.Arch, a.Cfg.Channel, a.Cfg.Arch)
	}
	if err := a.checkTarget(*t); err != nil {
		return tr, err
	}
	cur, haveCur, err := a.current()
	if err != nil {
		return tr, err
	}
	installed, installedCommit := "", ""
	if haveCur {
		installed, installedCommit = cur.Origin.Version, cur.Commit.String()
		if c, err := rollout.Compare(t.Version, installed); err == nil && c < 0 {
			return tr, refusef("this bundle holds version %s, older than the installed %s", t.Version, installed)
		}
	}
	offer := channelmeta.Offer{Channel: t.Channel, Arch: t.Arch, Version: t.Version, Commit: t.Commit, Ref: t.Ref}
	st, err := a.metadataState(ctx, func(st *channelmeta.State) error { return channelmeta.CheckOffer(st, offer) })
	var se *staleError
	if errors.As(err, &se) {
		return tr, refusef("the bundle's signed channel metadata does not allow version %s as it is in the bundle: %v", t.Version, se.err)
	}
	if errors.Is(err, channelmeta.ErrRollback) {
		return tr, refusef("this bundle's signed metadata is older than what this machine has already seen (it was online since the bundle was made); make a new bundle: %w", err)
	}
	if err != nil {
		return tr, err
	}
	if ro, ok := st.Rollout(t.Channel, t.Arch); ok && ro.Version == t.Version {
		if ro.State == rollout.StateHalted {
			return tr, refusef("the rollout of version %s is halted (%s); it is not installed", t.Version, ro.HaltReason)
		}
		t.RolloutID = ro.RolloutID
	}
	if err := checkVersion(*t, installed, installedCommit); err != nil {
		return tr, err
	}
	if tr.summaryKeys, err = a.summaryKeys(st); err != nil {
		return tr, err
	}
	return tr, nil
}

// damaged reports whether a failed install from a bundle failed on the
// bundle's content: a missing, corrupt or unsigned file.
func damaged(err error) bool {
	for _, e := range []error{pull.ErrUnsigned, pull.ErrBadSignature, pull.ErrNoRef, pull.ErrUnexpectedCommit,
		pull.ErrRefBinding, ostree.ErrCorrupt, ostree.ErrNotFound, ostree.ErrTooLarge} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// checkBases: a delta bundle (package bundle, Manifest.From) installs
// only on a machine that runs one of the releases its deltas start from.
func (a *Agent) checkBases(m *bundle.Manifest) error {
	cur, ok, err := a.current()
	if err != nil {
		return err
	}
	var versions []string
	for _, b := range m.From {
		if ok && b.Commit == cur.Commit.String() {
			return nil
		}
		versions = append(versions, b.Version)
	}
	running := "nothing"
	if ok {
		running = cur.Origin.Version
	}
	return refusef("this bundle holds only the changes from version %s, and this machine runs %s: use a full bundle (made without --from-release)",
		strings.Join(versions, ", "), running)
}
