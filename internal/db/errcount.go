package db

import (
	"context"
	"database/sql"
	"errors"
	"sync/atomic"
)

// Errors counts the database's failures for the server's metrics
// (mxos_db_errors_total): statements that failed, and transactions that
// could not begin or commit. Answers the store expects and handles are
// not failures: no rows, unique and foreign-key violations (duplicates
// and races it reports as ErrDuplicate, ErrConflict, ErrNotFound), and a
// caller's cancelled context.
func (s *Store) Errors() int64 { return s.errs.Load() }

// countErrs is a querier that counts failures into n.
type countErrs struct {
	q querier
	n *atomic.Int64
}

func (c countErrs) note(err error) error {
	if failure(err) {
		c.n.Add(1)
	}
	return err
}

func failure(err error) bool {
	return err != nil && !errors.Is(err, sql.ErrNoRows) && !isUnique(err) && !isForeignKey(err) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

func (c countErrs) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	r, err := c.q.ExecContext(ctx, query, args...)
	return r, c.note(err)
}

func (c countErrs) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	r, err := c.q.QueryContext(ctx, query, args...)
	return r, c.note(err)
}

// QueryRowContext's error surfaces at Scan, where the caller has it;
// those are not counted.
func (c countErrs) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return c.q.QueryRowContext(ctx, query, args...)
}
