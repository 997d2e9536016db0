package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mxos-linux/mxos-update/internal/api"
	"github.com/mxos-linux/mxos-update/internal/auth"
	"github.com/mxos-linux/mxos-update/internal/channel"
	"github.com/mxos-linux/mxos-update/internal/db"
	"github.com/mxos-linux/mxos-update/internal/rollout"
)

// The check benchmark measures the update API's hot path, POST
// /api/v1/check, on a store with a realistic fleet, against a trivial
// net/http handler that decodes the same body and answers a fixed
// CheckResponse: the floor any Go JSON endpoint on this machine pays.

// modulePath is this repository's module; its root holds channels/.
const modulePath = "github.com/mxos-linux/mxos-update"

// The fleet the check store holds: every device follows stable on
// x86_64 and runs checkOld; checkOld rolled out completely, checkNew is
// rolling out at checkRamp.
const (
	checkChannel = "stable"
	checkArch    = "x86_64"
	checkOld     = "10.0.1"
	checkNew     = "10.0.2"
	// checkRamp holds at 50% (a ramp must end at 100%, here in a year).
	checkRamp = "50%,100%@8760h"
	// checkBatch devices are seeded per transaction.
	checkBatch = 10000
	// checkP99Limit is the target for our p99 latency, in milliseconds.
	checkP99Limit = 10
	// trivialAnswer is the peer's fixed answer: a valid CheckResponse.
	trivialAnswer = `{"update":false,"reason":"up-to-date"}` + "\n"
)

// checkSpec describes the check benchmark's generated data directory.
type checkSpec struct {
	Devices  int
	Seed     uint64
	Channels string // hash of the channel definitions copied in
	// Settled is the fleet benchmark's store: every device runs checkNew,
	// and there are no releases or rollouts, so that the benchmark
	// publishes real ones (mxosctl needs the channel's newest commit).
	Settled bool
}

func (s checkSpec) key() string {
	k := fmt.Sprintf("check-d%d-seed%d-ch%s-v2", s.Devices, s.Seed, s.Channels)
	if s.Settled {
		k += "-fleet"
	}
	return k
}

// deviceRelease is the version and commit every device of the store runs.
func (s checkSpec) deviceRelease(setup checkSetup) (version, commit string) {
	if s.Settled {
		return checkNew, setup.NewCommit
	}
	return checkOld, setup.OldCommit
}

// checkSetup is what seeding made, kept beside the store as setup.json.
type checkSetup struct {
	Devices     int     `json:"devices"`
	SeedSeconds float64 `json:"seed_seconds"`
	OldCommit   string  `json:"old_commit"`
	NewCommit   string  `json:"new_commit"`
	RolloutID   string  `json:"rollout_id"`
	// Settled: no releases were seeded (checkSpec.Settled).
	Settled bool `json:"settled,omitempty"`
}

// Files in the check data directory besides the store and repo/.
const (
	checkSetupFile = "setup.json"
	checkChanDir   = "channels"
)

// runCheck measures the check endpoint of our server against the trivial
// handler, alternating rounds like serve.
func runCheck(ctx context.Context, b *bench) error {
	chDir, err := b.channelsDir()
	if err != nil {
		return err
	}
	chFiles, chHash, err := readChannelFiles(chDir)
	if err != nil {
		return err
	}
	spec := checkSpec{Devices: b.o.devices, Seed: b.o.seed, Channels: chHash}
	data := filepath.Join(b.work, "gen", spec.key())
	if err := os.MkdirAll(filepath.Dir(data), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(data), err)
	}
	logf(b.stderr, "check: store with %d devices, channels from %s", spec.Devices, chDir)
	_, reused, err := cached(data, func(tmp string) (treeStats, error) {
		return treeStats{Files: spec.Devices}, seedCheckData(ctx, b.stderr, tmp, chFiles, spec)
	})
	if err != nil {
		return err
	}
	setup, err := loadCheckSetup(data)
	if err != nil {
		return err
	}
	if setup.Devices != spec.Devices {
		return fmt.Errorf("check: %s holds %d devices, want %d", data, setup.Devices, spec.Devices)
	}
	seedRate := float64(setup.Devices) / setup.SeedSeconds
	logf(b.stderr, "check: store %s (%s; seeded in %.2f s, %s devices/s)", data, reusedWord(reused), setup.SeedSeconds, formatValue(seedRate))
	bodies, err := checkBodies(spec, setup)
	if err != nil {
		return err
	}
	ref, err := checkRef(filepath.Join(data, checkChanDir))
	if err != nil {
		return err
	}
	if err := checkMetadata(data, ref, setup); err != nil {
		return err
	}
	authz := checkAuthz(spec)
	engines := b.o.databases
	if len(engines) == 0 {
		engines = []string{"sqlite"}
	}
	peer, err := b.startTrivial(ctx)
	if err != nil {
		return err
	}
	if err := probeCheck(ctx, peer, authz[0], bodies[0]); err != nil {
		return err
	}
	peerWalk := newDeviceWalk(spec.Devices, b.o.seed^0x7065)
	for _, engine := range engines {
		if err := b.runCheckEngine(ctx, engine, data, chFiles, spec, authz, bodies, peer, peerWalk); err != nil {
			return fmt.Errorf("%s: %w", engine, err)
		}
	}
	if err := stopServer(peer); err != nil {
		return err
	}
	if r := peerWalk.repeats(); r > 0 {
		b.report.Notes = append(b.report.Notes, fmt.Sprintf("check: the peer's walk wrapped: %d requests named a device a second time.", r))
	}
	b.report.Notes = append(b.report.Notes,
		"check: the peer is a net/http handler in its own process that decodes the same body and writes a fixed CheckResponse; "+
			"latency is per request, from sending it to reading the whole answer, in a log-linear histogram (< 0.8% error), "+
			"median of the rounds' percentiles; the load is closed-loop, so latency ≈ concurrency / throughput.",
		fmt.Sprintf("check: seeding the store took %.2f s for %d devices (%s devices/s, %d per transaction, through db.UpsertDevice).",
			setup.SeedSeconds, setup.Devices, formatValue(seedRate), checkBatch))
	return nil
}

// runCheckEngine measures our server on one database engine against the
// peer, alternating rounds, and adds the rows.
func (b *bench) runCheckEngine(ctx context.Context, engine, data string, chFiles map[string][]byte, spec checkSpec, authz []string, bodies [][]byte, peer *httpServer, peerWalk *deviceWalk) error {
	var dsn, engineName string
	var pg *checkPostgres
	switch engine {
	case "sqlite":
		engineName = "SQLite"
	case "postgres":
		var err error
		logf(b.stderr, "check: starting PostgreSQL and copying the store into it")
		if pg, err = startCheckPostgres(ctx, filepath.Join(b.work, "check-postgres")); err != nil {
			return err
		}
		defer func() {
			if err := pg.stop(); err != nil {
				logf(b.stderr, "check: stopping PostgreSQL: %v", err)
			}
		}()
		store, err := db.Open(ctx, pg.dsn, "")
		if err != nil {
			return fmt.Errorf("creating the PostgreSQL schema: %w", err)
		}
		if err := store.Close(); err != nil {
			return err
		}
		t0 := time.Now()
		if err := copyToPostgres(ctx, data, pg.dsn); err != nil {
			return err
		}
		logf(b.stderr, "check: copied %d devices to %s in %.1f s", spec.Devices, pg.version, time.Since(t0).Seconds())
		dsn, engineName = pg.dsn, "PostgreSQL"
	default:
		return fmt.Errorf("unknown database %q: use sqlite or postgres", engine)
	}

	// The memory a server needs without devices: the same server on an
	// empty store of the same engine.
	base, err := b.checkBaseMemory(ctx, engine, chFiles)
	if err != nil {
		return err
	}
	ours, err := b.startCheckServer(ctx, data, dsn)
	if err != nil {
		return err
	}
	took, err := waitIndexed(ctx, ours, 10*time.Minute)
	if err != nil {
		return err
	}
	logf(b.stderr, "check: %s: server ready with its device index after %.1f s", engineName, took.Seconds())
	if err := probeCheck(ctx, ours, authz[0], bodies[0]); err != nil {
		return err
	}
	// What the registered devices cost: ours, ready, against the same
	// server ready on an empty store. (Memory that grows with the load,
	// such as connection pools and buffers, is shown after the rounds.)
	ready, err := readProcMemory(ours.d.cmd.Process.Pid)
	if err != nil {
		return err
	}
	serverCPU := func() (time.Duration, error) {
		c, err := groupCPU(ours.d.cmd.Process.Pid)
		if err != nil || pg == nil {
			return c, err
		}
		p, err := pg.cpu()
		return c + p, err
	}
	// A new order every run: the same order in a run started within a
	// minute of the last would find its devices' last-seen times fresh
	// (updates.LastSeenPrecision) and write nothing for them.
	walk := newDeviceWalk(spec.Devices, b.o.seed^uint64(time.Now().UnixNano()))
	peerName := "trivial net/http JSON handler"
	var oursRate, peerRate, oursP99, peerP99, oursP50, peerP50, oursCPU, peerCPU []float64
	reasons := map[string]int64{}
	var oursAnswers int64
	for round := range b.o.rounds {
		order := []*httpServer{ours, peer}
		if round%2 == 1 {
			order = []*httpServer{peer, ours}
		}
		for _, s := range order {
			w, cpu := walk, serverCPU
			if s == peer {
				w, cpu = peerWalk, func() (time.Duration, error) { return groupCPU(peer.d.cmd.Process.Pid) }
			}
			if b.o.warmup > 0 {
				if _, err := runCheckPhase(ctx, s, authz, bodies, b.o.concurrency, b.o.warmup, w, cpu); err != nil {
					return err
				}
			}
			cs, err := runCheckPhase(ctx, s, authz, bodies, b.o.concurrency, b.o.duration, w, cpu)
			if err != nil {
				return err
			}
			rate, cpuPer := cs.requestsPerSecond(), cs.serverMicrosPerRequest()
			p50, p99 := ms(cs.hist.quantile(0.50)), ms(cs.hist.quantile(0.99))
			logf(b.stderr, "check: %s round %d/%d %-11s %s requests/s, p50 %.3f ms, p99 %.3f ms, max %.1f ms; server %s CPU-µs/request, client %.2f cores (%d requests)",
				engineName, round+1, b.o.rounds, s.name, formatValue(rate), p50, p99, ms(cs.hist.quantile(1)), formatValue(cpuPer),
				cs.ClientCPU.Seconds()/cs.Elapsed.Seconds(), cs.Requests)
			if s == ours {
				oursRate, oursP50, oursP99, oursCPU = append(oursRate, rate), append(oursP50, p50), append(oursP99, p99), append(oursCPU, cpuPer)
				for k, v := range cs.reasons {
					reasons[k] += v
				}
				oursAnswers += cs.Requests
			} else {
				peerRate, peerP50, peerP99, peerCPU = append(peerRate, rate), append(peerP50, p50), append(peerP99, p99), append(peerCPU, cpuPer)
			}
		}
	}
	var openRows []Row
	var rates []openRate
	if b.o.checkEvery > 0 {
		rates = append(rates, openRate{float64(spec.Devices) / b.o.checkEvery.Seconds(),
			fmt.Sprintf("the fleet's own rate, %d devices each checking every %s", spec.Devices, b.o.checkEvery)})
	}
	if b.o.openRate > 0 {
		rates = append(rates, openRate{b.o.openRate * median(peerRate),
			fmt.Sprintf("--open-rate %.2f of the trivial handler's closed-loop rate", b.o.openRate)})
	}
	for _, r := range rates {
		rows, err := b.runCheckOpen(ctx, engineName, r, ours, peer, authz, bodies, walk, peerWalk, serverCPU)
		if err != nil {
			return err
		}
		openRows = append(openRows, rows...)
	}
	mem, err := readProcMemory(ours.d.cmd.Process.Pid)
	if err != nil {
		return err
	}
	perDevice := float64(ready.Anon-base.Anon) / float64(max(1, spec.Devices))
	target := 0.5
	if engine == "postgres" {
		target = 0.4
	}
	b.report.Rows = append(b.report.Rows,
		newRow("check", fmt.Sprintf("check requests/s (%d devices, %s, c=%d)", spec.Devices, engineName, b.o.concurrency), "requests/s", peerName, Higher, target, oursRate, peerRate),
		newAbsoluteRow("check", fmt.Sprintf("check p99 latency (%s)", engineName), "ms", peerName, Lower, checkP99Limit, oursP99, peerP99),
		newRow("check", fmt.Sprintf("check p50 latency (%s)", engineName), "ms", peerName, Lower, 0, oursP50, peerP50),
		newRow("check", fmt.Sprintf("check: server CPU (%s)", engineName), "CPU-µs/request", peerName, Lower, 0, oursCPU, peerCPU),
		newAbsoluteRow("check", fmt.Sprintf("check: server memory per registered device (%s)", engineName), "bytes", "(none)", Lower, checkBytesPerDevice+1, []float64{perDevice}, []float64{0}))
	b.report.Rows = append(b.report.Rows, openRows...)

	if err := stopServer(ours); err != nil {
		return err
	}
	// Every body names a registered device: the fleet must not have grown.
	n, err := countDevices(ctx, data, dsn)
	if err != nil {
		return err
	}
	if n != spec.Devices {
		return fmt.Errorf("check: the store holds %d devices after the load, want %d: a request named an unregistered device", n, spec.Devices)
	}
	fresh := fmt.Sprintf("no device checked twice (%d checks of %d devices)", walk.next.Load(), spec.Devices)
	if r := walk.repeats(); r > 0 {
		fresh = fmt.Sprintf("%d of %d checks repeated a device (the walk of %d devices wrapped after %.0f s)", r, walk.next.Load(), spec.Devices,
			float64(spec.Devices)/max(1, median(oursRate)))
	}
	engineDesc := "its SQLite store in the data directory"
	if pg != nil {
		engineDesc = pg.version + " on 127.0.0.1 (same machine; shared_buffers=1GB, synchronous_commit=off), CPU of all its processes counted as the server's"
	}
	b.report.Notes = append(b.report.Notes,
		fmt.Sprintf("check (%s): ours is %s with %s, signed channel metadata on (DATA/metadata as `mxosctl metadata init` makes it, online key on the server, both releases in release-signed targets): "+
			"%d registered devices on %s/%s at %s, %s rolled out completely, %s rolling out at 50%% (ramp %s); the channels are the repository's %s/*.yaml. "+
			"Each request is POST %s/check with the device's own bound credential; devices are taken in a random permutation walked across rounds, so %s (keep-alive, c=%d).",
			engineName, b.checkServerName(), engineDesc, spec.Devices, checkChannel, checkArch, checkOld, checkOld, checkNew, checkRamp, checkChanDir,
			api.Prefix, fresh, b.o.concurrency),
		fmt.Sprintf("check (%s): all %d answers of ours were 200 with a valid CheckResponse (%s); the store still holds exactly %d devices afterwards.",
			engineName, oursAnswers, formatReasons(reasons), spec.Devices),
		fmt.Sprintf("check (%s): server memory, ready with its device index: anonymous %.1f MB, file-backed %.1f MB; the same server ready on an empty store: anonymous %.1f MB; "+
			"per registered device: (anonymous − empty) / devices = %.0f bytes. After the rounds: RSS %.1f MB (anonymous %.1f MB, file-backed %.1f MB). "+
			"File-backed pages are the kernel's cache of the database file (SQLite maps it).",
			engineName, float64(ready.Anon)/1e6, float64(ready.File)/1e6, float64(base.Anon)/1e6, perDevice,
			float64(mem.RSS)/1e6, float64(mem.Anon)/1e6, float64(mem.File)/1e6))
	return nil
}

// checkBytesPerDevice is the memory target per registered device.
const checkBytesPerDevice = 300

func (b *bench) checkServerName() string {
	if b.o.mxosServer != "" {
		return b.o.mxosServer
	}
	return "server.New in a child process"
}

// checkBaseMemory starts our server on an empty store of engine, with
// the same options, and returns its memory once ready.
func (b *bench) checkBaseMemory(ctx context.Context, engine string, chFiles map[string][]byte) (procMemory, error) {
	dir := filepath.Join(b.work, "check-empty-"+engine)
	if err := os.RemoveAll(dir); err != nil {
		return procMemory{}, err
	}
	if err := seedCheckData(ctx, io.Discard, dir, chFiles, checkSpec{Seed: b.o.seed}); err != nil {
		return procMemory{}, err
	}
	setup, err := loadCheckSetup(dir)
	if err != nil {
		return procMemory{}, err
	}
	ref, err := checkRef(filepath.Join(dir, checkChanDir))
	if err != nil {
		return procMemory{}, err
	}
	if err := checkMetadata(dir, ref, setup); err != nil {
		return procMemory{}, err
	}
	dsn := ""
	if engine == "postgres" {
		pg, err := startCheckPostgres(ctx, filepath.Join(b.work, "check-postgres-empty"))
		if err != nil {
			return procMemory{}, err
		}
		defer func() { _ = pg.stop() }()
		dsn = pg.dsn
	}
	s, err := b.startCheckServer(ctx, dir, dsn)
	if err != nil {
		return procMemory{}, err
	}
	if _, err := waitIndexed(ctx, s, time.Minute); err != nil {
		return procMemory{}, err
	}
	m, err := readProcMemory(s.d.cmd.Process.Pid)
	return m, errors.Join(err, stopServer(s))
}

// checkRef is the ref of the benchmark's channel.
func checkRef(chDir string) (string, error) {
	set, err := channel.LoadDir(chDir)
	if err != nil {
		return "", fmt.Errorf("loading channel definitions: %w", err)
	}
	ch, err := set.Get(checkChannel)
	if err != nil {
		return "", fmt.Errorf("check needs channel %s: %w", checkChannel, err)
	}
	ref, ok := ch.Ref(checkArch)
	if !ok {
		return "", fmt.Errorf("check needs channel %s to have %s", checkChannel, checkArch)
	}
	return ref, nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// formatReasons prints answer reasons by share, largest first.
func formatReasons(m map[string]int64) string {
	var total int64
	keys := make([]string, 0, len(m))
	for k, v := range m {
		keys = append(keys, k)
		total += v
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := -cmpInt(m[a], m[b]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.1f%%", k, 100*float64(m[k])/float64(max(1, total))))
	}
	return strings.Join(parts, ", ")
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// channelsDir is --channels, or channels/ at the root of this module
// (found upwards from the working directory, else with `go env GOMOD`).
func (b *bench) channelsDir() (string, error) {
	if b.o.channels != "" {
		return b.o.channels, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", fmt.Errorf("finding the channel definitions (pass --channels): %w", err)
	}
	return filepath.Join(root, checkChanDir), nil
}

// moduleRoot finds the directory of this module's go.mod.
func moduleRoot() (string, error) {
	isOurs := func(gomod string) bool {
		f, err := os.Open(gomod)
		if err != nil {
			return false
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fields := strings.Fields(sc.Text()); len(fields) == 2 && fields[0] == "module" {
				return strings.Trim(fields[1], `"`) == modulePath
			}
		}
		return false
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			if isOurs(filepath.Join(dir, "go.mod")) {
				return dir, nil
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("no go.mod of %s above the working directory, and `go env GOMOD` failed: %w", modulePath, err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull || !isOurs(gomod) {
		return "", fmt.Errorf("no go.mod of %s above the working directory or from `go env GOMOD` (%q)", modulePath, gomod)
	}
	return filepath.Dir(gomod), nil
}

// readChannelFiles reads dir/*.yaml and returns them with a short hash of
// names and contents, so changed definitions make a new store.
func readChannelFiles(dir string) (map[string][]byte, string, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*"+channel.Ext))
	if err != nil {
		return nil, "", fmt.Errorf("listing channel definitions: %w", err)
	}
	if len(names) == 0 {
		return nil, "", fmt.Errorf("no *%s channel definitions in %s", channel.Ext, dir)
	}
	slices.Sort(names)
	files := map[string][]byte{}
	h := sha256.New()
	for _, p := range names {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, "", fmt.Errorf("reading channel definitions: %w", err)
		}
		files[filepath.Base(p)] = data
		fmt.Fprintf(h, "%s %d\n", filepath.Base(p), len(data))
		h.Write(data)
	}
	return files, hex.EncodeToString(h.Sum(nil))[:12], nil
}

// checkCommit is a release's (made-up, stable) commit checksum.
func checkCommit(version string) string {
	sum := sha256.Sum256([]byte("mxos-bench check release " + version))
	return hex.EncodeToString(sum[:])
}

// checkDeviceIDs are the fleet's ids, like /etc/machine-id (32 hex digits),
// a deterministic function of the seed.
func checkDeviceIDs(seed uint64, n int) []string {
	rng := rand.New(rand.NewPCG(seed, 0x6465766963657321))
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64())
	}
	return ids
}

// checkDeviceToken is device id's credential: a function of the seed, so
// a cached store and the load generator agree without a file of a million
// secrets. Only for the benchmark's throw-away store.
func checkDeviceToken(seed uint64, id string) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "mxos-bench device credential %d %s", seed, id))
	return "mxos_" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// checkAuthz are the Authorization headers of every device, in id order.
func checkAuthz(spec checkSpec) []string {
	ids := checkDeviceIDs(spec.Seed, spec.Devices)
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = "Bearer " + checkDeviceToken(spec.Seed, id)
	}
	return out
}

// checkBodies are the JSON check requests of every device, in id order.
func checkBodies(spec checkSpec, setup checkSetup) ([][]byte, error) {
	ids := checkDeviceIDs(spec.Seed, spec.Devices)
	bodies := make([][]byte, len(ids))
	for i, id := range ids {
		version, commit := spec.deviceRelease(setup)
		b, err := json.Marshal(api.CheckRequest{DeviceID: id, Arch: checkArch, Channel: checkChannel,
			BootedCommit: commit, Version: version})
		if err != nil {
			return nil, fmt.Errorf("encoding check request: %w", err)
		}
		bodies[i] = b
	}
	return bodies, nil
}

// seedCheckData makes the check data directory in dir: an empty repo/, a
// copy of the channel definitions, and the SQLite store with releases,
// rollouts and spec.Devices registered devices, each with its own
// credential.
func seedCheckData(ctx context.Context, logw io.Writer, dir string, chFiles map[string][]byte, spec checkSpec) error {
	if err := os.MkdirAll(filepath.Join(dir, "repo"), 0o755); err != nil {
		return fmt.Errorf("creating repository directory: %w", err)
	}
	chDir := filepath.Join(dir, checkChanDir)
	if err := os.MkdirAll(chDir, 0o755); err != nil {
		return fmt.Errorf("creating channel directory: %w", err)
	}
	for name, data := range chFiles {
		if err := os.WriteFile(filepath.Join(chDir, name), data, 0o644); err != nil {
			return fmt.Errorf("copying channel definitions: %w", err)
		}
	}
	set, err := channel.LoadDir(chDir)
	if err != nil {
		return fmt.Errorf("loading channel definitions: %w", err)
	}
	ch, err := set.Get(checkChannel)
	if err != nil {
		return fmt.Errorf("check needs channel %s: %w", checkChannel, err)
	}
	ref, ok := ch.Ref(checkArch)
	if !ok {
		return fmt.Errorf("check needs channel %s to have %s", checkChannel, checkArch)
	}

	store, err := db.Open(ctx, "", dir)
	if err != nil {
		return fmt.Errorf("creating the check store: %w", err)
	}
	defer store.Close()
	now := time.Now().UTC()
	setup := checkSetup{Devices: spec.Devices, OldCommit: checkCommit(checkOld), NewCommit: checkCommit(checkNew), RolloutID: "bench-" + checkNew, Settled: spec.Settled}
	if !spec.Settled {
		if err := seedCheckReleases(ctx, store, ref, setup, now); err != nil {
			return err
		}
	}
	devVersion, devCommit := spec.deviceRelease(setup)
	ids := checkDeviceIDs(spec.Seed, spec.Devices)
	rng := rand.New(rand.NewPCG(spec.Seed, 0x6c617374))
	logf(logw, "check: seeding %d devices, %d per transaction", len(ids), checkBatch)
	start := time.Now()
	for lo := 0; lo < len(ids); lo += checkBatch {
		batch := ids[lo:min(lo+checkBatch, len(ids))]
		err := store.Tx(ctx, func(tx *db.Tx) error {
			for _, id := range batch {
				// Last seen within the past day, like a fleet checking in daily.
				seen := now.Add(-time.Duration(rng.Int64N(int64(24 * time.Hour))))
				if err := tx.UpsertDevice(ctx, db.Device{ID: id, Arch: checkArch, Channel: checkChannel,
					BootedCommit: devCommit, Version: devVersion, LastSeen: seen}); err != nil {
					return err
				}
				// Each device has its own credential, bound to its id, as
				// enrollment gives it: the server looks one up per check.
				if err := tx.CreateToken(ctx, db.Token{ID: "bench-" + id, Name: "mxos-bench-" + id, Role: auth.RoleDevice,
					Hash: auth.Hash(checkDeviceToken(spec.Seed, id)), CreatedAt: now, CreatedBy: "mxos-bench",
					DeviceID: id, ExpiresAt: now.Add(auth.DefaultTTL(auth.RoleDevice))}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("seeding devices: %w", err)
		}
	}
	setup.SeedSeconds = time.Since(start).Seconds()
	n, err := store.CountDevices(ctx, db.DeviceFilter{})
	if err != nil {
		return fmt.Errorf("seeding devices: %w", err)
	}
	if n != spec.Devices {
		return fmt.Errorf("seeding devices: the store holds %d, want %d (duplicate ids?)", n, spec.Devices)
	}
	logf(logw, "check: seeded %d devices in %.2f s (%s devices/s)", n, setup.SeedSeconds, formatValue(float64(n)/setup.SeedSeconds))
	js, err := json.Marshal(setup)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", checkSetupFile, err)
	}
	if err := os.WriteFile(filepath.Join(dir, checkSetupFile), js, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", checkSetupFile, err)
	}
	return nil
}

// seedCheckReleases adds the check store's releases (with made-up
// commits) and rollouts: checkOld rolled out completely, checkNew halfway.
func seedCheckReleases(ctx context.Context, store *db.Store, ref string, setup checkSetup, now time.Time) error {
	for i, v := range []string{checkOld, checkNew} {
		at := now.Add(time.Duration(i-2) * 24 * time.Hour)
		err := store.AddRelease(ctx, db.Release{Channel: checkChannel, Arch: checkArch, Version: v, Ref: ref,
			Commit: checkCommit(v), PublishedAt: at, PublishedBy: "mxos-bench"})
		if err != nil {
			return fmt.Errorf("seeding releases: %w", err)
		}
	}
	// The older release rolled out completely; the newer one is halfway.
	old := db.Rollout{ID: "bench-" + checkOld, Channel: checkChannel, Arch: checkArch, Version: checkOld, Ramp: "100%",
		State: rollout.StateActive, CreatedAt: now.Add(-47 * time.Hour), CreatedBy: "mxos-bench"}
	if err := store.CreateRollout(ctx, old); err != nil {
		return fmt.Errorf("seeding rollouts: %w", err)
	}
	if err := store.SetRolloutState(ctx, old.ID, rollout.StateActive, rollout.StateComplete, "", now.Add(-30*time.Hour)); err != nil {
		return fmt.Errorf("seeding rollouts: %w", err)
	}
	if err := store.CreateRollout(ctx, db.Rollout{ID: setup.RolloutID, Channel: checkChannel, Arch: checkArch, Version: checkNew,
		Ramp: checkRamp, State: rollout.StateActive, CreatedAt: now.Add(-23 * time.Hour), CreatedBy: "mxos-bench"}); err != nil {
		return fmt.Errorf("seeding rollouts: %w", err)
	}
	return nil
}

// loadCheckSetup reads what seedCheckData recorded.
func loadCheckSetup(dir string) (checkSetup, error) {
	var setup checkSetup
	js, err := os.ReadFile(filepath.Join(dir, checkSetupFile))
	if err != nil {
		return setup, fmt.Errorf("reading the check setup: %w", err)
	}
	if err := json.Unmarshal(js, &setup); err != nil {
		return setup, fmt.Errorf("reading the check setup: %w", err)
	}
	if setup.SeedSeconds <= 0 {
		setup.SeedSeconds = 1e-9
	}
	return setup, nil
}

// countDevices opens the store (SQLite in data, or dsn) and counts the
// devices.
func countDevices(ctx context.Context, data, dsn string) (int, error) {
	store, err := db.Open(ctx, dsn, data)
	if err != nil {
		return 0, fmt.Errorf("check: reopening the store: %w", err)
	}
	n, err := store.CountDevices(ctx, db.DeviceFilter{})
	return n, errors.Join(err, store.Close())
}

// startCheckServer starts our server with the update API on data (and
// the PostgreSQL database dsn, if not ""), signed channel metadata on:
// the --mxos-server binary, or this binary's check-child.
func (b *bench) startCheckServer(ctx context.Context, data, dsn string) (*httpServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	chDir := filepath.Join(data, checkChanDir)
	relKeys, onKeys := checkKeys(data)
	var cmd *exec.Cmd
	if b.o.mxosServer != "" {
		args := []string{"--data", data, "--channels", chDir, "--listen", listen, "--log-level", "warn",
			"--release-keys", relKeys, "--online-keys", onKeys}
		if dsn != "" {
			args = append(args, "--database", dsn)
		}
		cmd = exec.Command(b.o.mxosServer, args...)
	} else {
		args := []string{"check-child", "--data", data, "--channels", chDir, "--listen", listen, "--online-keys", onKeys}
		if dsn != "" {
			args = append(args, "--database", dsn)
		}
		if b.o.cpuProfile != "" {
			name := "server-check.pprof"
			if dsn != "" {
				name = "server-check-postgres.pprof"
			}
			args = append(args, "--cpuprofile", filepath.Join(b.o.cpuProfile, name))
		}
		cmd = exec.Command(b.exe, args...)
	}
	cmd.Env = childEnviron()
	d, err := b.procs.start("mxos-server", cmd)
	if err != nil {
		return nil, err
	}
	s := &httpServer{name: "mxos-server", base: "http://" + listen, d: d, ready: "http://" + listen + "/healthz"}
	if err := waitReady(ctx, s); err != nil {
		return nil, err
	}
	return s, nil
}

// startTrivial starts the peer: this binary's trivial-child.
func (b *bench) startTrivial(ctx context.Context) (*httpServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(b.exe, "trivial-child", "--listen", listen)
	cmd.Env = childEnviron()
	d, err := b.procs.start("trivial", cmd)
	if err != nil {
		return nil, err
	}
	s := &httpServer{name: "trivial", base: "http://" + listen, d: d, ready: "http://" + listen + "/healthz"}
	if err := waitReady(ctx, s); err != nil {
		return nil, err
	}
	return s, nil
}

// probeCheck sends one check and validates the answer, so a broken setup
// fails before any load.
func probeCheck(ctx context.Context, s *httpServer, authz string, body []byte) error {
	c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 10 * time.Second}
	var buf bytes.Buffer
	if _, err := postCheck(ctx, c, s.base+api.Prefix+"/check", authz, body, &buf); err != nil {
		return fmt.Errorf("check: probing %s: %w", s.name, err)
	}
	return nil
}

// postCheck sends one check request and validates the answer: a 200 with
// a well-formed CheckResponse.
func postCheck(ctx context.Context, c *http.Client, url, authz string, body []byte, buf *bytes.Buffer) (api.CheckResponse, error) {
	var cr api.CheckResponse
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return cr, err
	}
	req.Header.Set("Authorization", authz)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return cr, err
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, 64<<10)); err != nil {
		return cr, fmt.Errorf("POST %s: reading the answer: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return cr, fmt.Errorf("POST %s: %s: %.200s", url, resp.Status, buf.Bytes())
	}
	dec := json.NewDecoder(bytes.NewReader(buf.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cr); err != nil {
		return cr, fmt.Errorf("POST %s: answer is not a CheckResponse: %w: %.200s", url, err, buf.Bytes())
	}
	switch t := cr.Target; {
	case cr.Reason == "":
		return cr, fmt.Errorf("POST %s: answer has no reason: %.200s", url, buf.Bytes())
	case cr.Update != (t != nil):
		return cr, fmt.Errorf("POST %s: update is %v but target is %v: %.200s", url, cr.Update, t != nil, buf.Bytes())
	case t != nil && (t.Version == "" || t.Ref == "" || len(t.Commit) != 64):
		return cr, fmt.Errorf("POST %s: incomplete target: %.200s", url, buf.Bytes())
	}
	return cr, nil
}

// checkStats is what one check load phase achieved.
type checkStats struct {
	loadStats
	hist    *latencyHist
	reasons map[string]int64
}

// runCheckPhase POSTs check requests, each with the body of the next
// device of walk, from conc goroutines over keep-alive connections for
// dur, recording each request's latency; serverCPU measures the server
// side. Any failed request or invalid answer fails the phase.
func runCheckPhase(ctx context.Context, s *httpServer, authz []string, bodies [][]byte, conc int, dur time.Duration, walk *deviceWalk, serverCPU func() (time.Duration, error)) (*checkStats, error) {
	if err := s.d.exited(); err != nil {
		return nil, err
	}
	tr := newTransport(conc)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	url := s.base + api.Prefix + "/check"
	pctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()

	var mu sync.Mutex
	total := &checkStats{hist: &latencyHist{}, reasons: map[string]int64{}}
	var wg sync.WaitGroup
	srv0, err := serverCPU()
	if err != nil {
		return nil, err
	}
	cli0 := selfCPU()
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			hist := &latencyHist{}
			reasons := map[string]int64{}
			var st loadStats
			for pctx.Err() == nil {
				t0 := time.Now()
				i := walk.take()
				cr, err := postCheck(pctx, c, url, authz[i], bodies[i], &buf)
				lat := time.Since(t0)
				if pctx.Err() != nil {
					break // cut by the deadline: the request does not count
				}
				st.Bytes += int64(buf.Len())
				if err != nil {
					st.Errors++
					if st.FirstErr == nil {
						st.FirstErr = err
					}
					continue
				}
				st.Requests++
				hist.record(lat)
				reasons[cr.Reason]++
			}
			mu.Lock()
			total.Requests += st.Requests
			total.Bytes += st.Bytes
			total.Errors += st.Errors
			if total.FirstErr == nil {
				total.FirstErr = st.FirstErr
			}
			total.hist.merge(hist)
			for k, v := range reasons {
				total.reasons[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return total, total.finish(ctx, s.name, "", dur, start, cli0, srv0, serverCPU)
}

// finish records a phase's elapsed time and CPU (from start, cli0 and
// srv0) and fails it on an interruption, a failed request or no answer;
// kind names the phase in errors ("" or "open loop: ").
func (total *checkStats) finish(ctx context.Context, name, kind string, dur time.Duration, start time.Time, cli0, srv0 time.Duration, serverCPU func() (time.Duration, error)) error {
	total.Elapsed = time.Since(start)
	total.ClientCPU = selfCPU() - cli0
	srv1, err := serverCPU()
	if err != nil {
		return err
	}
	total.ServerCPU = srv1 - srv0
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	if total.Errors > 0 {
		return fmt.Errorf("%s: %s%d of %d check requests failed, first: %w", name, kind, total.Errors, total.Requests+total.Errors, total.FirstErr)
	}
	if total.Requests == 0 {
		return fmt.Errorf("%s: no answer in %s", name, dur)
	}
	return nil
}

// latencyHist is a fixed-size log-linear histogram of durations in
// nanoseconds: exact below 256 ns, then 128 buckets per power of two, so
// a bucket's width is under 0.8% of its values.
type latencyHist struct {
	counts [256 + 56*128]int64
	n      int64
}

func histIndex(ns uint64) int {
	if ns < 256 {
		return int(ns)
	}
	shift := bits.Len64(ns) - 8 // 1..56
	return 256 + (shift-1)*128 + int(ns>>shift) - 128
}

// histLower and histUpper are the smallest and largest values of bucket i.
func histLower(i int) uint64 {
	if i < 256 {
		return uint64(i)
	}
	shift := (i-256)/128 + 1
	return uint64((i-256)%128+128) << shift
}

func histUpper(i int) uint64 {
	if i < 256 {
		return uint64(i)
	}
	shift := (i-256)/128 + 1
	return histLower(i) + 1<<shift - 1
}

func (h *latencyHist) record(d time.Duration) {
	h.counts[histIndex(uint64(max(d, 0)))]++
	h.n++
}

func (h *latencyHist) merge(o *latencyHist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile is the upper edge of the bucket holding the q-quantile
// (0 < q <= 1): a value at most 0.8% above the true one.
func (h *latencyHist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(q * float64(h.n))
	if float64(rank) < q*float64(h.n) {
		rank++
	}
	rank = max(rank, 1)
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(histUpper(i))
		}
	}
	return time.Duration(histUpper(len(h.counts) - 1))
}
