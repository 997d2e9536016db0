package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mxos-linux/mxos-update/internal/channelmeta"
	"github.com/mxos-linux/mxos-update/internal/channelmeta/publish"
	"github.com/mxos-linux/mxos-update/internal/sign"
	"github.com/mxos-linux/mxos-update/internal/testtool/pgtest"
)

// What makes the check benchmark fair (issue 10): every check is a
// device's first in a long while, as in a fleet that checks hourly; the
// server runs as set up in the README, signed channel metadata on; and it
// runs on both engines, PostgreSQL on the same machine.
//
//   - deviceWalk hands each server a random permutation of the fleet, one
//     device per request, continued across rounds: with --devices above
//     the requests a server answers in the run, no device checks twice,
//     so no answer can come from anything cached for that device. A walk
//     that wraps is reported (repeats, and the least time between two
//     checks of one device).
//   - checkMetadata adds DATA/metadata (mxosctl metadata init, release key
//     as root key, online key held by the server) with release-signed
//     targets listing both releases: every offer is checked against them.
//   - startCheckPostgres starts a PostgreSQL cluster of the machine's
//     PostgreSQL (Debian's postgresql package) on 127.0.0.1, and
//     copyToPostgres fills it with the very rows of the SQLite store.

// deviceWalk is one server's sequence of devices: a permutation of the
// fleet, walked by every load goroutine through one counter.
type deviceWalk struct {
	perm  []int32
	next  atomic.Int64
	start time.Time
}

func newDeviceWalk(n int, seed uint64) *deviceWalk {
	rng := rand.New(rand.NewPCG(seed, 0x77616c6b))
	perm := make([]int32, n)
	for i := range perm {
		perm[i] = int32(i)
	}
	rng.Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
	return &deviceWalk{perm: perm, start: time.Now()}
}

// take returns the next device.
func (w *deviceWalk) take() int {
	i := w.next.Add(1) - 1
	return int(w.perm[i%int64(len(w.perm))])
}

// repeats is how many requests named a device a second time or more.
func (w *deviceWalk) repeats() int64 {
	return max(0, w.next.Load()-int64(len(w.perm)))
}

// checkKeys are the benchmark store's own key pair directories, kept in
// the data directory so that a cached store and its metadata agree.
func checkKeys(data string) (release, online string) {
	return filepath.Join(data, "bench-keys", "release"), filepath.Join(data, "bench-keys", "online")
}

// checkMetadata initialises DATA/metadata as the README's quick start
// does (release key as root and release key, the server's online key)
// and publishes release-signed targets listing the store's releases. It
// is done once per data directory.
func checkMetadata(data, ref string, setup checkSetup) error {
	dir := filepath.Join(data, "metadata")
	if fileExists(filepath.Join(dir, "root.json")) {
		return nil
	}
	relDir, onDir := checkKeys(data)
	for _, d := range []string{relDir, onDir} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("check metadata: %w", err)
		}
		if err := sign.GenerateKeys(d, sign.GenerateOptions{Name: "mxos-bench"}); err != nil {
			return fmt.Errorf("check metadata: creating keys: %w", err)
		}
	}
	release, err := publish.LoadEd25519Signers(relDir)
	if err != nil {
		return fmt.Errorf("check metadata: %w", err)
	}
	online, err := publish.LoadEd25519Signers(onDir)
	if err != nil {
		return fmt.Errorf("check metadata: %w", err)
	}
	relPubs, err := publish.PublicKeys(release...)
	if err != nil {
		return fmt.Errorf("check metadata: %w", err)
	}
	onPubs, err := publish.PublicKeys(online...)
	if err != nil {
		return fmt.Errorf("check metadata: %w", err)
	}
	rel := publish.RoleKeys{Keys: relPubs, Threshold: 1}
	keys := publish.Keys{Root: rel, Release: rel, Online: publish.RoleKeys{Keys: onPubs, Threshold: 1}}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("check metadata: %w", err)
	}
	now := time.Now()
	if err := publish.Init(tmp, keys, release, release, publish.Options{}, now); err != nil {
		return fmt.Errorf("check metadata: %w", err)
	}
	repo, err := publish.Open(tmp, online, publish.Options{})
	if err != nil {
		return fmt.Errorf("check metadata: %w", err)
	}
	var rels []channelmeta.Release
	for i, v := range []string{checkOld, checkNew} {
		commit := setup.OldCommit
		if i == 1 {
			commit = setup.NewCommit
		}
		rels = append(rels, channelmeta.Release{Channel: checkChannel, Arch: checkArch, Version: v, Ref: ref,
			Commit: commit, PublishedAt: now.Add(time.Duration(i-2) * 24 * time.Hour)})
	}
	if err := repo.PublishTargets(rels, release, now); err != nil {
		return fmt.Errorf("check metadata: signing targets: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("check metadata: %w", err)
	}
	return nil
}

// checkPostgres is a running PostgreSQL cluster for the check benchmark.
type checkPostgres struct {
	*pgtest.Cluster
	dsn     string
	version string
}

func (p *checkPostgres) stop() error { return p.Stop() }

// startCheckPostgres starts a fresh cluster in dir on 127.0.0.1
// (internal/testtool/pgtest), tuned as a small dedicated server would
// be: shared_buffers large enough for the whole fleet,
// synchronous_commit off (like the SQLite store's synchronous=NORMAL, a
// crash may lose the last commits, never consistency). As root it runs
// as the postgres user.
func startCheckPostgres(ctx context.Context, dir string) (*checkPostgres, error) {
	c, err := pgtest.Start(ctx, pgtest.Options{Dir: dir, Env: childEnviron(),
		Settings: []string{"shared_buffers=1GB", "synchronous_commit=off"}})
	if errors.Is(err, pgtest.ErrMissing) {
		return nil, fmt.Errorf("check --databases postgres: %w", err)
	}
	if err != nil {
		return nil, err
	}
	return &checkPostgres{Cluster: c, dsn: c.DSN, version: c.Version}, nil
}

// cpu is the CPU time of the postmaster and all its children.
func (p *checkPostgres) cpu() (time.Duration, error) {
	pid, err := p.PostmasterPID()
	if err != nil {
		return 0, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		if e.Name() != strconv.Itoa(pid) && ppid != pid {
			continue
		}
		if d, ok := schedRuntime(e.Name()); ok {
			total += d
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+st) * time.Second / clockTicks
	}
	return total, nil
}

// copyToPostgres copies the benchmark's rows from the SQLite store in
// data to the PostgreSQL database at dsn, whose schema db.Open made: the
// same releases, rollouts, devices and credentials, with COPY.
func copyToPostgres(ctx context.Context, data, dsn string) error {
	src, err := sql.Open("sqlite", "file:"+filepath.Join(data, "mxos.db")+"?mode=ro")
	if err != nil {
		return fmt.Errorf("postgres copy: %w", err)
	}
	defer src.Close()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("postgres copy: %w", err)
	}
	defer conn.Close(ctx)
	for _, table := range []string{"releases", "rollouts", "devices", "tokens", "pins", "device_identities"} {
		rows, err := conn.Query(ctx, `SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position`, table)
		if err != nil {
			return fmt.Errorf("postgres copy: columns of %s: %w", table, err)
		}
		cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("postgres copy: columns of %s: %w", table, err)
		}
		srows, err := src.QueryContext(ctx, "SELECT "+strings.Join(cols, ", ")+" FROM "+table)
		if err != nil {
			return fmt.Errorf("postgres copy: reading %s: %w", table, err)
		}
		n, err := conn.CopyFrom(ctx, pgx.Identifier{table}, cols, &sqlRowsSource{rows: srows, n: len(cols)})
		srows.Close()
		if err != nil {
			return fmt.Errorf("postgres copy: %s: %w", table, err)
		}
		_ = n
	}
	if _, err := conn.Exec(ctx, "VACUUM ANALYZE"); err != nil {
		return fmt.Errorf("postgres copy: analyze: %w", err)
	}
	return nil
}

// sqlRowsSource feeds database/sql rows to pgx's COPY.
type sqlRowsSource struct {
	rows *sql.Rows
	n    int
	vals []any
	err  error
}

func (s *sqlRowsSource) Next() bool {
	if !s.rows.Next() {
		s.err = s.rows.Err()
		return false
	}
	vals := make([]any, s.n)
	ptrs := make([]any, s.n)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := s.rows.Scan(ptrs...); err != nil {
		s.err = err
		return false
	}
	s.vals = vals
	return true
}

func (s *sqlRowsSource) Values() ([]any, error) { return s.vals, nil }
func (s *sqlRowsSource) Err() error             { return s.err }

// procMemory is a process's resident memory from /proc/PID/status.
type procMemory struct {
	RSS, Anon, File int64 // bytes
}

func readProcMemory(pid int) (procMemory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procMemory{}, fmt.Errorf("reading memory of %d: %w", pid, err)
	}
	defer f.Close()
	var m procMemory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		kb, _ := strconv.ParseInt(fs[0], 10, 64)
		switch k {
		case "VmRSS":
			m.RSS = kb << 10
		case "RssAnon":
			m.Anon = kb << 10
		case "RssFile":
			m.File = kb << 10
		}
	}
	return m, sc.Err()
}

// waitIndexed waits until our server reports its device index loaded
// (mxos_device_index_ready 1 on /metrics), so that the load measures
// checks of a running server, not its start; a server without that
// metric is not waited for.
func waitIndexed(ctx context.Context, s *httpServer, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 5 * time.Second}
	for {
		if err := s.d.exited(); err != nil {
			return 0, err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/metrics", nil)
		resp, err := c.Do(req)
		if err == nil {
			var buf bytes.Buffer
			_, _ = buf.ReadFrom(resp.Body)
			resp.Body.Close()
			body := buf.String()
			// Both in-memory indexes (devices, credentials) when the
			// server has them.
			devices := !strings.Contains(body, "mxos_device_index_ready") || strings.Contains(body, "\nmxos_device_index_ready 1")
			creds := !strings.Contains(body, "mxos_credential_index_ready") || strings.Contains(body, "\nmxos_credential_index_ready 1")
			if devices && creds {
				return time.Since(start), nil
			}
		}
		if time.Since(start) > limit {
			return 0, fmt.Errorf("%s: device index not loaded after %s", s.name, limit)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
