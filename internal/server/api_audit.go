package server

// The update and admin API: audit (routes in api.go).

import (
	"encoding/hex"
	"net/http"
	"strconv"

	"github.com/mxos-linux/mxos-update/internal/api"
)

func (a *apiState) handleAudit(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	after, limit := int64(0), 100
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return api.Errorf(api.CodeBadRequest, "after must be a sequence number")
		}
		after = n
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return api.Errorf(api.CodeBadRequest, "limit must be 1 to 1000")
		}
		limit = n
	}
	entries, err := a.store.ListAudit(r.Context(), after, limit)
	if err != nil {
		return err
	}
	out := api.AuditList{Entries: make([]api.AuditEntry, 0, len(entries)), Verified: true}
	for _, e := range entries {
		out.Entries = append(out.Entries, api.AuditEntry{Seq: e.Seq, Actor: e.Actor, Action: e.Action, Subject: e.Subject,
			Detail: e.Detail, At: e.At, PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash)})
	}
	if err := a.store.VerifyAudit(r.Context()); err != nil {
		out.Verified, out.VerifyError = false, err.Error()
	}
	seq, hash, err := a.store.AuditHead(r.Context())
	if err != nil {
		return err
	}
	out.HeadSeq, out.HeadHash = seq, hex.EncodeToString(hash)
	writeJSON(w, http.StatusOK, out)
	return nil
}
