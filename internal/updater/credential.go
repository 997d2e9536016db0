package updater

// Device identity on the device: the credential file, enrollment,
// rotation, report sequence numbers and report classes.
//
// A device authenticates with, in this order: its own credential from
// credential_file (default /var/lib/mxos-updater/credential, JSON, mode
// 0600, written durably); else, when enroll_token_file names the school
// image's enroll token, a credential it enrolls for at first contact
// (POST /api/v1/enroll, once per device id) and saves there; else the
// device token in token_file, which the server binds to the first device
// id that uses it. A credential file made for another device id is
// ignored, so a copied disk image does not speak for the wrong machine.
//
// Rotation: a credential lives auth.DeviceCredentialTTL (180 days); once
// it is older than auth.RotateAfter (60 days) the agent asks for a new one
// before its next check and saves it; the old one keeps working for a day
// on the server, so a lost answer is asked for again. A failed rotation
// is retried at the next check; it never stops an update.
//
// Reports carry a sequence number: the larger of the last one sent plus
// one and the Unix time in microseconds, kept durably in the sysroot
// (SeqFile) before the report leaves, so neither a restart nor a lost file
// makes the device repeat a number the server already accepted.

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/i18n"
	"github.com/mxos-linux/mxos-update/internal/ostree/pull"
	"github.com/mxos-linux/mxos-update/internal/sysroot"
)

// DefaultCredentialFile is where the device keeps its own credential.
const DefaultCredentialFile = "/var/lib/mxos-updater/credential"

// SeqFile, in the sysroot's root, holds the last report sequence number.
const SeqFile = "mxos-updater.seq"

// Credential lifetimes as the device sees them (internal/auth has the
// server's; the device must not link server code).
const (
	credentialTTL = 180 * 24 * time.Hour
	rotateAfter   = 60 * 24 * time.Hour
)

// credentialFile is the content of credential_file.
type credentialFile struct {
	DeviceID  string    `json:"device_id"`
	Token     string    `json:"token"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// identity is the agent's credential state (guarded by mu).
type identity struct {
	mu    sync.Mutex
	ready bool
	cred  *credentialFile
	seqMu sync.Mutex
	// queueMu guards the report queue (reportqueue.go).
	queueMu sync.Mutex
}

func (a *Agent) credentialPath() string {
	if a.Cfg.CredentialFile != "" {
		return a.Cfg.CredentialFile
	}
	return DefaultCredentialFile
}

// ensureCredential makes a.Client speak with the device's own credential
// (see the file comment), enrolling or rotating when due.
func (a *Agent) ensureCredential(ctx context.Context) error {
	a.id.mu.Lock()
	defer a.id.mu.Unlock()
	if !a.id.ready {
		cred, err := a.loadCredential()
		if err != nil {
			return err
		}
		if cred == nil && a.Cfg.EnrollTokenFile != "" {
			if cred, err = a.enroll(ctx); err != nil {
				return err
			}
		}
		if cred != nil {
			if err := a.useCredential(cred); err != nil {
				return err
			}
		}
		a.id.ready = true
	}
	if c := a.id.cred; c != nil && a.now().Sub(c.IssuedAt) >= rotateAfter {
		next, err := a.Client.RotateCredential(ctx)
		if err != nil {
			a.say("Could not renew this machine's credential (will try again): %v", err)
			return nil
		}
		nc := &credentialFile{DeviceID: next.DeviceID, Token: next.Token, IssuedAt: a.now(), ExpiresAt: next.ExpiresAt}
		if err := a.saveCredential(nc); err != nil {
			a.say("Could not save the renewed credential (will try again): %v", err)
			return nil
		}
		return a.useCredential(nc)
	}
	return nil
}

func (a *Agent) useCredential(c *credentialFile) error {
	cl, err := a.Client.WithToken(c.Token)
	if err != nil {
		return i18n.Errorf("device credential %s: %w", a.credentialPath(), err)
	}
	a.Client, a.id.cred = cl, c
	return nil
}

// loadCredential reads credential_file: nil when there is none, or when
// it belongs to another device id.
func (a *Agent) loadCredential() (*credentialFile, error) {
	p := a.credentialPath()
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, i18n.Errorf("reading the device credential: %w", err)
	}
	var c credentialFile
	if err := json.Unmarshal(b, &c); err != nil || c.Token == "" {
		return nil, i18n.Errorf("device credential %s is damaged; remove it and have an admin run `mxosctl devices authorize %s`", p, a.Cfg.DeviceID)
	}
	if c.DeviceID != a.Cfg.DeviceID {
		a.say("Ignoring %s: it is the credential of device %q, not %q.", p, c.DeviceID, a.Cfg.DeviceID)
		return nil, nil
	}
	return &c, nil
}

// enroll trades the enroll token for this device's credential and saves
// it before using it: an id enrolls once, so a credential received but
// not kept would lock the machine out until an admin authorizes it again.
func (a *Agent) enroll(ctx context.Context) (*credentialFile, error) {
	b, err := os.ReadFile(a.Cfg.EnrollTokenFile)
	if err != nil {
		return nil, i18n.Errorf("reading the enroll token: %w", err)
	}
	ec, err := a.Client.WithToken(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, i18n.Errorf("enroll token %s: %w", a.Cfg.EnrollTokenFile, err)
	}
	got, err := ec.Enroll(ctx, a.Cfg.DeviceID)
	if err != nil {
		return nil, i18n.Errorf("enrolling this machine as %s: %w", a.Cfg.DeviceID, err)
	}
	c := &credentialFile{DeviceID: got.DeviceID, Token: got.Token, IssuedAt: a.now(), ExpiresAt: got.ExpiresAt}
	if c.ExpiresAt.IsZero() {
		c.ExpiresAt = c.IssuedAt.Add(credentialTTL)
	}
	if err := a.saveCredential(c); err != nil {
		return nil, err
	}
	a.say("Enrolled as %s.", c.DeviceID)
	return c, nil
}

func (a *Agent) saveCredential(c *credentialFile) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	p := a.credentialPath()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return i18n.Errorf("saving the device credential: %w", err)
	}
	if err := writeFileDurable(p, append(b, '\n'), 0o600); err != nil {
		return i18n.Errorf("saving the device credential: %w", err)
	}
	return nil
}

// writeFileDurable writes a file so that after a crash it holds the old
// or the new content: temp file, fsync, rename, fsync the directory.
func writeFileDurable(path string, b []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(b)
	cerr := f.Chmod(mode)
	serr := f.Sync()
	xerr := f.Close()
	if err := errors.Join(werr, cerr, serr, xerr); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// nextSeq returns the next report sequence number and records it first.
func (a *Agent) nextSeq() (int64, error) {
	a.id.seqMu.Lock()
	defer a.id.seqMu.Unlock()
	p := filepath.Join(a.Sys.Root(), SeqFile)
	var last int64
	if b, err := os.ReadFile(p); err == nil {
		last, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64) // damaged: start from the clock
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, i18n.Errorf("reading the report counter: %w", err)
	}
	seq := max(last+1, a.now().UnixMicro())
	if err := writeFileDurable(p, []byte(strconv.FormatInt(seq, 10)+"\n"), 0o644); err != nil {
		return 0, i18n.Errorf("writing the report counter: %w", err)
	}
	return seq, nil
}

// sendReport sends one report with the next sequence number.
// A report that cannot reach the server now (no answer, or a server
// error), or any report of an offline install (upgrade --from), waits in
// the durable queue (reportqueue.go), behind the reports already there.
func (a *Agent) sendReport(ctx context.Context, req api.ReportRequest) error {
	seq, err := a.nextSeq()
	if err != nil {
		return err
	}
	req.Seq = seq
	if a.offline {
		return a.queueReport(req)
	}
	if err := a.ensureCredential(ctx); err != nil {
		if unreachable(err) {
			return a.queueReport(req)
		}
		return err
	}
	if err := a.flushReports(ctx); err != nil {
		return a.queueReport(req)
	}
	if err := a.Client.Report(ctx, req); unreachable(err) {
		return a.queueReport(req)
	} else if err != nil {
		return err
	}
	return nil
}

// failureClass is the report class of an update that failed before the
// switch: refused when the device would not take it (its checks, its
// trust settings, an unsafe tree), config-error for its own configuration,
// download-failed for everything else (network, mirrors, disk). None of
// these count toward a rollout's auto-halt.
func failureClass(err error) api.Event {
	switch {
	case errors.Is(err, ErrRefused), errors.Is(err, pull.ErrUnsigned), errors.Is(err, pull.ErrBadSignature),
		errors.Is(err, pull.ErrRefBinding), errors.Is(err, pull.ErrOlder), errors.Is(err, pull.ErrUnexpectedCommit),
		errors.Is(err, pull.ErrNoRef), errors.Is(err, sysroot.ErrBadTree), errors.Is(err, sysroot.ErrBadCommit):
		return api.EventRefused
	case errors.Is(err, ErrInvalid), errors.Is(err, &api.Error{Code: api.CodeUnknownChannel}),
		errors.Is(err, &api.Error{Code: api.CodeUnknownArch}):
		return api.EventConfigError
	}
	return api.EventDownloadFailed
}
