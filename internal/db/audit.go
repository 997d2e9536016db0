package db

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Entry is one audit log entry: who did what to what, when.
type Entry struct {
	Seq     int64  // 1, 2, 3, … without gaps; assigned by AppendAudit
	Actor   string // token name or user, e.g. "token:ci-builder"
	Action  string // e.g. "publish", "promote", "rollout.halt", "pin.set", "token.revoke"
	Subject string // what it acted on, e.g. "stable/x86_64 10.2"
	Detail  string // JSON, stored and hashed byte for byte; "" for none
	At      time.Time
	// PrevHash is the previous entry's Hash (32 zero bytes for entry 1);
	// Hash chains this entry to it. Both are set by AppendAudit.
	PrevHash []byte
	Hash     []byte
}

// AuditError says where the audit chain breaks: Seq is the first entry
// that is missing, out of place or not what was appended.
type AuditError struct {
	Seq    int64
	Reason string
}

func (e *AuditError) Error() string {
	return fmt.Sprintf("audit log broken at entry %d: %s", e.Seq, e.Reason)
}

// auditHash computes an entry's chain hash with the encoding drawn in the
// package documentation (TestAuditHashEncoding rebuilds it byte by byte).
func auditHash(prev []byte, e *Entry) []byte {
	h := sha256.New()
	h.Write(prev)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(e.Seq))
	h.Write(n[:])
	at := e.At.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano)
	for _, f := range []string{e.Actor, e.Action, e.Subject, e.Detail, at} {
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	return h.Sum(nil)
}

// genesis returns the PrevHash of entry 1: 32 zero bytes.
func genesis() []byte { return make([]byte, sha256.Size) }

// AppendAudit appends an entry and returns it with Seq, At (UTC,
// microseconds), PrevHash and Hash set. Appends are serialized (SQLite's
// single writer; a PostgreSQL advisory lock held to commit), so two
// concurrent appends can never both follow the same entry. Inside a Tx the
// entry commits or rolls back with the change it records.
func (q *Queries) AppendAudit(ctx context.Context, e Entry) (Entry, error) {
	c := check{what: "audit entry"}
	c.key("actor", e.Actor)
	c.key("action", e.Action)
	c.optKey("subject", e.Subject)
	c.text("detail", e.Detail, maxText)
	c.time("time", e.At)
	if c.err == nil && e.Detail != "" && !json.Valid([]byte(e.Detail)) {
		c.fail("detail is not valid JSON")
	}
	if c.err != nil {
		return Entry{}, c.err
	}
	e.At = fromMicros(micros(e.At))
	err := q.atomic(ctx, func(q *Queries) error {
		if err := q.d.lock(ctx, q.q, "mxos-audit"); err != nil {
			return err
		}
		var (
			seq     int64
			prevHex string
		)
		err := q.q.QueryRowContext(ctx, `SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&seq, &prevHex)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			e.PrevHash = genesis()
		case err != nil:
			return fmt.Errorf("reading audit head: %w", err)
		default:
			if e.PrevHash, err = hex.DecodeString(prevHex); err != nil {
				return fmt.Errorf("reading audit head: entry %d: %w", seq, err)
			}
		}
		e.Seq = seq + 1
		e.Hash = auditHash(e.PrevHash, &e)
		_, err = q.q.ExecContext(ctx, `INSERT INTO audit_log (seq, actor, action, subject, detail, logged_at, prev_hash, hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			e.Seq, e.Actor, e.Action, e.Subject, e.Detail, micros(e.At),
			hex.EncodeToString(e.PrevHash), hex.EncodeToString(e.Hash))
		if isUnique(err) {
			return fmt.Errorf("%w: audit entry %d appended concurrently", ErrConflict, e.Seq)
		}
		return err
	})
	if err != nil {
		return Entry{}, fmt.Errorf("appending audit entry %s %s: %w", e.Action, e.Subject, err)
	}
	return e, nil
}

const auditColumns = `seq, actor, action, subject, detail, logged_at, prev_hash, hash`

// scanEntry reads a row; the hashes stay hex so VerifyAudit can report a
// malformed one instead of failing the scan.
func scanEntry(sc interface{ Scan(...any) error }) (e Entry, prevHex, hashHex string, err error) {
	var at int64
	err = sc.Scan(&e.Seq, &e.Actor, &e.Action, &e.Subject, &e.Detail, &at, &prevHex, &hashHex)
	e.At = fromMicros(at)
	return e, prevHex, hashHex, err
}

// ListAudit returns up to limit entries after afterSeq, in order (limit 0
// means 100, at most 1000). Page on with the last Seq returned.
func (q *Queries) ListAudit(ctx context.Context, afterSeq int64, limit int) ([]Entry, error) {
	rows, err := q.q.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2`,
		afterSeq, pageLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("listing audit log: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		e, prevHex, hashHex, err := scanEntry(rows)
		if err != nil {
			return nil, fmt.Errorf("listing audit log: %w", err)
		}
		// A malformed stored hash reads as nil here; VerifyAudit names it.
		e.PrevHash, _ = hex.DecodeString(prevHex)
		e.Hash, _ = hex.DecodeString(hashHex)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing audit log: %w", err)
	}
	return out, nil
}

// AuditHead returns the last entry's Seq and Hash (0 and nil when the log
// is empty). The chain proves every entry up to the head; deleting entries
// from the end leaves a shorter valid chain, so whoever must detect that
// records the head elsewhere (a log line, a signed snapshot) and compares.
func (q *Queries) AuditHead(ctx context.Context) (seq int64, hash []byte, err error) {
	var hashHex string
	err = q.q.QueryRowContext(ctx, `SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hashHex)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("reading audit head: %w", err)
	}
	if hash, err = hex.DecodeString(hashHex); err != nil {
		return 0, nil, &AuditError{Seq: seq, Reason: "stored hash is not hex"}
	}
	return seq, hash, nil
}

// VerifyAudit recomputes the whole chain and returns nil if every entry is
// present (seq 1, 2, … without gaps), follows its predecessor (its stored
// PrevHash is the previous Hash) and hashes to its stored Hash. Otherwise
// it returns an *AuditError for the first bad entry: an edited entry fails
// its own hash, a deleted one leaves a gap (or, if the rest were
// renumbered, a broken link), reordered ones break the links. Other
// failures are database errors.
func (q *Queries) VerifyAudit(ctx context.Context) error {
	rows, err := q.q.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit_log ORDER BY seq`)
	if err != nil {
		return fmt.Errorf("verifying audit log: %w", err)
	}
	defer rows.Close()
	prev, want := genesis(), int64(1)
	for rows.Next() {
		e, prevHex, hashHex, err := scanEntry(rows)
		if err != nil {
			return fmt.Errorf("verifying audit log: %w", err)
		}
		if e.Seq != want {
			return &AuditError{Seq: want, Reason: fmt.Sprintf("entry is missing (the next one is %d)", e.Seq)}
		}
		storedPrev, err1 := hex.DecodeString(prevHex)
		stored, err2 := hex.DecodeString(hashHex)
		switch {
		case err1 != nil || err2 != nil:
			return &AuditError{Seq: e.Seq, Reason: "stored hash is not hex"}
		case !bytes.Equal(storedPrev, prev):
			return &AuditError{Seq: e.Seq, Reason: "does not follow the previous entry (previous hash differs)"}
		case !bytes.Equal(auditHash(prev, &e), stored):
			return &AuditError{Seq: e.Seq, Reason: "content does not match its hash (edited)"}
		}
		prev, want = stored, want+1
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("verifying audit log: %w", err)
	}
	return nil
}
