// Command mxos-bench runs MxOS Update and its peers side by side in one run
// and prints a table of figures and ratios (ours/peer), each with the
// direction that is better, its target and PASS or MISS:
//
//   - serve: mxos-server against nginx serving the same archive repository
//     on 127.0.0.1 (requests/s on small objects, MB/s on large ones);
//   - publish: `mxosctl publish` against `ostree commit` of the same tree
//     (a generated one by default, or --tree DIR|TARBALL);
//   - pull: stock `ostree pull` of the published commit from mxos-server
//     against the same pull from nginx;
//   - check: the update API's POST /api/v1/check on a store with --devices
//     registered devices, each request a device's first check of the run
//     (checkfair.go), signed channel metadata on, on each of --databases
//     (SQLite, and a PostgreSQL cluster it starts), against a trivial
//     net/http JSON handler (requests/s, p50 and p99 latency, server CPU
//     with the database's, server memory per registered device), then
//     open-loop: Poisson arrivals at the fleet's own rate (--check-every)
//     and at --open-rate of the trivial handler's, latency from each
//     request's scheduled arrival (checkfair.go);
//   - all: the four in a row, pull reusing what publish made;
//   - devpull: the updater's pure-Go pull against stock `ostree pull` of
//     the same two releases from the same server, cold and as an update
//     (time, bytes sent, requests);
//   - deltas: the size of our static deltas against `ostree static-delta
//     generate` on the same pair of releases, and against the loose
//     objects of the same update; and the time to apply the update delta,
//     our device puller against `ostree pull --require-static-deltas`;
//   - registry: blob pulls (1 MB and 100 MB) from our OCI registry against
//     distribution/distribution v3 (built once with the go tool) serving
//     the same blobs.
//   - fleet: --replicas (3) real mxos-server processes on one PostgreSQL
//     cluster and one S3 bucket (versitygw) behind Debian's nginx routed
//     as deploy/compose/nginx.conf, --devices registered devices checking
//     through it at capacity (closed loop) and at their own cadence
//     (Poisson, --check-every) with reports, a publish, a halt and a
//     kill -9 of one replica in the middle: checks/s, p50/p99, errors,
//     requests nginx retried, how long until every replica stops offering
//     the halted release, nothing lost, PostgreSQL's load (fleet.go).
//
// The machines this runs on are small and noisy, so absolute times mean
// little: every figure is measured on both sides in the same run, in
// alternating order (ours, peer, peer, ours, ...), and the median of the
// rounds is reported. serve, pull and publish run the real mxos-server and
// mxosctl binaries (--mxos-server, --mxosctl, or built from this module
// with the go tool into WORK/bin), so they measure what users run; check
// and devpull run this binary re-executed with a hidden subcommand. Either
// way the load generator never shares a Go scheduler with the server it
// measures. The peers are tuned as their operators would tune them: nginx
// as a CDN (sendfile, tcp_nopush, open_file_cache, no access log, a worker
// per core). Beside every time the report gives the CPU seconds (user +
// system, from /proc or the child's rusage) and the peak RSS of both
// sides, and the load average at start and end. Children are killed when
// the benchmark ends, also on errors and on SIGINT/SIGTERM.
//
// cmd/mxos-bench/figures.sh regenerates the README's serve, publish and
// pull figures in one run.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the process exit code.
// Tests call it in-process; child processes come back through it too.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := newRootCmd(args)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "mxos-bench:", err)
		return 1
	}
	return 0
}
