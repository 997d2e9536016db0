package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"modernc.org/sqlite"               // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"
)

// Sentinel errors. Every error the store returns for one of these
// conditions wraps the sentinel with context; test with errors.Is.
var (
	// ErrNotFound: the row asked for does not exist (or, for tokens, is
	// revoked).
	ErrNotFound = errors.New("not found")
	// ErrDuplicate: a row with the same key already exists.
	ErrDuplicate = errors.New("already exists")
	// ErrConflict: the change contradicts the current state (another open
	// rollout, a rollout whose state moved meanwhile).
	ErrConflict = errors.New("conflict")
	// ErrVersionOrder: a release is not newer than the newest one already
	// on its channel and architecture.
	ErrVersionOrder = errors.New("version is not newer than the channel's newest")
	// ErrInvalid: the input is malformed (missing field, bad version,
	// text that is not UTF-8, ...). Nothing was written.
	ErrInvalid = errors.New("invalid input")
)

// sqliteFile is the database file's name in the data directory.
const sqliteFile = "mxos.db"

// sqliteParams configure every SQLite connection (modernc DSN syntax).
// busy_timeout makes writers wait for the lock instead of failing; WAL lets
// readers run beside the single writer; foreign_keys is off by default in
// SQLite; _txlock=immediate makes every transaction take the write lock at
// BEGIN, so a read-then-write transaction (the audit chain head, the newest
// release) can neither interleave with another writer nor fail halfway
// with SQLITE_BUSY_SNAPSHOT. synchronous=NORMAL is safe with WAL: a crash
// of the process loses nothing; a power loss can lose the last commits but
// never corrupts the database, and saves an fsync per commit.
//
// mmap_size stays 0: every connection of the pool maps the file on its
// own and faults each page in separately, which at a million devices cost
// more than the reads it saves (mxos-bench check, README "Checks").
// Instead the pool is small (sqliteMaxConns) and each connection keeps
// 8 MiB of pages (cache_size): the B-tree interior pages of the tables a
// check reads stay cached in every connection, so a random lookup among
// a million credentials reads one or two leaf pages from the OS.
const sqliteParams = "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_pragma=cache_size(-8192)&_txlock=immediate"

// sqliteMaxConns bounds the SQLite pool: one writer and a few readers per
// core is all SQLite can use, and each connection has its own page cache.
// Nothing in this package (or its callers, see Tx) holds a connection
// while waiting for another, so a bounded pool only queues.
func sqliteMaxConns() int { return max(6, 3*runtime.GOMAXPROCS(0)) }

// Store is the metadata store: a database connection pool plus the methods
// of Queries, which run directly on the database. Use Tx for changes that
// must commit together. A Store is safe for concurrent use.
type Store struct {
	Queries
	db       *sql.DB
	prepared *preparedDB
	errs     atomic.Int64 // errcount.go
}

// Tx is a transaction: the methods of Queries, run inside it. It is valid
// only during the Store.Tx callback, from one goroutine.
type Tx struct {
	Queries
}

// Queries is every read and write the store offers. Store and Tx embed it,
// so the same methods run on the database or inside a transaction; a
// function that should work in both can take a *Queries.
type Queries struct {
	q querier
	d dialect
	// atomic runs fn with Queries bound to a single transaction: a new one
	// for a Store, the enclosing one for a Tx. Multi-statement methods use
	// it so they are all-or-nothing either way.
	atomic func(ctx context.Context, fn func(*Queries) error) error
	// In a transaction: the transaction and the store's statement cache,
	// for execPrepared.
	tx   *sql.Tx
	prep *preparedDB
}

// execPrepared is q.q.ExecContext through a statement prepared once per
// connection, in a transaction too: for the large statements run many
// times (the batched last-seen writes), whose parsing would otherwise
// cost as much as running them.
func (q *Queries) execPrepared(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if q.tx == nil || q.prep == nil {
		return q.q.ExecContext(ctx, query, args...)
	}
	st, err := q.prep.stmt(ctx, query)
	if err != nil {
		return q.q.ExecContext(ctx, query, args...)
	}
	return q.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Open opens (creating if needed) the metadata store and applies pending
// migrations. dsn selects the engine:
//
//	""                     SQLite at dataDir/mxos.db (dataDir is created)
//	"sqlite:PATH"          SQLite at PATH
//	"postgres://…", "postgresql://…"   PostgreSQL through pgx
func Open(ctx context.Context, dsn, dataDir string) (*Store, error) {
	var (
		driver, source string
		d              dialect
	)
	switch {
	case dsn == "":
		if dataDir == "" {
			return nil, fmt.Errorf("opening metadata store: %w: no database given and no data directory", ErrInvalid)
		}
		if err := os.MkdirAll(dataDir, 0o750); err != nil {
			return nil, fmt.Errorf("opening metadata store: creating data directory: %w", err)
		}
		path := filepath.Join(dataDir, sqliteFile)
		var err error
		if source, err = sqliteSource(path); err != nil {
			return nil, err
		}
		driver, d = "sqlite", dialectSQLite
	case strings.HasPrefix(dsn, "sqlite:"):
		var err error
		if source, err = sqliteSource(strings.TrimPrefix(dsn, "sqlite:")); err != nil {
			return nil, err
		}
		driver, d = "sqlite", dialectSQLite
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		driver, source, d = "pgx", dsn, dialectPostgres
	default:
		// Never echo the DSN: it may carry a password.
		return nil, fmt.Errorf("opening metadata store: %w: database must be empty (SQLite in the data directory), sqlite:PATH or postgres://…", ErrInvalid)
	}

	db, err := sql.Open(driver, source)
	if err != nil {
		return nil, fmt.Errorf("opening %s metadata store: %w", d, err)
	}
	// Keep connections open under load: re-opening a SQLite connection
	// re-reads the schema and re-runs the pragmas.
	db.SetMaxIdleConns(32)
	if d == dialectSQLite {
		db.SetMaxOpenConns(sqliteMaxConns())
	}
	s := &Store{db: db}
	s.prepared = &preparedDB{db: db}
	s.Queries = Queries{q: countErrs{s.prepared, &s.errs}, d: d, atomic: s.inTx}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connecting to %s metadata store: %w", d, err)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// sqliteSource turns a file path into a modernc DSN. The file is created
// 0600 first, since it holds token hashes; SQLite gives its -wal and -shm
// files the same mode.
func sqliteSource(path string) (string, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return "", fmt.Errorf("opening metadata store: %w: SQLite path %q must be non-empty without '?' or '#'", ErrInvalid, path)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", fmt.Errorf("opening metadata store: %w", err)
	}
	f.Close()
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + sqliteParams, nil
}

// Close closes the connection pool.
func (s *Store) Close() error {
	s.prepared.close()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing metadata store: %w", err)
	}
	return nil
}

// Ping checks that the database answers (for /readyz).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("pinging %s metadata store: %w", s.d, err)
	}
	return nil
}

// Engine names the database engine: "sqlite" or "postgres".
func (s *Store) Engine() string { return string(s.d) }

// Tx runs fn in a transaction and commits it if fn returns nil; otherwise
// (or if fn panics) it rolls back and returns fn's error. Use it to record
// a change and its audit entry together. fn must use only tx, never the
// Store: on SQLite the transaction holds the write lock, so a write through
// the Store would wait for it (and time out).
//
// On PostgreSQL, methods that serialize (AddRelease, AppendAudit) take
// advisory locks held until commit; call AppendAudit last so every
// transaction takes the locks in the same order.
func (s *Store) Tx(ctx context.Context, fn func(tx *Tx) error) error {
	return s.inTx(ctx, func(q *Queries) error { return fn(&Tx{Queries: *q}) })
}

func (s *Store) inTx(ctx context.Context, fn func(*Queries) error) error {
	sqlTx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		if failure(err) {
			s.errs.Add(1)
		}
		return fmt.Errorf("beginning transaction: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = sqlTx.Rollback() // the error that made us roll back matters more
		}
	}()
	q := &Queries{q: countErrs{sqlTx, &s.errs}, d: s.d, tx: sqlTx, prep: s.prepared}
	q.atomic = func(_ context.Context, fn func(*Queries) error) error { return fn(q) }
	if err := fn(q); err != nil {
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		if failure(err) {
			s.errs.Add(1)
		}
		return fmt.Errorf("committing transaction: %w", err)
	}
	committed = true
	return nil
}

// dialect is the engine behind a Store.
type dialect string

const (
	dialectSQLite   dialect = "sqlite"
	dialectPostgres dialect = "postgres"
)

// lock serializes transactions that read and then write the same data (the
// audit chain head, a channel's newest release). It must run inside a
// transaction. SQLite needs nothing more: every transaction already holds
// the database's single write lock from BEGIN IMMEDIATE. PostgreSQL takes
// a transaction-scoped advisory lock on a 64-bit hash of the key's parts;
// a collision only serializes two unrelated writers.
func (d dialect) lock(ctx context.Context, q querier, parts ...string) error {
	if d != dialectPostgres {
		return nil
	}
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	if _, err := q.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(h.Sum64())); err != nil {
		return fmt.Errorf("locking %s: %w", strings.Join(parts, "/"), err)
	}
	return nil
}

// isUnique reports whether err is a unique or primary key violation.
func isUnique(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code()
		return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// isForeignKey reports whether err is a foreign key violation.
func isForeignKey(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23503"
}

// Times are stored as BIGINT microseconds since the Unix epoch, UTC: exact,
// ordered and identical in both engines, with no driver time handling.

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// nullMicros stores the zero time as NULL.
func nullMicros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func fromNullMicros(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return fromMicros(n.Int64)
}

// nullText stores "" as NULL.
func nullText(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// Input limits. Keys are indexed, and a PostgreSQL B-tree entry must stay
// under about 2.7 kB, so both engines refuse long keys the same way.
const (
	maxKey  = 1024      // ids, names, channels, versions, actors
	maxText = 64 * 1024 // free text: errors, reasons, audit detail
)

// check collects the first validation failure of an input record, so a
// method validates every field before touching the database.
type check struct {
	what string // e.g. "release"
	err  error
}

func (c *check) fail(format string, args ...any) {
	if c.err == nil {
		c.err = fmt.Errorf("%s: %w: %s", c.what, ErrInvalid, fmt.Sprintf(format, args...))
	}
}

// text checks that s is storable text: valid UTF-8 without NUL bytes
// (PostgreSQL refuses both; SQLite would store them, so we refuse them
// everywhere) and at most max bytes.
func (c *check) text(field, s string, max int) {
	switch {
	case len(s) > max:
		c.fail("%s is %d bytes, at most %d allowed", field, len(s), max)
	case !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0:
		c.fail("%s is not valid UTF-8 text", field)
	}
}

// key checks a required short field.
func (c *check) key(field, s string) {
	if s == "" {
		c.fail("%s is required", field)
		return
	}
	c.text(field, s, maxKey)
}

// optKey checks an optional short field.
func (c *check) optKey(field, s string) { c.text(field, s, maxKey) }

// time checks a required timestamp. The store reads no clock: callers
// pass every time, so tests and replays control it.
func (c *check) time(field string, t time.Time) {
	if t.IsZero() {
		c.fail("%s is required", field)
	}
}

// pageLimit clamps a page size: 0 (or less) means 100, at most 1000.
func pageLimit(n int) int {
	switch {
	case n <= 0:
		return 100
	case n > 1000:
		return 1000
	}
	return n
}
