package server

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/tlog"
	"github.com/mxos-linux/mxos-update/internal/tlogstore"
)

// The public parts of the audit log go to the transparency log too:
// rollout changes made through the API or by auto-halt, pins of groups
// (never of devices), and rotations of the channel metadata root. A loop
// reads the audit log after the last entry it mirrored (its sequence
// number kept in DATA/log-audit-seq) every second, so the API handlers
// need no change; the entries keep the audit entry's time. A crash
// between an append and saving the number may log an event twice, which
// a reader sees as the same event (same time and fields). A mark past
// the audit log's end (a database restored from an older backup) is
// brought back to that end at start (clampAuditMark).

const tlogAuditBatch = 100

// tlogAuditLoop logs a change of the release keys, then mirrors until
// ctx ends.
func (s *Server) tlogAuditLoop(ctx context.Context) {
	if err := s.logReleaseKeys(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("recording the release keys in the transparency log", zap.Error(err))
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if err := s.mirrorAudit(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("copying audit events to the transparency log", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// clampAuditMark runs when the server starts, before it answers: a
// database restored from a backup taken before the mirror's mark was
// saved ends below that mark, and its next events would take numbers
// already marked as mirrored and never reach the log. The mark comes
// back to the audit log's end (everything up to it was mirrored).
func (s *Server) clampAuditMark(ctx context.Context) error {
	seqFile := filepath.Join(s.cfg.DataDir, "log-audit-seq")
	mark, err := tlogstore.LoadSeq(seqFile)
	if err != nil {
		return err
	}
	head, _, err := s.cfg.Store.AuditHead(ctx)
	if err != nil || mark <= head {
		return err
	}
	s.log.Warn("the audit log ends before the transparency log's mark (restored from a backup?); mirroring from its end",
		zap.Int64("mark", mark), zap.Int64("audit_head", head))
	return tlogstore.SaveSeq(seqFile, head)
}

// mirrorAudit appends the public audit events not yet mirrored.
func (s *Server) mirrorAudit(ctx context.Context) error {
	l := s.cfg.TransparencyLog
	seqFile := filepath.Join(s.cfg.DataDir, "log-audit-seq")
	after, err := tlogstore.LoadSeq(seqFile)
	if err != nil {
		return err
	}
	for {
		entries, err := s.cfg.Store.ListAudit(ctx, after, tlogAuditBatch)
		if err != nil || len(entries) == 0 {
			return err
		}
		var public []tlog.Entry
		for _, a := range entries {
			if e, ok := publicEntry(a); ok {
				if err := e.Validate(); err != nil {
					s.log.Warn("audit event not fit for the public log; left out", zap.Int64("seq", a.Seq), zap.Error(err))
					continue
				}
				public = append(public, e)
			}
		}
		if len(public) > 0 {
			if _, _, err := l.AppendPublished(ctx, public...); err != nil {
				return err
			}
		}
		after = entries[len(entries)-1].Seq
		if err := tlogstore.SaveSeq(seqFile, after); err != nil {
			return err
		}
	}
}

// publicEntry maps an audit entry to a public log entry, if it has one.
func publicEntry(a db.Entry) (tlog.Entry, bool) {
	e := tlog.Entry{Time: a.At.UTC().Truncate(time.Second)}
	var detail map[string]any
	_ = json.Unmarshal([]byte(a.Detail), &detail)
	str := func(k string) string { v, _ := detail[k].(string); return v }
	switch {
	case strings.HasPrefix(a.Action, "rollout."):
		kinds := map[string]tlog.Kind{"rollout.start": tlog.KindRolloutStart, "rollout.pause": tlog.KindRolloutPause,
			"rollout.halt": tlog.KindRolloutHalt, "rollout.resume": tlog.KindRolloutResume, "rollout.complete": tlog.KindRolloutComplete}
		k, ok := kinds[a.Action]
		parts := strings.SplitN(a.Subject, "/", 3)
		if !ok || len(parts) != 3 {
			return e, false
		}
		e.Kind, e.Channel, e.Arch, e.Version = k, parts[0], parts[1], parts[2]
		if k == tlog.KindRolloutStart {
			e.Ramp = strings.ReplaceAll(str("ramp"), " ", "")
		}
	case a.Action == "pin.set" && strings.HasPrefix(a.Subject, string(db.PinGroup)+"/"):
		e.Kind, e.Group = tlog.KindGroupPin, strings.TrimPrefix(a.Subject, string(db.PinGroup)+"/")
		e.Channel, e.Version = str("channel"), str("version")
	case a.Action == "pin.delete" && strings.HasPrefix(a.Subject, string(db.PinGroup)+"/"):
		e.Kind, e.Group = tlog.KindGroupUnpin, strings.TrimPrefix(a.Subject, string(db.PinGroup)+"/")
	case a.Action == "metadata.root":
		e.Kind = tlog.KindMetadataRotation
	default:
		return e, false
	}
	return e, true
}

// logReleaseKeys appends a key-rotation entry when the release key set
// (Config.TrustedKeys) differs from the one last logged, whose id is kept
// in DATA/log-release-keys; the first start with keys logs them too.
func (s *Server) logReleaseKeys(ctx context.Context) error {
	if len(s.cfg.TrustedKeys) == 0 {
		return nil
	}
	file := filepath.Join(s.cfg.DataDir, "log-release-keys")
	id := releaseKeySetID(s.cfg.TrustedKeys)
	if b, err := os.ReadFile(file); err == nil && strings.TrimSpace(string(b)) == id {
		return nil
	}
	e := tlog.Entry{Kind: tlog.KindKeyRotation, Key: id, Time: time.Now().UTC().Truncate(time.Second)}
	if _, _, err := s.cfg.TransparencyLog.AppendPublished(ctx, e); err != nil {
		return err
	}
	return tlogstore.WriteFile(file, []byte(id+"\n"))
}
