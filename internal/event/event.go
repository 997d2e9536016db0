// Package event names the events devices report and sorts them into
// report classes: which are release failures that count toward a
// rollout's auto-halt, and which are only stored and shown. It is pure
// (no imports) and shared by the wire types (internal/api re-exports it),
// the device updater, the metadata store (internal/db) and the server.
package event

// Event is a step a device reports, or how an update ended.
type Event string

// Events devices report. Outcomes of a release (the report classes):
// health-ok is a success; health-failed (a required health check failed
// and the device rolled back), boot-failed (the new version never came up
// and the boot counter took the machine back) and rolled-back (an admin
// or a user went back by hand) are release failures and count toward
// auto-halt. refused (the device would not install the offer: wrong
// channel or arch, a signature or metadata check, its trust settings),
// download-failed (network, mirrors, disk: anything before the switch that
// is not a refusal) and config-error (the device's own configuration, e.g.
// a channel the server does not know) are stored and shown, never
// counted: a bad pin or a broken school network must not halt a good
// release. failed is what agents before the report classes sent for all of
// these; it is accepted, stored and never counted.
const (
	DownloadStarted  Event = "download-started"
	DownloadFinished Event = "download-finished"
	Deployed         Event = "deployed"
	HealthOK         Event = "health-ok"
	RolledBack       Event = "rolled-back"
	HealthFailed     Event = "health-failed"
	BootFailed       Event = "boot-failed"
	Refused          Event = "refused"
	DownloadFailed   Event = "download-failed"
	ConfigError      Event = "config-error"
	Failed           Event = "failed"
)

// All lists every event.
var All = []Event{DownloadStarted, DownloadFinished, Deployed, HealthOK, RolledBack,
	HealthFailed, BootFailed, Refused, DownloadFailed, ConfigError, Failed}

// Valid reports whether e is a known event.
func (e Event) Valid() bool {
	for _, k := range All {
		if e == k {
			return true
		}
	}
	return false
}

// ReleaseFailure reports whether e says the release itself failed on the
// device: these count toward auto-halt, and the device is never offered
// that release again.
func (e Event) ReleaseFailure() bool {
	return e == HealthFailed || e == BootFailed || e == RolledBack
}

// ReleaseFailures lists the events ReleaseFailure accepts.
var ReleaseFailures = []Event{HealthFailed, BootFailed, RolledBack}

// ManualRollback is the Error of the rolled-back report a device sends
// when a person rolled it back (`mxos-updater rollback`). It counts toward
// auto-halt like any rolled-back report, but it does not stop the server
// from offering that version to the device again: the device's own mark
// decides, and `mxos-updater unmark` lifts it. Rollbacks by health checks
// or the boot counter stay final on both sides.
const ManualRollback = "rolled back by hand"
