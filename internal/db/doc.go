// Package db is the server's metadata store: releases (each channel's
// history), rollouts, devices and their groups, pins, device reports, API
// token hashes and the hash-chained audit log. It holds no OS content;
// objects, blobs and signed metadata live in storage.
//
// # Engines
//
// Open picks the engine from the --database value: embedded SQLite
// (modernc.org/sqlite, pure Go) in the data directory by default, the
// single-binary setup for a school; PostgreSQL (pgx through database/sql)
// for replicas behind a load balancer. Both run the same embedded
// migrations and the same code and test suite.
//
// # Schema
//
//	releases          (channel, arch, version) → ref, commit_hex, oci_digest,
//	                  published_at/by, promoted_from
//	rollouts          id → channel, arch, version (→ releases), ramp, state,
//	                  created/started/updated/stopped_at, halt_reason;
//	                  unique (channel, arch) among pending/active/paused
//	devices           id → arch, channel, group_name, booted_commit, version,
//	                  first_seen, last_seen, report_seq (last accepted report
//	                  sequence number: replays are refused, see AddReport)
//	pins              (scope, target) → channel, version, created_by/at
//	reports           id (auto) → device_id, rollout_id, version, event (the
//	                  report classes of event.Event), error_text, reported_at, seq
//	tokens            id → name (unique among unrevoked), role, hash (unique),
//	                  created_at/by, revoked_at, device_id (a device token's
//	                  binding), expires_at
//	device_identities device_id → state (authorized, enrolled, revoked),
//	                  updated_at/by: enrollment happens once per id
//	                  (identities.go)
//	audit_log         seq → actor, action, subject, detail, logged_at,
//	                  prev_hash, hash
//	fleet_locks       (group_name, device_id) → acquired_at, expires_at: the
//	                  fleet-lock strategy's reboot slots (fleetlock.go)
//	schema_migrations version → name, checksum, applied_at
//
// # One SQL for two engines
//
// Migrations are migrations/NNNN_name.sql, embedded, applied in order,
// each in a transaction with its schema_migrations row; an applied file
// that changed, or a database newer than the binary, stops Open. Queries
// and migrations use the subset both engines accept:
//
//   - placeholders are $1, $2, … (modernc binds $N by position too);
//   - times are BIGINT microseconds since the Unix epoch, UTC: exact, ordered
//     and free of driver time conversions; Go values round-trip at
//     microsecond precision, and an optional time is NULL when zero;
//   - hashes are lowercase hex TEXT, so there is no BLOB/BYTEA split;
//   - optional text is NULL (oci_digest, promoted_from, rollout_id), or the
//     empty string where that already means "none" (group_name, pin fields);
//   - upserts are INSERT … ON CONFLICT … DO UPDATE, uniqueness "among open
//     rows" is a partial unique index (… WHERE …), and RolloutStats uses
//     ROW_NUMBER() OVER (…): all in SQLite ≥ 3.25 and PostgreSQL ≥ 9.5;
//   - the one rewrite: "BIGSERIAL PRIMARY KEY" becomes "INTEGER PRIMARY
//     KEY" (SQLite's rowid alias) in migrations run on SQLite.
//
// Release versions are ordered in Go (rollout.Compare), never by SQL.
// Text is refused unless it is UTF-8 without NUL bytes (PostgreSQL rejects
// both), and keys are capped at 1 KiB (PostgreSQL B-tree entries must stay
// small), so both engines accept and refuse the same input.
//
// # Concurrency
//
// SQLite runs in WAL mode with a busy timeout, foreign keys on, and every
// transaction beginning IMMEDIATE: one writer at a time, readers beside
// it. On PostgreSQL (READ COMMITTED), read-then-write sequences take a
// transaction-scoped advisory lock: the audit chain head and each
// channel/arch's newest release, so concurrent appends never fork the
// chain and concurrent publishes never break the version order. Rollout
// state changes are compare-and-set; constraints back every check.
//
// # Transactions and the audit log
//
// Store and Tx share every method (both embed Queries). Store.Tx runs a
// function in one transaction, so a change and the AppendAudit entry that
// records it commit together or not at all.
//
// Each audit entry is chained to the previous one:
//
//	Hash = SHA-256( PrevHash                          32 bytes; zeros for seq 1
//	                u64be(Seq)                         8 bytes
//	                u64be(len(Actor))   Actor
//	                u64be(len(Action))  Action
//	                u64be(len(Subject)) Subject
//	                u64be(len(Detail))  Detail
//	                u64be(len(at))      at )
//
// where u64be is a big-endian 64-bit length in bytes, text fields are the
// stored UTF-8 bytes, and at is the entry's time in UTC truncated to
// microseconds and formatted with time.RFC3339Nano (trailing zeros of the
// fraction dropped: "2026-11-23T13:45:09.123456Z"). The length prefixes
// make the encoding unambiguous. VerifyAudit recomputes the chain and
// names the first entry that is missing, out of place or edited
// (*AuditError). Tail truncation is the one edit a chain cannot show by
// itself: compare AuditHead with a head recorded elsewhere.
//
// # Tests
//
// One suite (runStoreSuite) runs on both engines: TestSQLite on temp
// files, TestPostgres on a throwaway server it starts from Debian's
// postgresql package (initdb/pg_ctl, as the postgres user when run as
// root), or on the server named by MXOS_TEST_POSTGRES=postgres://…; each
// test gets its own database. Without the binaries the PostgreSQL run
// skips, or fails when CI is set.
//
// The store reads no clock (migrations' applied_at aside): callers pass
// every time, and required times must be non-zero. It never sees plain
// tokens, only their SHA-256 (see Token).
package db
