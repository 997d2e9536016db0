package server

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/tlog"
	"github.com/mxos-linux/mxos-update/internal/tlogstore"
)

// The public release transparency log (Config.TransparencyLog,
// internal/tlogstore): its directory is served read-only at /log/ as C2SP
// tlog-tiles (checkpoint revalidated, tiles immutable; .state/ and other
// dot files never), and releases and promotions are appended to it, and
// covered by a published checkpoint (up to tlogstore's checkpoint
// interval, 1s by default), before their ref moves, so nothing reaches a
// channel unlogged. A release whose
// entry cannot be appended is refused; if the release is refused after its
// entry was appended, the log names a release the server never offered,
// which a monitor sees as harmless (only the reverse is an alarm).

const logPrefix = "/log/"

// logRoutes registers /log/ when the transparency log is on.
func (s *Server) logRoutes() {
	if s.cfg.TransparencyLog == nil {
		return
	}
	s.mux.Handle("GET "+logPrefix, &logHandler{dir: s.cfg.TransparencyLog.Dir(), log: s.log.Named("tlog")})
	s.mux.HandleFunc("GET "+logPrefix+"proof", s.handleLogProof)
}

// handleLogProof answers GET /log/proof?channel=&arch=&commit=&old=N with
// the tlog.Proof a device checks before installing commit: the newest
// release or promotion entry of it on channel and arch, its inclusion
// proof and a consistency proof from size old, at the current
// checkpoint. 404 when the log has no such entry. Public, like the log.
func (s *Server) handleLogProof(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var old uint64
	if v := q.Get("old"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			http.Error(w, "old: not a tree size", http.StatusBadRequest)
			return
		}
		old = n
	}
	p, err := s.cfg.TransparencyLog.ProveRelease(r.Context(), q.Get("channel"), q.Get("arch"), q.Get("commit"), old)
	if errors.Is(err, tlogstore.ErrNotLogged) {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	} else if err != nil {
		s.log.Error("building a transparency log proof", zap.Error(err))
		http.Error(w, "transparency log unavailable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(p.Marshal())
}

type logHandler struct {
	dir string
	log *zap.Logger
}

func (h *logHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, logPrefix)
	if !validLogPath(name) {
		http.NotFound(w, r)
		return
	}
	root, err := os.OpenRoot(h.dir)
	if err != nil {
		h.log.Error("opening the transparency log directory", zap.Error(err))
		http.Error(w, "transparency log unavailable", http.StatusInternalServerError)
		return
	}
	defer root.Close()
	f, err := root.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		http.NotFound(w, r)
		return
	} else if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	if name == "checkpoint" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
	} else {
		w.Header().Set("Content-Type", "application/octet-stream")
		if strings.Contains(name, ".p/") {
			// A partial tile is replaced by a fuller one, never changed.
			w.Header().Set("Cache-Control", "public, max-age=3600")
		} else {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		}
	}
	http.ServeContent(w, r, "", st.ModTime(), f)
}

// validLogPath admits "checkpoint" and tile paths only: no dot segments
// (.state/ is private), nothing else.
func validLogPath(name string) bool {
	if name == "checkpoint" {
		return true
	}
	if !strings.HasPrefix(name, "tile/") {
		return false
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == "" || strings.HasPrefix(seg, ".") {
			return false
		}
		for _, c := range seg {
			if !(c >= '0' && c <= '9' || c == 'x' || c == 'p' || c == '.' || seg == "tile" || seg == "entries") {
				return false
			}
		}
	}
	return true
}

// logRelease appends the entry of a release or promotion; called inside
// the release transaction before the ref moves.
func (a *publishAPI) logRelease(ctx context.Context, rel db.Release, ramp string) error {
	l := a.tlog
	if l == nil {
		return nil
	}
	e := tlog.Entry{Kind: tlog.KindRelease, Channel: rel.Channel, Arch: rel.Arch, Version: rel.Version,
		Commit: rel.Commit, Image: rel.OCIDigest, Key: releaseKeySetID(a.trusted), Time: rel.PublishedAt.UTC().Truncate(time.Second)}
	if rel.PromotedFrom != "" {
		e.Kind, e.From = tlog.KindPromotion, rel.PromotedFrom
	}
	entries := []tlog.Entry{e}
	if ramp != "" { // the release started a rollout
		entries = append(entries, tlog.Entry{Kind: tlog.KindRolloutStart, Channel: rel.Channel, Arch: rel.Arch,
			Version: rel.Version, Ramp: strings.ReplaceAll(ramp, " ", ""), Time: e.Time})
	}
	// Published, not only sequenced: the ref must never point at a commit
	// that the log's current checkpoint does not cover.
	if _, _, err := l.AppendPublished(ctx, entries...); err != nil {
		if errors.Is(err, tlog.ErrInvalidEntry) {
			return api.Errorf(api.CodeBadRequest, "this release cannot be recorded in the transparency log: %v", err)
		}
		if errors.Is(err, tlogstore.ErrWitnesses) {
			return api.Errorf(api.CodeUnavailable, "not published: %v; try again when the witnesses answer", err)
		}
		return err
	}
	return nil
}

// releaseKeySetID names the trusted release keys in entries.
func releaseKeySetID(trusted []sign.Verifier) string {
	ids := make([]string, 0, len(trusted))
	for _, v := range trusted {
		if k, ok := v.(sign.KeyIdentifier); ok {
			ids = append(ids, v.MetaKey()+":"+k.KeyID())
		}
	}
	return tlog.KeySetID(ids)
}
