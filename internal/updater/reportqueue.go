package updater

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/i18n"
	"github.com/mxos-linux/mxos-update/internal/storage"
)

// The report queue. Reports the server cannot take now wait on disk, one
// file per report in ReportQueueDir (under the sysroot's root), named by
// their sequence number so that they leave in the order they were made,
// each written durably (temp file, fsync, rename, fsync the directory)
// before the agent goes on. They are sent, oldest first, before the next
// report and after every check that reaches the server; a report leaves
// the queue when the server accepts it, or answers that it already has it
// (CodeReplay: a report sent but not yet removed when the machine lost
// power), so each arrives once. A report the server refuses for good (a
// 4xx other than a replay) is dropped with a message; at most
// MaxQueuedReports wait, the oldest are dropped beyond that.

// ReportQueueDir holds the reports not yet delivered.
const ReportQueueDir = "mxos-updater-reports"

// MaxQueuedReports bounds the queue (a machine offline for months must not
// fill its disk with reports).
const MaxQueuedReports = 1000

func (a *Agent) queueDir() string { return filepath.Join(a.Sys.Root(), ReportQueueDir) }

// unreachable reports whether err means the server could not take the
// report now: no answer at all, or a server-side error.
func unreachable(err error) bool {
	if err == nil {
		return false
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		return ae.Code.HTTPStatus() >= 500
	}
	return true
}

// queueReport stores req (its Seq already set) in the queue.
func (a *Agent) queueReport(req api.ReportRequest) error {
	a.id.queueMu.Lock()
	defer a.id.queueMu.Unlock()
	dir := a.queueDir()
	if err := storage.MkdirAll(dir, 0o700); err != nil {
		return i18n.Errorf("saving the report for later: %w", err)
	}
	names, err := queued(dir)
	if err != nil {
		return i18n.Errorf("saving the report for later: %w", err)
	}
	for len(names) >= MaxQueuedReports {
		os.Remove(filepath.Join(dir, names[0]))
		names = names[1:]
	}
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if err := writeFileDurable(filepath.Join(dir, fmt.Sprintf("%020d.json", req.Seq)), b, 0o600); err != nil {
		return i18n.Errorf("saving the report for later: %w", err)
	}
	if !a.offline {
		a.say("The server cannot be reached; the report (%s) will be sent later.", req.Event)
	}
	return nil
}

// queued lists the queue's report files, oldest first.
func queued(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".json") && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// QueuedReports returns how many reports wait to be sent.
func (a *Agent) QueuedReports() int {
	names, _ := queued(a.queueDir())
	return len(names)
}

// flushReports sends the queued reports, oldest first. It stops at the
// first one the server cannot take now and returns that error; the rest
// stay queued.
func (a *Agent) flushReports(ctx context.Context) error {
	a.id.queueMu.Lock()
	defer a.id.queueMu.Unlock()
	dir := a.queueDir()
	names, err := queued(dir)
	if err != nil || len(names) == 0 {
		return err
	}
	defer storage.SyncDir(dir)
	for _, n := range names {
		p := filepath.Join(dir, n)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var req api.ReportRequest
		if err := json.Unmarshal(b, &req); err != nil || req.Validate() != nil {
			os.Remove(p) // damaged: it could never be sent
			continue
		}
		err = a.Client.Report(ctx, req)
		switch {
		case err == nil, errors.Is(err, &api.Error{Code: api.CodeReplay}):
		case unreachable(err):
			return err
		default:
			a.say("The server refused a saved report (%s); it is dropped: %v", req.Event, err)
		}
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	return nil
}
