package db

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one embedded migrations/NNNN_name.sql file.
type migration struct {
	version  int64
	name     string // file name, e.g. "0001_init.sql"
	sql      string // as written; see dialect.rewrite
	checksum string // hex SHA-256 of the file
}

var migrationName = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)

// loadMigrations reads the embedded migrations in version order. Versions
// must be unique and start at 1 without gaps, so a missing file is caught
// at build time by the tests rather than in production.
func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("reading embedded migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("embedded migration %q is not named NNNN_name.sql", e.Name())
		}
		v, _ := strconv.ParseInt(m[1], 10, 64) // four digits always parse
		b, err := migrationFS.ReadFile(path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", e.Name(), err)
		}
		sum := sha256.Sum256(b)
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b), checksum: hex.EncodeToString(sum[:])})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	for i, m := range ms {
		if m.version != int64(i+1) {
			return nil, fmt.Errorf("embedded migration %s: expected version %04d", m.name, i+1)
		}
	}
	return ms, nil
}

// rewrite adapts migration SQL to the dialect. The whole mapping is one
// entry: an auto-numbered key is BIGSERIAL in PostgreSQL and SQLite's
// rowid alias, which must be spelled exactly INTEGER PRIMARY KEY.
func (d dialect) rewrite(sql string) string {
	if d == dialectSQLite {
		return strings.ReplaceAll(sql, "BIGSERIAL PRIMARY KEY", "INTEGER PRIMARY KEY")
	}
	return sql
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    BIGINT PRIMARY KEY,
    name       TEXT   NOT NULL,
    checksum   TEXT   NOT NULL,
    applied_at BIGINT NOT NULL
)`

// migrate applies the embedded migrations the database lacks, each in its
// own transaction together with its schema_migrations row. Several servers
// sharing one PostgreSQL database may start at once, so each step takes an
// advisory lock and re-reads what is applied. An applied migration whose
// file changed, or an applied version this binary does not know (the
// database is newer than the binary), is an error: running on a schema
// nobody wrote this code for would be worse than not starting.
func (s *Store) migrate(ctx context.Context) error { return s.migrateTo(ctx, migrateLimit) }

// migrateLimit, when set by a test, stops Open's migrations at that
// version, to build an older schema with data in it.
var migrateLimit int64

// migrateTo applies the migrations up to version upTo (0: all); tests use
// it to build an older schema with data in it.
func (s *Store) migrateTo(ctx context.Context, upTo int64) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	err = s.inTx(ctx, func(q *Queries) error {
		if err := q.d.lock(ctx, q.q, "mxos-migrate"); err != nil {
			return err
		}
		_, err := q.q.ExecContext(ctx, createMigrationsTable)
		return err
	})
	if err != nil {
		return fmt.Errorf("creating schema_migrations: %w", err)
	}
	for _, m := range ms {
		if upTo > 0 && m.version > upTo {
			break
		}
		err := s.inTx(ctx, func(q *Queries) error {
			if err := q.d.lock(ctx, q.q, "mxos-migrate"); err != nil {
				return err
			}
			applied, err := q.appliedMigrations(ctx)
			if err != nil {
				return err
			}
			if err := checkApplied(applied, ms); err != nil {
				return err
			}
			if _, ok := applied[m.version]; ok {
				return nil
			}
			if _, err := q.q.ExecContext(ctx, q.d.rewrite(m.sql)); err != nil {
				return fmt.Errorf("running: %w", err)
			}
			_, err = q.q.ExecContext(ctx,
				`INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)`,
				m.version, m.name, m.checksum, micros(time.Now()))
			return err
		})
		if err != nil {
			return fmt.Errorf("applying migration %s to %s: %w", m.name, s.d, err)
		}
	}
	return nil
}

// appliedMigrations maps applied versions to their recorded checksums.
func (q *Queries) appliedMigrations(ctx context.Context) (map[int64]string, error) {
	rows, err := q.q.QueryContext(ctx, `SELECT version, checksum FROM schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("reading schema_migrations: %w", err)
	}
	defer rows.Close()
	applied := map[int64]string{}
	for rows.Next() {
		var v int64
		var sum string
		if err := rows.Scan(&v, &sum); err != nil {
			return nil, fmt.Errorf("reading schema_migrations: %w", err)
		}
		applied[v] = sum
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading schema_migrations: %w", err)
	}
	return applied, nil
}

func checkApplied(applied map[int64]string, ms []migration) error {
	for v, sum := range applied {
		if v < 1 || v > int64(len(ms)) {
			return fmt.Errorf("database has schema version %d, newer than this binary's %d: upgrade mxos-server", v, len(ms))
		}
		if m := ms[v-1]; sum != m.checksum {
			return fmt.Errorf("migration %s was changed after it was applied (checksum %s, file %s)", m.name, sum, m.checksum)
		}
	}
	return nil
}

// Migration is a row of schema_migrations.
type Migration struct {
	Version   int64
	Name      string
	Checksum  string // hex SHA-256 of the file as applied
	AppliedAt time.Time
}

// Migrations lists the applied migrations in order.
func (s *Store) Migrations(ctx context.Context) ([]Migration, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version`)
	if err != nil {
		return nil, fmt.Errorf("listing migrations: %w", err)
	}
	defer rows.Close()
	var out []Migration
	for rows.Next() {
		var m Migration
		var at int64
		if err := rows.Scan(&m.Version, &m.Name, &m.Checksum, &at); err != nil {
			return nil, fmt.Errorf("listing migrations: %w", err)
		}
		m.AppliedAt = fromMicros(at)
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing migrations: %w", err)
	}
	return out, nil
}
