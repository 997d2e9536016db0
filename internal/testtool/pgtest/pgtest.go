// Package pgtest starts throwaway PostgreSQL clusters from the machine's
// server binaries (Debian's postgresql package): one code path for every
// test and benchmark that needs a real PostgreSQL (internal/db's engine
// suite, the replica tests in internal/e2e, mxos-bench check).
//
// Start makes a cluster in a directory and starts it on a free port of
// 127.0.0.1 (as root it runs as the postgres user, which PostgreSQL
// requires). Database is the tests' entry: one cluster per test binary,
// started on first use (or the server named by MXOS_TEST_POSTGRES), and a
// fresh database per call; a missing PostgreSQL skips the test, or fails
// it under CI (testtool.Missing). Test binaries that call Database stop
// the shared cluster in TestMain with StopShared.
package pgtest

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

	_ "github.com/jackc/pgx/v5/stdlib" // the pgx database/sql driver

	"github.com/mxos-linux/mxos-update/internal/testtool"
)

// ErrMissing is returned when no PostgreSQL server binaries are found.
var ErrMissing = errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in /usr/lib/postgresql/*/bin or PATH (Debian package postgresql)")

// Find returns the directory of initdb, pg_ctl and postgres: Debian's
// /usr/lib/postgresql/<major>/bin (newest major first), else PATH.
func Find() (string, error) {
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
			return d, nil
		}
	}
	return "", ErrMissing
}

// Options configure Start.
type Options struct {
	// Dir holds the cluster (its data, socket and log); it is emptied
	// first. Empty: a new temp directory, removed by Stop.
	Dir string
	// Settings are extra server settings, "name=value" each (after the
	// defaults, so they win): e.g. "shared_buffers=1GB".
	Settings []string
	// Env is the environment of the PostgreSQL commands (default
	// os.Environ()); LC_ALL=C is added.
	Env []string
}

// DefaultSettings are what every cluster gets: listening on 127.0.0.1
// only, room for several servers' connection pools.
var DefaultSettings = []string{"listen_addresses=127.0.0.1", "max_connections=200"}

// FastSettings trade durability for speed, for tests: a crash of the
// machine may lose the cluster, which tests throw away anyway.
var FastSettings = []string{"fsync=off", "synchronous_commit=off", "full_page_writes=off"}

// Cluster is a running PostgreSQL cluster.
type Cluster struct {
	DSN     string // postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable
	DataDir string
	Version string // `postgres --version`
	dir     string
	temp    bool
	run     func(ctx context.Context, name string, args ...string) error
}

// Start initializes a cluster in opts.Dir and starts it on a free port
// of 127.0.0.1 with its socket in that directory, trusting local
// connections as user postgres.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	bin, err := Find()
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: opts.Dir}
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "mxos-pg-"); err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		c.temp = true
	} else {
		if err := os.RemoveAll(c.dir); err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
		if err := os.MkdirAll(c.dir, 0o700); err != nil {
			return nil, fmt.Errorf("postgres: %w", err)
		}
	}
	fail := func(err error) (*Cluster, error) {
		if c.temp {
			os.RemoveAll(c.dir)
		}
		return nil, fmt.Errorf("postgres: %w", err)
	}
	var wrap []string // command prefix to run as the postgres user
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fail(fmt.Errorf("running as root needs the postgres user: %w", err))
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(c.dir, uid, gid); err != nil {
			return fail(err)
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			return fail(fmt.Errorf("running as root needs runuser: %w", err))
		}
		wrap = []string{runuser, "-u", "postgres", "--"}
	}
	env := opts.Env
	if env == nil {
		env = os.Environ()
	}
	c.run = func(ctx context.Context, name string, args ...string) error {
		argv := append(append(wrap[:len(wrap):len(wrap)], filepath.Join(bin, name)), args...)
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Dir = c.dir
		cmd.Env = append(env[:len(env):len(env)], "LC_ALL=C")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, out)
		}
		return nil
	}
	c.DataDir = filepath.Join(c.dir, "data")
	if err := c.run(ctx, "initdb", "-D", c.DataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return fail(err)
	}
	// A free port can be taken between our probe and the server's bind:
	// retry a few times with a new one.
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return fail(err)
		}
		o := []string{"-p", strconv.Itoa(port), "-k", c.dir}
		for _, s := range append(DefaultSettings[:len(DefaultSettings):len(DefaultSettings)], opts.Settings...) {
			o = append(o, "-c", s)
		}
		err = c.run(ctx, "pg_ctl", "-D", c.DataDir, "-l", filepath.Join(c.dir, "server.log"), "-o", strings.Join(o, " "), "-w", "-t", "120", "start")
		if err == nil {
			c.DSN = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
			break
		}
		if attempt == 2 {
			log, _ := os.ReadFile(filepath.Join(c.dir, "server.log"))
			return fail(errors.Join(err, fmt.Errorf("server log:\n%s", log)))
		}
	}
	if out, err := exec.Command(filepath.Join(bin, "postgres"), "--version").Output(); err == nil {
		c.Version = strings.TrimSpace(string(out))
	}
	return c, nil
}

// Stop shuts the cluster down (fast: open sessions are ended) and
// removes its directory if Start made it.
func (c *Cluster) Stop() error {
	err := c.run(context.Background(), "pg_ctl", "-D", c.DataDir, "-m", "fast", "-w", "stop")
	if c.temp {
		os.RemoveAll(c.dir)
	}
	return err
}

// PostmasterPID reads the cluster's postmaster.pid.
func (c *Cluster) PostmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(c.DataDir, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("postgres: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(line))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// shared is the test binary's server.
var shared struct {
	once    sync.Once
	missing bool
	err     error
	cluster *Cluster // nil with MXOS_TEST_POSTGRES
	admin   *sql.DB  // connected to the server's "postgres" database
	base    *url.URL
	n       atomic.Int64
}

// Database returns the DSN of a new, empty database on the test binary's
// PostgreSQL server: one started on first use (fast settings), or the
// one MXOS_TEST_POSTGRES names (there the database is dropped when the
// test ends). Without PostgreSQL it calls testtool.Missing.
func Database(t testing.TB) string {
	t.Helper()
	s := &shared
	s.once.Do(func() {
		dsn := os.Getenv("MXOS_TEST_POSTGRES")
		if dsn == "" {
			var c *Cluster
			c, s.err = Start(context.Background(), Options{Settings: FastSettings})
			if errors.Is(s.err, ErrMissing) {
				s.missing = true
				return
			}
			if s.err != nil {
				return
			}
			s.cluster, dsn = c, c.DSN
		}
		if s.base, s.err = url.Parse(dsn); s.err != nil {
			s.err = fmt.Errorf("parsing MXOS_TEST_POSTGRES: %w", s.err)
			return
		}
		if s.admin, s.err = sql.Open("pgx", dsn); s.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.err = s.admin.PingContext(ctx)
	})
	if s.missing {
		testtool.Missing(t, ErrMissing.Error())
	}
	if s.err != nil {
		t.Fatalf("starting PostgreSQL: %v", s.err)
	}
	name := fmt.Sprintf("mxos_test_%d_%d", os.Getpid(), s.n.Add(1))
	ctx := context.Background()
	if _, err := s.admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating database %s: %v", name, err)
	}
	if s.cluster == nil {
		t.Cleanup(func() {
			if _, err := s.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
				t.Errorf("dropping database %s: %v", name, err)
			}
		})
	}
	u := *s.base
	u.Path = "/" + name
	return u.String()
}

// StopShared stops the server Database started, if any (call it from
// TestMain after m.Run).
func StopShared() {
	if shared.admin != nil {
		shared.admin.Close()
	}
	if shared.cluster != nil {
		_ = shared.cluster.Stop()
	}
}
