package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// The same suite runs on both engines: SQLite on a temp file, PostgreSQL
// on a real server started once for the package (or the one named by
// MXOS_TEST_POSTGRES), with a fresh database per test.

func TestMain(m *testing.M) {
	code := m.Run()
	pg.stop()
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
	pg.start()
	if pg.missing != "" {
		testtool.Missing(t, pg.missing)
	}
	if pg.err != nil {
		t.Fatalf("starting PostgreSQL: %v", pg.err)
	}
	runStoreSuite(t, pg.newDatabase)
}

// pg is the package's PostgreSQL server.
var pg pgServer

type pgServer struct {
	once    sync.Once
	missing string // why the server binaries are unavailable
	err     error
	admin   *sql.DB  // connected to the "postgres" database
	base    *url.URL // DSN of the server; the path is set per database
	n       atomic.Int64
	stopFn  func()
}

func (p *pgServer) start() {
	p.once.Do(func() {
		if dsn := os.Getenv("MXOS_TEST_POSTGRES"); dsn != "" {
			p.err = p.connect(dsn)
			return
		}
		bin, missing := findPostgres()
		if missing != "" {
			p.missing = missing
			return
		}
		var dsn string
		dsn, p.stopFn, p.err = startPostgres(bin)
		if p.err == nil {
			p.err = p.connect(dsn)
		}
	})
}

func (p *pgServer) connect(dsn string) error {
	u, err := url.Parse(dsn)
	if err != nil {
		return fmt.Errorf("parsing MXOS_TEST_POSTGRES: %w", err)
	}
	p.base = u
	if p.admin, err = sql.Open("pgx", dsn); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p.admin.PingContext(ctx)
}

func (p *pgServer) stop() {
	if p.admin != nil {
		p.admin.Close()
	}
	if p.stopFn != nil {
		p.stopFn()
	}
}

// newDatabase creates an empty database for one test and returns its DSN.
// Databases on a server we started vanish with it; on an existing server
// they are dropped when the test ends.
func (p *pgServer) newDatabase(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("mxos_test_%d_%d", os.Getpid(), p.n.Add(1))
	ctx := context.Background()
	if _, err := p.admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating database %s: %v", name, err)
	}
	if p.stopFn == nil {
		t.Cleanup(func() {
			if _, err := p.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
				t.Errorf("dropping database %s: %v", name, err)
			}
		})
	}
	u := *p.base
	u.Path = "/" + name
	return u.String()
}

// findPostgres returns the directory of initdb, pg_ctl and postgres:
// Debian's /usr/lib/postgresql/<major>/bin (newest major first), else PATH.
func findPostgres() (dir, missing string) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		a, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		b, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return a > b
	})
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		ok := true
		for _, tool := range []string{"initdb", "pg_ctl", "postgres"} {
			if _, err := os.Stat(filepath.Join(d, tool)); err != nil {
				ok = false
			}
		}
		if ok {
			return d, ""
		}
	}
	return "", "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in /usr/lib/postgresql/*/bin or PATH (Debian package postgresql)"
}

// startPostgres initializes a throwaway cluster and starts it on a free
// port of 127.0.0.1, with its socket in the cluster's directory and fsync
// off. PostgreSQL refuses to run as root, so as root it runs as the
// postgres user, in a temp directory owned by that user.
func startPostgres(bin string) (dsn string, stop func(), err error) {
	dir, err := os.MkdirTemp("", "mxos-db-pg-")
	if err != nil {
		return "", nil, err
	}
	var wrap []string // command prefix to run as the postgres user
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return "", nil, fmt.Errorf("running as root needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return "", nil, err
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			os.RemoveAll(dir)
			return "", nil, fmt.Errorf("running as root needs runuser: %w", err)
		}
		wrap = []string{runuser, "-u", "postgres", "--"}
	}
	run := func(name string, args ...string) error {
		argv := append(append(wrap[:len(wrap):len(wrap)], filepath.Join(bin, name)), args...)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "LC_ALL=C")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, out)
		}
		return nil
	}
	data := filepath.Join(dir, "data")
	cleanup := func() {
		_ = run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
		os.RemoveAll(dir)
	}
	if err := run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	// A free port can be taken between our probe and the server's bind:
	// retry a few times with a new one.
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			cleanup()
			return "", nil, err
		}
		opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", port, dir)
		err = run("pg_ctl", "-D", data, "-l", filepath.Join(dir, "server.log"), "-o", opts, "-w", "-t", "60", "start")
		if err == nil {
			return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), cleanup, nil
		}
		if attempt == 2 {
			log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			cleanup()
			return "", nil, errors.Join(err, fmt.Errorf("server log:\n%s", log))
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
