package db

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/testtool/pgtest"
)

// The same suite runs on both engines: SQLite on a temp file, PostgreSQL
// on a real server started once for the package (or the one named by
// MXOS_TEST_POSTGRES), with a fresh database per test.

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	runStoreSuite(t, func(t *testing.T) string {
		return "sqlite:" + filepath.Join(t.TempDir(), "test.db")
	})
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	pgtest.Database(t) // the server starts (or is missing) before the suite's subtests
	runStoreSuite(t, func(t *testing.T) string { return pgtest.Database(t) })
}
