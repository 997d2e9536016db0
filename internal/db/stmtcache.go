package db

import (
	"context"
	"database/sql"
	"sync"
)

// preparedDB runs queries outside transactions through statements
// prepared once per query text: a device check runs the same few reads
// thousands of times a second, and re-parsing their SQL was a quarter of
// its cost. database/sql re-prepares a Stmt on each pooled connection as
// needed. The set of query texts is fixed by this package's code, so the
// cache is bounded.
type preparedDB struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

func (p *preparedDB) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	p.mu.Lock()
	st, ok := p.m[query]
	p.mu.Unlock()
	if ok {
		return st, nil
	}
	st, err := p.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if old, ok := p.m[query]; ok {
		p.mu.Unlock()
		st.Close()
		return old, nil
	}
	if p.m == nil {
		p.m = map[string]*sql.Stmt{}
	}
	p.m[query] = st
	p.mu.Unlock()
	return st, nil
}

func (p *preparedDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := p.stmt(ctx, query)
	if err != nil {
		return p.db.ExecContext(ctx, query, args...)
	}
	return st.ExecContext(ctx, args...)
}

func (p *preparedDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := p.stmt(ctx, query)
	if err != nil {
		return p.db.QueryContext(ctx, query, args...)
	}
	return st.QueryContext(ctx, args...)
}

func (p *preparedDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := p.stmt(ctx, query)
	if err != nil {
		return p.db.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

func (p *preparedDB) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, st := range p.m {
		st.Close()
	}
	p.m = nil
}
