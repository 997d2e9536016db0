package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/mxos-linux/mxos-update/internal/api"
	apiclient "github.com/mxos-linux/mxos-update/internal/client"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/storage/s3store"
	"github.com/mxos-linux/mxos-update/internal/storage/storagetest"
)

// The fleet benchmark (issue 14) loads several mxos-server replicas the
// way a national fleet does, through a real load balancer, and breaks one
// on purpose:
//
//   - --replicas (3) real mxos-server processes on one PostgreSQL cluster
//     (startCheckPostgres, the store of the check benchmark copied in) and
//     one S3 bucket (versitygw, posix backend, as the tests start it),
//     behind Debian's nginx configured as deploy/compose/nginx.conf:
//     checks, reports and /repo/ to every replica, everything else to the
//     first server (the writer, the one with signed channel metadata);
//     proxy_next_upstream retries a request that met a dead replica on
//     another one, and nginx's access log says which requests it retried.
//   - The fleet: --devices registered devices (each with its own bound
//     credential) on stable, all running 10.0.2, which the benchmark
//     publishes and promotes with mxosctl before the load and rolls out
//     completely (the seeded store has devices but no releases, since
//     mxosctl reads the channel's newest commit): nothing is offered
//     until the benchmark publishes again.
//   - Phase 1, capacity: a closed loop of --concurrency clients checking
//     through the load balancer for --duration (the machine's capacity:
//     the rate at which it is never idle).
//   - Phase 2, the fleet's own cadence: Poisson arrivals at --devices /
//     --check-every (1,000,000 checking hourly is 278 checks/s) for
//     twice --duration and at least until the events are over. Meanwhile:
//     a publish (mxosctl publish to testing and mxosctl promote to stable,
//     through the load balancer, signed channel metadata on), after which
//     1% of the fleet is offered the release and each of those devices
//     reports download-started, download-finished, deployed and health-ok
//     as mxos-updater does (its client, internal/client, with its own
//     report sequence numbers); then a halt of that rollout through the
//     API, after which each replica is asked directly (not through the
//     load balancer) every 10 ms until it stops offering the release;
//     then kill -9 of the last replica.
//   - Afterwards: every report answered 204 (or "already recorded", which
//     the updater also takes as delivered) is in the database, the
//     release was recorded once per channel, and the fleet did not grow.
//
// Latency is measured from each request's scheduled arrival (open loop)
// or from sending it (closed loop) to the whole answer, through nginx.
// A client-visible error is any check or report that failed; errors
// that end within fleetKillWindow of the kill are counted apart from the
// rest. PostgreSQL's load is the CPU time of all its processes and the
// transactions of pg_stat_database, per phase.

var partFleet = part{name: "fleet", needs: []string{"nginx"}, run: runFleet}

const (
	// fleetNew is the release published in the middle of the run.
	fleetNew = "10.0.3"
	// fleetP99Limit is the p99 target at capacity, in milliseconds.
	fleetP99Limit = 50
	// fleetHaltLimit is the target for a halt to reach every replica.
	fleetHaltLimit = 2 * time.Second
	// fleetKillWindow is how long after the kill a failed request counts
	// as the kill's: nginx's fail_timeout, after which it knows the
	// replica is down.
	fleetKillWindow = 5 * time.Second
	// fleetPoll is how often a replica is asked during the halt.
	fleetPoll = 10 * time.Millisecond
)

// fleetDefaults are the full run's sizes; fleetQuickDefaults --quick's.
var (
	fleetDefaults      = map[string]string{"devices": "1000000", "duration": "30s", "warmup": "2s"}
	fleetQuickDefaults = map[string]string{"duration": "3s", "check-every": "10s"}
)

// newFleetCmd is the fleet subcommand.
func newFleetCmd(o *options, argv []string) *cobra.Command {
	return &cobra.Command{
		Use:   "fleet",
		Short: "replicas behind nginx on one PostgreSQL and one bucket: checks/s, p50/p99, errors, halt visibility, kill -9",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			defs := fleetDefaults
			if o.quick {
				defs = fleetQuickDefaults
			}
			for name, val := range defs {
				if f := cmd.Flags().Lookup(name); f != nil && !f.Changed {
					if err := f.Value.Set(val); err != nil {
						return fmt.Errorf("setting --%s: %w", name, err)
					}
				}
			}
			switch {
			case o.checkEvery <= 0:
				return errors.New("fleet: --check-every must be at least 1s (the fleet's cadence)")
			case o.devices < 500:
				return errors.New("fleet: --devices must be at least 500 (1% of them are offered the release)")
			}
			return runBench(cmd, *o, commandLine(argv), []part{partFleet})
		},
	}
}

// fleetSetup is everything running for the fleet benchmark.
type fleetSetup struct {
	pg      *checkPostgres
	servers []*httpServer // servers[0] is the writer
	lb      *httpServer
	lbDir   string
	release string // a release token
	relKeys string
	ctl     string // mxosctl
	work    string // scratch directory
	spec    checkSpec
	setup   checkSetup
	ids     []string
}

func runFleet(ctx context.Context, b *bench) error {
	f, err := b.startFleet(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err := f.pg.stop(); err != nil {
			logf(b.stderr, "fleet: stopping PostgreSQL: %v", err)
		}
	}()
	conn, err := pgx.Connect(ctx, f.pg.dsn)
	if err != nil {
		return fmt.Errorf("fleet: connecting to PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())

	n := f.spec.Devices
	version, commit := f.spec.deviceRelease(f.setup)
	shared := &fleetShared{ids: f.ids, seed: f.spec.Seed, version: version, commit: commit,
		seqs: make([]atomic.Int64, n), installing: make([]atomic.Bool, n),
		walk: newDeviceWalk(n, b.o.seed^uint64(time.Now().UnixNano()))}

	// Phase 1: capacity, closed loop.
	capLoad := newFleetLoad(shared, f.lb.base, b.o.concurrency)
	if b.o.warmup > 0 {
		warm := newFleetLoad(shared, f.lb.base, b.o.concurrency)
		warm.runClosed(ctx, b.o.concurrency, b.o.warmup)
		if err := warm.firstError(); err != nil {
			return fmt.Errorf("fleet: warm-up: %w", err)
		}
	}
	pg0, err := pgSnapshot(ctx, conn, f.pg)
	if err != nil {
		return err
	}
	srv0 := f.serverCPU()
	capElapsed := capLoad.runClosed(ctx, b.o.concurrency, b.o.duration)
	pg1, err := pgSnapshot(ctx, conn, f.pg)
	if err != nil {
		return err
	}
	srv1 := f.serverCPU()
	capRate := float64(capLoad.checks) / capElapsed.Seconds()
	logf(b.stderr, "fleet: capacity (closed loop, c=%d): %s checks/s, p50 %.2f ms, p99 %.2f ms, max %.1f ms, %d errors; PostgreSQL %.2f cores, %s xact/s",
		b.o.concurrency, formatValue(capRate), ms(capLoad.hist.quantile(0.5)), ms(capLoad.hist.quantile(0.99)), ms(capLoad.hist.quantile(1)),
		len(capLoad.errs), pg1.sub(pg0).cores(), formatValue(pg1.sub(pg0).xactRate()))
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}

	// Phase 2: the fleet's cadence, with the publish, the halt and the kill.
	rate := float64(n) / b.o.checkEvery.Seconds()
	phase := 2 * b.o.duration
	cad := newFleetLoad(shared, f.lb.base, checkOpenConns)
	cad.spread = phase / 4
	stop := make(chan struct{})
	loadDone := make(chan time.Duration, 1)
	start := time.Now()
	go func() { loadDone <- cad.runOpen(ctx, stop, rate, b.o.seed^0x666c) }()
	ev, evErr := b.fleetEvents(ctx, f, cad, start, phase)
	close(stop)
	cadElapsed := <-loadDone
	waited := make(chan struct{})
	go func() { cad.installs.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(2 * time.Minute):
		evErr = errors.Join(evErr, errors.New("fleet: reports still unanswered 2 minutes after the phase"))
	}
	if evErr != nil {
		return fmt.Errorf("%w%s", evErr, f.logTails())
	}
	pg2, err := pgSnapshot(ctx, conn, f.pg)
	if err != nil {
		return err
	}
	srv2 := f.serverCPU()
	// The killed replica's CPU counts until the kill.
	srv2 += ev.killedCPU
	cadRate := float64(cad.checks) / cadElapsed.Seconds()
	logf(b.stderr, "fleet: cadence (open loop at %s/s): %s answered/s, p50 %.2f ms, p99 %.2f ms, max %.1f ms; %d offers, %d reports; %d errors",
		formatValue(rate), formatValue(cadRate), ms(cad.hist.quantile(0.5)), ms(cad.hist.quantile(0.99)), ms(cad.hist.quantile(1)),
		cad.offers, len(cad.accepted)+len(cad.replayed), len(cad.errs))

	// The load balancer's log: stop nginx so that it is complete.
	cad.hc.CloseIdleConnections()
	capLoad.hc.CloseIdleConnections()
	probeHTTP.CloseIdleConnections()
	if err := f.lb.d.stop(syscall.SIGQUIT, 20*time.Second); err != nil {
		return err
	}
	lbLog, err := readFleetAccessLog(filepath.Join(f.lbDir, "access.log"))
	if err != nil {
		return err
	}

	// Nothing lost.
	lost, stored, err := fleetLostReports(ctx, conn, f.ids, cad)
	if err != nil {
		return err
	}
	recorded, err := fleetReleaseCount(ctx, conn)
	if err != nil {
		return err
	}
	devices, err := countDevices(ctx, "", f.pg.dsn)
	if err != nil {
		return err
	}

	// Errors inside and outside the kill window.
	var inKill, outside int
	for _, e := range cad.errs {
		if !e.at.Before(ev.killAt) && e.at.Before(ev.killAt.Add(fleetKillWindow)) {
			inKill++
		} else {
			outside++
		}
	}
	outside += len(capLoad.errs)

	capPG, cadPG := pg1.sub(pg0), pg2.sub(pg1)
	desc := fmt.Sprintf("%d devices, %d replicas", n, len(f.servers))
	r := formatValue(rate)
	b.report.Rows = append(b.report.Rows,
		fleetRow(fmt.Sprintf("fleet checks/s at capacity (%s behind nginx, closed loop c=%d)", desc, b.o.concurrency), "checks/s", Higher, 0, capRate),
		fleetRow("fleet p99 latency at capacity", "ms", Lower, fleetP99Limit, ms(capLoad.hist.quantile(0.99))),
		fleetRow("fleet p50 latency at capacity", "ms", Lower, 0, ms(capLoad.hist.quantile(0.5))),
		fleetRow(fmt.Sprintf("fleet p99 latency at the fleet's rate (%s/s, open loop; publish, halt, kill -9)", r), "ms", Lower, 0, ms(cad.hist.quantile(0.99))),
		fleetRow(fmt.Sprintf("fleet p50 latency at the fleet's rate (%s/s)", r), "ms", Lower, 0, ms(cad.hist.quantile(0.5))),
		fleetRow(fmt.Sprintf("fleet checks answered/s at the fleet's rate (%s/s)", r), "checks/s", Higher, 0, cadRate),
		fleetRow("fleet reports accepted", "reports", Higher, 0, float64(len(cad.accepted)+len(cad.replayed))),
		fleetRow("fleet client-visible errors outside the kill window", "errors", Lower, 1, float64(outside)),
		fleetRow(fmt.Sprintf("fleet client-visible errors within %s of the kill -9", fleetKillWindow), "errors", Lower, 1, float64(inKill)),
		fleetRow("fleet requests nginx retried on another replica", "requests", Lower, 0, float64(lbLog.retried)),
		fleetRow("fleet halt visible on every replica (slowest replica)", "ms", Lower, float64(fleetHaltLimit.Milliseconds()), ms(ev.haltMax)),
		fleetRow("fleet publish visible on every replica (slowest replica)", "ms", Lower, 0, ms(ev.publishMax)),
		fleetRow("fleet reports lost", "reports", Lower, 1, float64(lost)),
		fleetRow("fleet PostgreSQL CPU at capacity", "cores", Lower, 0, capPG.cores()),
		fleetRow("fleet PostgreSQL transactions/s at capacity", "xact/s", Lower, 0, capPG.xactRate()),
		fleetRow(fmt.Sprintf("fleet PostgreSQL CPU at the fleet's rate (%s/s)", r), "cores", Lower, 0, cadPG.cores()),
		fleetRow(fmt.Sprintf("fleet PostgreSQL transactions/s at the fleet's rate (%s/s)", r), "xact/s", Lower, 0, cadPG.xactRate()),
	)

	perReplica := func(ds []time.Duration) string {
		parts := make([]string, len(ds))
		for i, d := range ds {
			parts[i] = fmt.Sprintf("%d: %.0f ms", i, ms(d))
		}
		return strings.Join(parts, ", ")
	}
	errNote := "none"
	if len(cad.errs)+len(capLoad.errs) > 0 {
		errNote = strings.Join(append(capLoad.errMsgs, cad.errMsgs...), "; ")
	}
	b.report.Notes = append(b.report.Notes,
		fmt.Sprintf("fleet: %d mxos-server processes (%s, the binary users run) on %s on 127.0.0.1 (shared_buffers=1GB, synchronous_commit=off) and one bucket of versitygw %s (posix backend), "+
			"behind nginx as deploy/compose/nginx.conf routes (checks, reports and /repo/ to every replica, the rest to server 0, the writer, which alone holds the signed channel metadata; "+
			"proxy_next_upstream error timeout http_502 http_503 non_idempotent; max_fails=2 fail_timeout=5s), plain HTTP on loopback. "+
			"%d registered devices on %s/%s, each with its own bound credential, all running %s, nothing rolling out.",
			len(f.servers), f.servers[0].name, f.pg.version, storagetest.VersityGWVersion, n, checkChannel, checkArch, version),
		fmt.Sprintf("fleet: capacity: %d checks in %.1f s from %d clients (closed loop), through nginx; answers %s. The servers' CPU: %.0f µs per check (all replicas), PostgreSQL %.0f µs per check.",
			capLoad.checks, capElapsed.Seconds(), b.o.concurrency, formatReasons(capLoad.reasons),
			float64((srv1-srv0).Microseconds())/float64(max(1, capLoad.checks)), float64(capPG.cpu.Microseconds())/float64(max(1, capLoad.checks))),
		fmt.Sprintf("fleet: the fleet's rate: Poisson arrivals at %s checks/s (%d devices each checking every %s), each latency from the scheduled arrival, up to %d connections to nginx; "+
			"%d checks answered in %.1f s (%s); the servers' CPU %.0f µs per check, PostgreSQL %.0f µs per check and report.",
			r, n, b.o.checkEvery, checkOpenConns, cad.checks, cadElapsed.Seconds(), formatReasons(cad.reasons),
			float64((srv2-srv1).Microseconds())/float64(max(1, cad.checks)), float64(cadPG.cpu.Microseconds())/float64(max(1, cad.checks+int64(len(cad.accepted))))),
		fmt.Sprintf("fleet: publish at %.1f s: mxosctl publish (testing) took %.2f s and mxosctl promote (stable) %.2f s through nginx, signed channel metadata on; "+
			"%s then offered to device %s by the writer, and by each replica, asked directly, after (from promote's exit) %s. "+
			"%d checks of the load were offered it; %d devices (the one asked directly too) installed it and sent %d reports (download-started, download-finished, deployed, health-ok, with the updater's sequence numbers, each after a wait of up to %s), "+
			"%d answered 204, %d \"already recorded\" (a retry of one that was stored).",
			ev.publishAt.Sub(start).Seconds(), ev.publishTook.Seconds(), ev.promoteTook.Seconds(), fleetNew, ev.probeDevice, perReplica(ev.publishSeen),
			cad.offers, cad.started.Load(), len(cad.accepted)+len(cad.replayed), cad.spread, len(cad.accepted), len(cad.replayed)),
		fmt.Sprintf("fleet: halt at %.1f s (POST /api/v1/rollouts/%s/halt through nginx, answered in %.0f ms); from its answer until each replica, asked directly every %s, stopped offering %s: %s.",
			ev.haltAt.Sub(start).Seconds(), ev.rolloutID, ms(ev.haltTook), fleetPoll, fleetNew, perReplica(ev.haltSeen)),
		fmt.Sprintf("fleet: kill -9 of replica %d at %.1f s; the phase went on to %.1f s. nginx: %d requests, %d retried on another replica (%d answered 5xx to the client). "+
			"Client-visible errors: %d outside the %s after the kill, %d within it (%s).",
			len(f.servers)-1, ev.killAt.Sub(start).Seconds(), cadElapsed.Seconds(), lbLog.requests, lbLog.retried, lbLog.status5xx, outside, fleetKillWindow, inKill, errNote),
		fmt.Sprintf("fleet: afterwards %d of the %d reports the clients saw accepted are in the database (%d lost; %d report rows of the run's devices); releases of %s recorded: testing %d, stable %d (want 1 each); the store holds %d devices (want %d).",
			len(cad.accepted)+len(cad.replayed)-lost, len(cad.accepted)+len(cad.replayed), lost, stored, fleetNew, recorded["testing"], recorded["stable"], devices, n),
	)
	switch {
	case recorded["testing"] != 1 || recorded["stable"] != 1:
		return fmt.Errorf("fleet: %s recorded %d times on testing and %d on stable, want once each", fleetNew, recorded["testing"], recorded["stable"])
	case devices != n:
		return fmt.Errorf("fleet: the store holds %d devices after the load, want %d", devices, n)
	}
	return nil
}

// fleetRow is a figure of ours alone: with a limit (> 0) it has a target
// (< limit for Lower, >= for Higher), else it is information.
func fleetRow(name, unit string, better Direction, limit, v float64) Row {
	if limit > 0 {
		return newAbsoluteRow("fleet", name, unit, "(none)", better, limit, []float64{v}, []float64{0})
	}
	r := newRow("fleet", name, unit, "(none)", better, 0, []float64{v}, []float64{0})
	r.Absolute = true
	return r
}

// startFleet seeds (or reuses) the store, and starts PostgreSQL with it,
// the S3 server, the replicas and nginx.
func (b *bench) startFleet(ctx context.Context) (_ *fleetSetup, err error) {
	serverBin, err := b.ourBinary(ctx, "mxos-server", b.o.mxosServer)
	if err != nil {
		return nil, err
	}
	ctl, err := b.ourBinary(ctx, "mxosctl", b.o.mxosctl)
	if err != nil {
		return nil, err
	}
	gw := storagetest.FindVersityGW()
	if gw == "" {
		return nil, fmt.Errorf("versitygw not found in PATH or GOPATH/bin: install with `go install github.com/versity/versitygw/cmd/versitygw@%s`", storagetest.VersityGWVersion)
	}
	chDir, err := b.channelsDir()
	if err != nil {
		return nil, err
	}
	chFiles, chHash, err := readChannelFiles(chDir)
	if err != nil {
		return nil, err
	}
	spec := checkSpec{Devices: b.o.devices, Seed: b.o.seed, Channels: chHash, Settled: true}
	data := filepath.Join(b.work, "gen", spec.key())
	if err := os.MkdirAll(filepath.Dir(data), 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", filepath.Dir(data), err)
	}
	logf(b.stderr, "fleet: store with %d devices, channels from %s", spec.Devices, chDir)
	_, reused, err := cached(data, func(tmp string) (treeStats, error) {
		return treeStats{Files: spec.Devices}, seedCheckData(ctx, b.stderr, tmp, chFiles, spec)
	})
	if err != nil {
		return nil, err
	}
	setup, err := loadCheckSetup(data)
	if err != nil {
		return nil, err
	}
	if setup.Devices != spec.Devices {
		return nil, fmt.Errorf("fleet: %s holds %d devices, want %d", data, setup.Devices, spec.Devices)
	}
	logf(b.stderr, "fleet: store %s (%s)", data, reusedWord(reused))
	ref, err := checkRef(filepath.Join(data, checkChanDir))
	if err != nil {
		return nil, err
	}
	if err := checkMetadata(data, ref, setup); err != nil {
		return nil, err
	}
	work, err := b.scratchDir("fleet")
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(work, 0o755); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	f := &fleetSetup{ctl: ctl, work: work, spec: spec, setup: setup, ids: checkDeviceIDs(spec.Seed, spec.Devices)}
	f.relKeys = filepath.Join(data, "bench-keys", "release")
	onKeys := filepath.Join(data, "bench-keys", "online")

	logf(b.stderr, "fleet: starting PostgreSQL and copying the store into it")
	// A cluster in a temporary directory of its own (removed when it
	// stops): as root it runs as user postgres, which may not traverse
	// the work directory's parents.
	if f.pg, err = startCheckPostgres(ctx, ""); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = f.pg.stop()
		}
	}()
	store, err := db.Open(ctx, f.pg.dsn, "")
	if err != nil {
		return nil, fmt.Errorf("creating the PostgreSQL schema: %w", err)
	}
	if err := store.Close(); err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := copyToPostgres(ctx, data, f.pg.dsn); err != nil {
		return nil, err
	}
	logf(b.stderr, "fleet: copied %d devices to %s in %.1f s", spec.Devices, f.pg.version, time.Since(t0).Seconds())

	storage, err := b.startFleetS3(ctx, gw, work)
	if err != nil {
		return nil, err
	}

	// The writer: signed channel metadata on (a copy of the store's).
	for i := range b.o.replicas {
		dir := filepath.Join(work, "server-"+strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("fleet: %w", err)
		}
		if i == 0 {
			if _, err := runTimed(ctx, time.Minute, nil, "cp", "-a", filepath.Join(data, "metadata"), filepath.Join(dir, "metadata")); err != nil {
				return nil, fmt.Errorf("fleet: copying the signed metadata: %w", err)
			}
		}
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		listen := "127.0.0.1:" + strconv.Itoa(port)
		cmd := exec.Command(serverBin, "--data", dir, "--database", f.pg.dsn, "--storage", storage,
			"--channels", filepath.Join(data, checkChanDir), "--listen", listen, "--log-level", "warn",
			"--release-keys", f.relKeys, "--online-keys", onKeys)
		cmd.Dir = dir
		cmd.Env = childEnviron()
		d, err := b.procs.start(fmt.Sprintf("mxos-server %d", i), cmd)
		if err != nil {
			return nil, err
		}
		s := &httpServer{name: filepath.Base(serverBin), base: "http://" + listen, d: d, ready: "http://" + listen + "/healthz"}
		if err := waitReady(ctx, s); err != nil {
			return nil, err
		}
		f.servers = append(f.servers, s)
		if i == 0 {
			out, err := runTimed(ctx, time.Minute, childEnviron(), serverBin, "token", "create", "--data", dir, "--database", f.pg.dsn,
				"--role", "release", "--name", "mxos-bench-fleet")
			if err != nil {
				return nil, fmt.Errorf("fleet: creating a release token: %w", err)
			}
			f.release = strings.TrimSpace(strings.SplitN(out.out, "\n", 2)[0])
		}
	}
	for i, s := range f.servers {
		took, err := waitIndexed(ctx, s, 10*time.Minute)
		if err != nil {
			return nil, err
		}
		logf(b.stderr, "fleet: server %d ready with its device index after %.1f s", i, took.Seconds())
	}
	if err := b.startFleetLB(ctx, f); err != nil {
		return nil, err
	}
	// The release the fleet runs, published and rolled out completely
	// before the load: the store has devices but no releases.
	logf(b.stderr, "fleet: publishing %s, which the fleet runs", checkNew)
	if _, _, err := b.fleetPublish(ctx, f, checkNew); err != nil {
		return nil, err
	}
	for _, ch := range []string{"testing", checkChannel} {
		if _, err := runTimed(ctx, b.o.timeout, childEnviron("MXOS_SERVER="+f.lb.base, "MXOS_TOKEN="+f.release), f.ctl,
			"rollout", "complete", "--channel", ch, "--arch", checkArch); err != nil {
			return nil, fmt.Errorf("fleet: %w", err)
		}
	}
	// One check through the load balancer before any load.
	sh := &fleetShared{ids: f.ids, seed: spec.Seed}
	sh.version, sh.commit = spec.deviceRelease(setup)
	if _, err := sh.probe(ctx, f.lb.base, 0); err != nil {
		return nil, fmt.Errorf("fleet: a check through nginx: %w", err)
	}
	return f, nil
}

// startFleetS3 starts versitygw on a directory of work, creates a bucket
// and writes the --storage file (README "Storage") naming it.
func (b *bench) startFleetS3(ctx context.Context, bin, work string) (string, error) {
	secret := make([]byte, 20)
	if _, err := rand.Read(secret); err != nil {
		return "", err
	}
	s3 := &storagetest.S3Server{AccessKey: "mxosbench", SecretKey: hex.EncodeToString(secret), Dir: filepath.Join(work, "s3")}
	if err := os.MkdirAll(s3.Dir, 0o755); err != nil {
		return "", fmt.Errorf("fleet: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	d, err := b.procs.start("versitygw", s3.Command(bin, addr))
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := d.exited(); err != nil {
			return "", err
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("versitygw not listening on %s after 30 s: %s", addr, d.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	s3.Endpoint = "http://" + addr
	cfg := s3store.Config{Endpoint: s3.Endpoint, Bucket: "mxos-fleet", AccessKey: s3.AccessKey, SecretKey: s3.SecretKey}
	if err := s3store.CreateBucket(ctx, cfg); err != nil {
		return "", fmt.Errorf("fleet: creating the bucket: %w", err)
	}
	dir := filepath.Join(work, "s3-config")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("fleet: %w", err)
	}
	write := func(name, content string) (string, error) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			return "", fmt.Errorf("fleet: %w", err)
		}
		return p, nil
	}
	ak, err := write("access-key", s3.AccessKey+"\n")
	if err != nil {
		return "", err
	}
	sk, err := write("secret-key", s3.SecretKey+"\n")
	if err != nil {
		return "", err
	}
	return write("storage.yaml", "storage:\n  kind: s3\n  endpoint: "+s3.Endpoint+"\n  bucket: "+cfg.Bucket+
		"\n  access_key_file: "+ak+"\n  secret_key_file: "+sk+"\n")
}

// fleetNginxConf is the load balancer: deploy/compose/nginx.conf's
// upstreams, proxy settings and routes, on plain HTTP on loopback, with
// an access log that names every upstream a request was sent to.
const fleetNginxConf = "# generated by mxos-bench fleet (routes as deploy/compose/nginx.conf)\n" + nginxMain + `http {
    log_format fleet '$msec $status "$upstream_addr" "$upstream_status" $request_uri';
    access_log %[2]s/access.log fleet buffer=256k flush=1s;
` + nginxTemps + `    upstream mxos_devices {
%[4]s        keepalive 64;
    }
    upstream mxos_writer {
        server %[5]s;
        keepalive 16;
    }
    server {
        listen 127.0.0.1:%[3]d;
        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_read_timeout 600s;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        # A replica killed mid-request: the device's GET or check is retried
        # on another one (checks and reports are idempotent for the server).
        proxy_next_upstream error timeout http_502 http_503 non_idempotent;

        location = /api/v1/check  { proxy_pass http://mxos_devices; }
        location = /api/v1/report { proxy_pass http://mxos_devices; }
        location /repo/           { proxy_pass http://mxos_devices; }
        location /                { proxy_pass http://mxos_writer; }
    }
}
`

// startFleetLB starts nginx in front of f's servers.
func (b *bench) startFleetLB(ctx context.Context, f *fleetSetup) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	dir := filepath.Join(f.work, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("nginx directory: %w", err)
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	var upstreams strings.Builder
	for _, s := range f.servers {
		fmt.Fprintf(&upstreams, "        server %s max_fails=2 fail_timeout=%ds;\n", strings.TrimPrefix(s.base, "http://"), int(fleetKillWindow.Seconds()))
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, fleetNginxConf, user, dir, port, upstreams.String(), strings.TrimPrefix(f.servers[0].base, "http://")), 0o644); err != nil {
		return fmt.Errorf("writing nginx config: %w", err)
	}
	cmd := exec.Command(b.o.nginx, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	cmd.Env = childEnviron()
	d, err := b.procs.start("nginx", cmd)
	if err != nil {
		return err
	}
	f.lb = &httpServer{name: "nginx", base: fmt.Sprintf("http://127.0.0.1:%d", port), d: d, ready: fmt.Sprintf("http://127.0.0.1:%d/healthz", port)}
	f.lbDir = dir
	if err := waitReady(ctx, f.lb); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return fmt.Errorf("%w; error.log: %s", err, strings.TrimSpace(string(log)))
	}
	return nil
}

// logTails is the end of every server's and nginx's log, for an error.
func (f *fleetSetup) logTails() string {
	var b strings.Builder
	for i, s := range f.servers {
		if t := s.d.stderr.String(); t != "" {
			fmt.Fprintf(&b, "\nserver %d log:\n%s", i, t)
		}
	}
	if log, err := os.ReadFile(filepath.Join(f.lbDir, "error.log")); err == nil && len(log) > 0 {
		fmt.Fprintf(&b, "\nnginx error.log:\n%s", strings.TrimSpace(string(log)))
	}
	return b.String()
}

// serverCPU is the CPU time of every live server.
func (f *fleetSetup) serverCPU() time.Duration {
	var total time.Duration
	for _, s := range f.servers {
		if s.d.exited() != nil {
			continue
		}
		c, err := groupCPU(s.d.cmd.Process.Pid)
		if err == nil {
			total += c
		}
	}
	return total
}

// fleetEvents is what happened in the middle of the cadence phase.
type fleetEvents struct {
	publishAt, haltAt, killAt time.Time
	publishTook, promoteTook  time.Duration
	haltTook                  time.Duration
	probeDevice, rolloutID    string
	publishSeen, haltSeen     []time.Duration // per replica
	publishMax, haltMax       time.Duration
	killedCPU                 time.Duration
}

// fleetEvents publishes and promotes a release, halts its rollout and
// measures how long each replica takes to stop offering it, kills the
// last replica, and returns once the phase has run long enough.
func (b *bench) fleetEvents(ctx context.Context, f *fleetSetup, load *fleetLoad, start time.Time, phase time.Duration) (*fleetEvents, error) {
	sh := load.fleetShared
	ev := &fleetEvents{}
	sleepUntil := func(t time.Time) error {
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted: %w", ctx.Err())
		case <-time.After(time.Until(t)):
			return nil
		}
	}
	if err := sleepUntil(start.Add(phase / 5)); err != nil {
		return nil, err
	}

	// The publish: a tree built and signed here, uploaded through nginx.
	ev.publishAt = time.Now()
	logf(b.stderr, "fleet: publishing %s at %.1f s", fleetNew, time.Since(start).Seconds())
	var err error
	if ev.publishTook, ev.promoteTook, err = b.fleetPublish(ctx, f, fleetNew); err != nil {
		return nil, err
	}
	promoted := time.Now()

	// A device the new rollout admits, found on the writer (which made
	// the change, so it knows at once).
	probe := -1
	for i := range min(len(sh.ids), 20000) {
		resp, err := sh.probe(ctx, f.servers[0].base, i)
		if err != nil {
			return nil, fmt.Errorf("fleet: looking for a device offered %s: %w", fleetNew, err)
		}
		if offered(resp) {
			probe, ev.rolloutID = i, resp.Target.RolloutID
			// It installs, as any device offered the release.
			c, err := sh.client(f.lb.base, i, load.hc)
			if err != nil {
				return nil, err
			}
			load.startInstall(ctx, c, i, *resp.Target)
			break
		}
	}
	if probe < 0 {
		return nil, fmt.Errorf("fleet: no device was offered %s after the promotion", fleetNew)
	}
	ev.probeDevice = sh.ids[probe]
	// Every replica offers it (the change feed) before the halt.
	ev.publishSeen, ev.publishMax, err = sh.until(ctx, f.servers, probe, promoted, true, 30*time.Second)
	if err != nil {
		return nil, err
	}
	logf(b.stderr, "fleet: %s offered to %s by every replica %.0f ms after the promotion", fleetNew, ev.probeDevice, ms(ev.publishMax))

	// The halt, through nginx, by the API the console and mxosctl use,
	// once the release has been offered for a while (devices install it
	// and report meanwhile).
	if err := sleepUntil(start.Add(phase * 2 / 5)); err != nil {
		return nil, err
	}
	admin, err := apiclient.New(f.lb.base, f.release)
	if err != nil {
		return nil, err
	}
	ev.haltAt = time.Now()
	if _, err := admin.RolloutAction(ctx, ev.rolloutID, apiclient.ActionHalt, "mxos-bench fleet: halted in the middle of the run"); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	halted := time.Now()
	ev.haltTook = halted.Sub(ev.haltAt)
	ev.haltSeen, ev.haltMax, err = sh.until(ctx, f.servers, probe, halted, false, 30*time.Second)
	if err != nil {
		return nil, err
	}
	logf(b.stderr, "fleet: halt visible on every replica after %.0f ms", ms(ev.haltMax))

	// kill -9 of the last replica.
	if err := sleepUntil(start.Add(phase * 3 / 5)); err != nil {
		return nil, err
	}
	victim := f.servers[len(f.servers)-1]
	if c, err := groupCPU(victim.d.cmd.Process.Pid); err == nil {
		ev.killedCPU = c
	}
	if err := victim.d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return nil, fmt.Errorf("fleet: kill -9: %w", err)
	}
	ev.killAt = time.Now()
	logf(b.stderr, "fleet: killed replica %d (kill -9) at %.1f s", len(f.servers)-1, time.Since(start).Seconds())
	end := start.Add(phase)
	if after := ev.killAt.Add(max(phase*3/10, fleetKillWindow+time.Second)); after.After(end) {
		end = after
	}
	return ev, sleepUntil(end)
}

// fleetPublish publishes version to testing and promotes it to the
// fleet's channel with mxosctl through nginx, as the README's release
// team does, and returns how long each took.
func (b *bench) fleetPublish(ctx context.Context, f *fleetSetup, version string) (publish, promote time.Duration, err error) {
	tree := filepath.Join(f.work, "tree-"+version)
	if err := os.MkdirAll(filepath.Join(tree, "usr", "lib"), 0o755); err != nil {
		return 0, 0, fmt.Errorf("fleet: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tree, "usr", "lib", "os-release"), []byte("NAME=MxOS\nVERSION_ID="+version+"\n"), 0o644); err != nil {
		return 0, 0, fmt.Errorf("fleet: %w", err)
	}
	env := childEnviron("MXOS_SERVER="+f.lb.base, "MXOS_TOKEN="+f.release)
	ctlWork := filepath.Join(f.work, "mxosctl-work")
	res, err := runTimed(ctx, b.o.timeout, env, f.ctl, "publish", "--channel", "testing", "--arch", checkArch, "--version", version,
		"--keys", f.relKeys, "--work", ctlWork, tree)
	if err != nil {
		return 0, 0, fmt.Errorf("fleet: %w", err)
	}
	publish = res.wall
	res, err = runTimed(ctx, b.o.timeout, env, f.ctl, "promote", "--from", "testing", "--to", checkChannel, "--arch", checkArch,
		"--version", version, "--keys", f.relKeys, "--work", ctlWork)
	if err != nil {
		return 0, 0, fmt.Errorf("fleet: %w", err)
	}
	return publish, res.wall, nil
}

// offered reports whether resp offers the release the benchmark published.
func offered(resp api.CheckResponse) bool {
	return resp.Update && resp.Target != nil && resp.Target.Version == fleetNew
}

// fleetShared is what every phase's load shares: the fleet, the walk,
// each device's report sequence number and whether it installs.
type fleetShared struct {
	ids             []string
	seed            uint64
	version, commit string
	walk            *deviceWalk
	seqs            []atomic.Int64
	installing      []atomic.Bool
}

func (sh *fleetShared) client(base string, i int, hc *http.Client) (*apiclient.Client, error) {
	opts := []apiclient.Option{}
	if hc != nil {
		opts = append(opts, apiclient.WithHTTPClient(hc))
	}
	return apiclient.New(base, checkDeviceToken(sh.seed, sh.ids[i]), opts...)
}

func (sh *fleetShared) request(i int) api.CheckRequest {
	return api.CheckRequest{DeviceID: sh.ids[i], Arch: checkArch, Channel: checkChannel, BootedCommit: sh.commit, Version: sh.version}
}

// probeHTTP is the probes' client: no keep-alive pool shared with the load.
var probeHTTP = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}, Timeout: 10 * time.Second}

// probe checks device i directly at base.
func (sh *fleetShared) probe(ctx context.Context, base string, i int) (api.CheckResponse, error) {
	c, err := sh.client(base, i, probeHTTP)
	if err != nil {
		return api.CheckResponse{}, err
	}
	return c.Check(ctx, sh.request(i))
}

// until asks every live server, each directly and every fleetPoll, for
// device i's check until it offers the release (want) or no longer does
// (!want), and returns how long after since each took, and the longest.
func (sh *fleetShared) until(ctx context.Context, servers []*httpServer, i int, since time.Time, want bool, limit time.Duration) ([]time.Duration, time.Duration, error) {
	seen := make([]time.Duration, len(servers))
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for k, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				resp, err := sh.probe(ctx, s.base, i)
				if err != nil {
					errs[k] = fmt.Errorf("fleet: asking replica %d: %w", k, err)
					return
				}
				if offered(resp) == want {
					seen[k] = time.Since(since)
					return
				}
				if time.Since(since) > limit {
					errs[k] = fmt.Errorf("fleet: replica %d still answers %+v %s later (want offered=%v)", k, resp, limit, want)
					return
				}
				time.Sleep(fleetPoll)
			}
		}()
	}
	wg.Wait()
	var longest time.Duration
	for _, d := range seen {
		longest = max(longest, d)
	}
	return seen, longest, errors.Join(errs...)
}

// fleetLoad is one phase's load through the load balancer and what it got.
type fleetLoad struct {
	*fleetShared
	base string
	hc   *http.Client
	// spread bounds the wait before each report of an install (uniform),
	// so that installs span the phase as a fleet's take minutes.
	spread time.Duration

	mu       sync.Mutex
	hist     *latencyHist
	checks   int64
	offers   int64
	reasons  map[string]int64
	errs     []fleetError
	errMsgs  []string // the first few
	accepted []fleetReport
	replayed []fleetReport
	started  atomic.Int64 // installs
	installs sync.WaitGroup
}

type fleetError struct{ at time.Time }

// fleetReport is a report the client saw accepted.
type fleetReport struct {
	dev int
	seq int64
}

func newFleetLoad(sh *fleetShared, base string, conns int) *fleetLoad {
	tr := newTransport(conns)
	return &fleetLoad{fleetShared: sh, base: base, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		hist: &latencyHist{}, reasons: map[string]int64{}}
}

func (l *fleetLoad) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, fleetError{at: time.Now()})
	if len(l.errMsgs) < 5 {
		l.errMsgs = append(l.errMsgs, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
	}
}

func (l *fleetLoad) firstError() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errMsgs) == 0 {
		return nil
	}
	return fmt.Errorf("%d requests failed, first: %s", len(l.errs), l.errMsgs[0])
}

// check sends device i's check, due at due, and starts its install when
// it is offered the release.
func (l *fleetLoad) check(ctx context.Context, i int, due time.Time) {
	c, err := l.client(l.base, i, l.hc)
	var resp api.CheckResponse
	if err == nil {
		resp, err = c.Check(ctx, l.request(i))
	}
	lat := time.Since(due)
	if ctx.Err() != nil {
		return // interrupted
	}
	if err != nil {
		l.fail(err)
		return
	}
	l.mu.Lock()
	l.checks++
	l.hist.record(lat)
	l.reasons[resp.Reason]++
	if offered(resp) {
		l.offers++
	}
	l.mu.Unlock()
	if offered(resp) {
		l.startInstall(ctx, c, i, *resp.Target)
	}
}

// startInstall starts device i's install of t unless it has one already.
func (l *fleetLoad) startInstall(ctx context.Context, c *apiclient.Client, i int, t api.Target) {
	if !l.installing[i].CompareAndSwap(false, true) {
		return
	}
	l.started.Add(1)
	l.installs.Add(1)
	go l.install(ctx, c, i, t)
}

// install reports what mxos-updater reports while installing t and after
// the reboot into it, in order, each with the device's next sequence
// number.
func (l *fleetLoad) install(ctx context.Context, c *apiclient.Client, i int, t api.Target) {
	defer l.installs.Done()
	for _, ev := range []api.Event{api.EventDownloadStarted, api.EventDownloadFinished, api.EventDeployed, api.EventHealthOK} {
		if l.spread > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(mrand.Int64N(int64(l.spread)))):
			}
		}
		seq := l.seqs[i].Add(1)
		err := c.Report(ctx, api.ReportRequest{DeviceID: l.ids[i], Seq: seq, RolloutID: t.RolloutID, Version: t.Version, Event: ev})
		switch {
		case err == nil:
			l.mu.Lock()
			l.accepted = append(l.accepted, fleetReport{i, seq})
			l.mu.Unlock()
		case errors.Is(err, &api.Error{Code: api.CodeReplay}):
			// A retry of a report the server had stored: delivered, as
			// the updater takes it.
			l.mu.Lock()
			l.replayed = append(l.replayed, fleetReport{i, seq})
			l.mu.Unlock()
		default:
			if ctx.Err() == nil {
				l.fail(err)
			}
			return
		}
	}
}

// runClosed checks from conc clients, each device the next of the walk,
// for dur; it returns the time until the last answer.
func (l *fleetLoad) runClosed(ctx context.Context, conc int, dur time.Duration) time.Duration {
	start := time.Now()
	deadline := start.Add(dur)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				l.check(ctx, l.walk.take(), time.Now())
			}
		}()
	}
	wg.Wait()
	l.hc.CloseIdleConnections()
	return time.Since(start)
}

// runOpen checks with Poisson arrivals at rate per second until stop is
// closed, each from its own goroutine, and returns the time from the first
// arrival until the last answer.
func (l *fleetLoad) runOpen(ctx context.Context, stop <-chan struct{}, rate float64, seed uint64) time.Duration {
	rng := mrand.New(mrand.NewPCG(seed, 0x666c656574))
	start := time.Now()
	var wg sync.WaitGroup
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return ctx.Err() != nil
		}
	}
	for at := time.Duration(0); !stopped(); at += time.Duration(rng.ExpFloat64() / rate * 1e9) {
		due := start.Add(at)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.check(ctx, l.walk.take(), due)
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// pgLoad is PostgreSQL's CPU time and transaction count at one moment.
type pgLoad struct {
	at    time.Time
	cpu   time.Duration
	xacts int64
}

func (p pgLoad) sub(o pgLoad) pgLoad {
	return pgLoad{at: time.Unix(0, int64(p.at.Sub(o.at))), cpu: p.cpu - o.cpu, xacts: p.xacts - o.xacts}
}

// elapsed of a difference (sub stores it in at).
func (p pgLoad) elapsed() time.Duration { return time.Duration(p.at.UnixNano()) }

func (p pgLoad) cores() float64 { return p.cpu.Seconds() / math.Max(1e-9, p.elapsed().Seconds()) }

func (p pgLoad) xactRate() float64 { return float64(p.xacts) / math.Max(1e-9, p.elapsed().Seconds()) }

func pgSnapshot(ctx context.Context, conn *pgx.Conn, pg *checkPostgres) (pgLoad, error) {
	var x int64
	if err := conn.QueryRow(ctx, `SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()`).Scan(&x); err != nil {
		return pgLoad{}, fmt.Errorf("fleet: reading pg_stat_database: %w", err)
	}
	cpu, err := pg.cpu()
	if err != nil {
		return pgLoad{}, fmt.Errorf("fleet: PostgreSQL CPU: %w", err)
	}
	return pgLoad{at: time.Now(), cpu: cpu, xacts: x}, nil
}

// fleetAccessLog is what nginx's access log says.
type fleetAccessLog struct {
	requests, retried, status5xx int
}

// readFleetAccessLog counts the requests in nginx's access log
// (fleetNginxConf's format), those sent to more than one upstream (a
// retry: $upstream_addr lists every one tried) and 5xx answers.
func readFleetAccessLog(path string) (fleetAccessLog, error) {
	var l fleetAccessLog
	fh, err := os.Open(path)
	if err != nil {
		return l, fmt.Errorf("fleet: nginx access log: %w", err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		l.requests++
		if strings.HasPrefix(f[1], "5") {
			l.status5xx++
		}
		// "$upstream_addr" is the third field on; several upstreams are
		// separated by ", " (and " : " after an internal redirect).
		if rest := strings.Join(f[2:], " "); strings.Contains(strings.SplitN(rest, "\" \"", 2)[0], ",") {
			l.retried++
		}
	}
	if err := sc.Err(); err != nil {
		return l, fmt.Errorf("fleet: nginx access log: %w", err)
	}
	return l, nil
}

// fleetLostReports counts the reports the clients saw accepted that the
// database does not hold, and the report rows of the devices that
// reported.
func fleetLostReports(ctx context.Context, conn *pgx.Conn, ids []string, l *fleetLoad) (lost, stored int, err error) {
	rows, err := conn.Query(ctx, `SELECT device_id, seq FROM reports WHERE seq > 0`)
	if err != nil {
		return 0, 0, fmt.Errorf("fleet: reading the reports: %w", err)
	}
	have := map[string]bool{}
	for rows.Next() {
		var dev string
		var seq int64
		if err := rows.Scan(&dev, &seq); err != nil {
			rows.Close()
			return 0, 0, fmt.Errorf("fleet: reading the reports: %w", err)
		}
		have[dev+"/"+strconv.FormatInt(seq, 10)] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("fleet: reading the reports: %w", err)
	}
	for _, r := range append(append([]fleetReport(nil), l.accepted...), l.replayed...) {
		if !have[ids[r.dev]+"/"+strconv.FormatInt(r.seq, 10)] {
			lost++
		}
	}
	return lost, len(have), nil
}

// fleetReleaseCount is how many releases of fleetNew each channel holds.
func fleetReleaseCount(ctx context.Context, conn *pgx.Conn) (map[string]int, error) {
	rows, err := conn.Query(ctx, `SELECT channel, count(*) FROM releases WHERE version = $1 GROUP BY channel`, fleetNew)
	if err != nil {
		return nil, fmt.Errorf("fleet: reading the releases: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var ch string
		var n int
		if err := rows.Scan(&ch, &n); err != nil {
			return nil, fmt.Errorf("fleet: reading the releases: %w", err)
		}
		out[ch] = n
	}
	return out, rows.Err()
}
