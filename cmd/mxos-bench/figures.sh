#!/bin/sh
# Regenerates the README's serve, publish and pull figures (section
# "Performance") in one run, from the module root:
#
#   sh cmd/mxos-bench/figures.sh [WORKDIR]
#
# It prints the machine (cores, CPU model), the load average and the date
# before and after, then each benchmark's table. mxos-bench builds the
# mxos-server and mxosctl binaries it measures from this checkout. Sizes
# are chosen to finish in about half an hour on a busy 2-core machine;
# the 40,000-file publish is there to show memory against file count.
set -eu
cd "$(dirname "$0")/../.."
work=${1:-${TMPDIR:-/tmp}/mxos-bench-figures}
mkdir -p "$work"
bin=$work/mxos-bench
CGO_ENABLED=0 go build -o "$bin" ./cmd/mxos-bench

machine() {
	echo "# $(date -u '+%Y-%m-%dT%H:%M:%SZ') $1: $(nproc) cores," \
		"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)," \
		"load average $(cut -d ' ' -f 1-3 /proc/loadavg)"
}

machine start
"$bin" serve --work "$work" --small-objects 3000 --large-objects 2 --large-size 32MiB --duration 3s --warmup 500ms --rounds 3
echo
"$bin" publish --work "$work" --files 5000 --size 100MB --tar=false --rounds 3
echo
"$bin" pull --work "$work" --files 5000 --size 100MB --rounds 3
echo
"$bin" publish --work "$work" --files 40000 --size 50MB --tar=false --rounds 1
machine end
