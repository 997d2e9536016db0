#!/usr/bin/env bash
# deploy/vm/e2e.sh — a real machine: boot, update, reboot and roll back in
# a QEMU virtual machine, checked from the host.
#
#   deploy/vm/e2e.sh            build (or reuse) the image and run every step
#   MXOS_VM_CUTS=100 deploy/vm/e2e.sh        the power-cut soak
#   MXOS_VM_STEPS="1 2" deploy/vm/e2e.sh     only some steps (1 upgrade,
#                                            2 health rollback, 3 boot fallback, 4 power cuts)
#   MXOS_VM_SHELL=1 deploy/vm/e2e.sh         build, start the server, boot the VM with
#                                            the serial console on this terminal
#
# Steps, each printed as PASS or FAIL, checked through the server's device
# reports (its database) and the VM's serial console:
#   1. 10.0.1 published → the agent upgrades and reboots → 10.0.1 boots,
#      health ok, reported;
#   2. 10.0.2 with a failing required health check → boots, fails, rolls
#      back, reboots into 10.0.1 by itself, reports health-failed, is never
#      offered again;
#   3. 10.0.3 with an initramfs that cannot boot → GRUB's boot counter runs
#      out → GRUB boots 10.0.1 → the agent marks 10.0.3 bad, reports
#      boot-failed;
#   4. MXOS_VM_CUTS (default 5) power cuts: QEMU killed at a random moment
#      while 10.0.4 (then 10.0.5, ... once one got through) downloads,
#      deploys or updates the boot loader (disk
#      cache=writethrough: only what reached the disk survives) → `ostree
#      fsck` (on the host, on a copy of the disk as the cut left it, its
#      journal replayed) is clean, and the VM boots the old or the new
#      release, never neither.
# Ends with "vm: N passed, M failed". Serial logs are kept on failure.
#
# The VM reaches only the test server: user networking with restrict=on
# and one guestfwd (10.0.2.100:80 → the server on 127.0.0.1). No KVM here:
# TCG (-accel tcg), about a minute per boot. Needs root (loop devices),
# debootstrap, ostree, qemu-system-x86, qemu-utils, netcat-openbsd, go.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/mxos-update/vm
CUTS=${MXOS_VM_CUTS:-5}
STEPS=${MXOS_VM_STEPS:-1 2 3 4}
BOOT_TIMEOUT=${MXOS_VM_BOOT_TIMEOUT:-900}
work=$(mktemp -d /tmp/mxos-vm.XXXXXX)
passed=0 failed=0 keep=0
log() { echo "vm: $*" >&2; }
pass() { echo "PASS $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); keep=1; }

qemu_pid="" server_pid=""
cleanup() {
  [ -n "$qemu_pid" ] && kill -9 "$qemu_pid" 2>/dev/null
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  wait 2>/dev/null
  if [ "$keep" = 1 ]; then log "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
# A SIGTERM (the Go test's budget) ends the script through its EXIT trap:
# QEMU and the server stop, the logs are kept.
trap 'keep=1; log "stopped by SIGTERM"; exit 143' TERM

# ---- binaries -------------------------------------------------------------
export GOFLAGS=-tags=containers_image_openpgp,containers_image_storage_stub,containers_image_docker_daemon_stub
log "building mxos-server, mxosctl, mxos-updater"
(cd "$repo" && CGO_ENABLED=0 go build -o "$work/bin/" ./cmd/mxos-server ./cmd/mxosctl ./cmd/mxos-updater) || exit 1
BIN=$work/bin
accel=(-accel tcg -cpu Nehalem)
log "TCG (no KVM on this machine: the Debian kernel hangs under KVM here); about a minute per boot"

# ---- the server -----------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_server() { # DATA
  port=$(free_port)
  "$BIN/mxos-server" --data "$1" --listen "127.0.0.1:$port" --channels "$repo/channels" \
    --release-keys "$img/keys-public" --online-keys "$img/online-keys" >>"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0; sleep 0.2; done
  log "server did not start"; tail "$work/server.log" >&2; return 1
}
stop_server() { kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null; server_pid=""; }

# Device auth, in one place: a release token for publishing and the
# device's token (role device), written into the device's /etc.
make_tokens() { # DATA OUTDIR
  "$BIN/mxos-server" token create --data "$1" --role release --name release >"$2/release-token"
  "$BIN/mxos-server" token create --data "$1" --role device --name vm-01 >"$2/device-token"
}

# publish VERSION TREE: a new release on testing, offered to every device
# (the previous rollout is completed first: one active rollout per channel).
publish() {
  local url=http://127.0.0.1:$port
  MXOS_TOKEN=$(cat "$img/release-token") "$BIN/mxosctl" rollout complete --server "$url" --channel testing >>"$work/publish.log" 2>&1 || true
  MXOS_TOKEN=$(cat "$img/release-token") "$BIN/mxosctl" publish --server "$url" \
    --channel testing --version "$1" --keys "$img/keys" --work "$work/publish-work" --quiet "$2" >>"$work/publish.log" 2>&1
}

# ---- the image (cached) ---------------------------------------------------
base=$("$repo/deploy/image/base.sh") || { log "base.sh failed"; exit 1; }
key=$( { echo "$base"; sha256sum "$0" "$BIN/mxos-updater" "$repo"/deploy/image/*.sh "$repo"/deploy/image/files/* \
  "$repo"/deploy/systemd/mxos-updater*.service; } | sha256sum | cut -c1-16)
img=$CACHE/image-$key
if [ ! -f "$img/.complete" ]; then
  log "building the image in $img"
  rm -rf "$img" && mkdir -p "$img"
  (
    set -e
    "$BIN/mxosctl" keys generate --dir "$img/keys" >/dev/null
    "$BIN/mxosctl" keys generate --dir "$img/online-keys" >/dev/null
    mkdir -p "$img/keys-public" "$img/data"
    cp "$img/keys/ed25519.pub" "$img/keys/openpgp.pub.asc" "$img/keys-public/"
    "$BIN/mxosctl" metadata init --keys "$img/keys" --online-pub "$img/online-keys" --out "$img/data/metadata" >/dev/null
    cp "$img/data/metadata/root.json" "$img/keys-public/"
    make_tokens "$img/data" "$img"
    UPDATER=$BIN/mxos-updater PUBKEYS=$img/keys-public VERSION=10.0.0 \
      "$repo/deploy/image/mktree.sh" "$base" "$img/tree"
    start_server "$img/data"
    publish 10.0.0 "$img/tree"
    stop_server
    commit=$(ostree --repo="$img/data/repo" rev-parse mxos/10/x86_64/testing)
    etc=$img/etc && mkdir -p "$etc/mxos-updater"
    install -m 600 "$img/device-token" "$etc/mxos-updater/token"
    cat >"$etc/mxos-updater/config.yaml" <<CFG
# The VM's agent: the test server through QEMU's guestfwd.
server: http://10.0.2.100
token_file: /etc/mxos-updater/token
device_id: vm-01
channel: testing
arch: x86_64
backend: ostree
sysroot: /
trusted_keys: /usr/share/mxos-update/keys
trusted_root: /usr/share/mxos-update/keys/root.json
health_dir: /usr/lib/mxos-updater/health
interval: 1m
jitter: 10s
strategy:
  kind: immediate
CFG
    REF=mxos/10/x86_64/testing VERSION=10.0.0 "$repo/deploy/image/mkdisk.sh" "$img/data/repo" "$commit" "$img/disk.raw" "$etc"
    touch "$img/.complete"
  )
  # shellcheck disable=SC2181 # (not in an || list, or set -e would be off inside)
  if [ $? -ne 0 ]; then log "image build failed (logs in $work)"; keep=1; exit 1; fi
fi
log "image $img"

# ---- the VM ---------------------------------------------------------------
cp -a "$img/data" "$work/data"
start_server "$work/data" || exit 1
qemu-img create -q -f qcow2 -b "$img/disk.raw" -F raw "$work/disk.qcow2"
serial=""
boot_vm() { # LOGNAME
  serial=$work/$1.serial.log
  : >"$serial"
  qemu-system-x86_64 "${accel[@]}" -smp 2 -m 1536 -nodefaults -no-user-config \
    -drive "file=$work/disk.qcow2,if=virtio,cache=writethrough" \
    -nic "user,model=virtio-net-pci,restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:nc 127.0.0.1 $port" \
    -display none -monitor none -serial "file:$serial" &
  qemu_pid=$!
}
stop_vm() { [ -n "$qemu_pid" ] && kill -9 "$qemu_pid" 2>/dev/null; wait "$qemu_pid" 2>/dev/null; qemu_pid=""; }
# wait_for PATTERN [TIMEOUT]: the serial log (all boots of this VM run) has PATTERN
wait_for() {
  local deadline=$((SECONDS + ${2:-$BOOT_TIMEOUT}))
  while [ $SECONDS -lt $deadline ]; do
    grep -aqE "$1" "$serial" && return 0
    kill -0 "$qemu_pid" 2>/dev/null || { log "QEMU exited"; return 1; }
    sleep 2
  done
  log "timed out waiting for /$1/ in $serial"
  return 1
}
count() { grep -acE "$1" "$serial"; }
reports() { # VERSION EVENT → how many
  sqlite3 "$work/data/mxos.db" "SELECT count(*) FROM reports WHERE device_id='vm-01' AND version='$1' AND event='$2'"
}
# variant VERSION KIND: the 10.0.0 tree with a new version file and, for
# KIND=badhealth a failing required check, for KIND=badinitrd an
# initramfs that cannot boot.
variant() {
  local t=$work/tree-$1
  rm -rf "$t" && cp -a "$img/tree" "$t"
  echo "$1" >"$t/usr/lib/mxos-version"
  case $2 in
  badhealth) printf '#!/bin/sh\necho "10.0.2 is broken on purpose" >&2\nexit 1\n' >"$t/usr/lib/mxos-updater/health/required.d/50-broken"
    chmod 755 "$t/usr/lib/mxos-updater/health/required.d/50-broken" ;;
  badinitrd) head -c 4096 /dev/urandom >"$t"/usr/lib/modules/*/initramfs.img ;;
  esac
  publish "$1" "$t" && rm -rf "$t"
}

if [ -n "${MXOS_VM_SHELL:-}" ]; then
  log "server at http://127.0.0.1:$port (data $work/data); publish with: MXOS_TOKEN=\$(cat $img/release-token) $BIN/mxosctl publish --server http://127.0.0.1:$port --channel testing --keys $img/keys --version 10.0.1 TREE"
  log "root has no password; Ctrl-A X quits"
  qemu-system-x86_64 "${accel[@]}" -smp 2 -m 1536 -nodefaults -no-user-config \
    -drive "file=$work/disk.qcow2,if=virtio,cache=writethrough" \
    -nic "user,model=virtio-net-pci,restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:nc 127.0.0.1 $port" \
    -nographic -serial mon:stdio
  exit 0
fi

start=$SECONDS
boot_vm run
if wait_for "MXOS-VM booted version=10.0.0"; then
  boot_s=$((SECONDS - start))
  pass "boot: 10.0.0 boots from the image ($boot_s s)"
  # Each later wait spans a download, a deploy and a boot or two: on a
  # host slow enough that one boot took over a quarter of the default
  # bound, the bound grows with it (4 boots), unless it was set.
  if [ -z "${MXOS_VM_BOOT_TIMEOUT:-}" ] && [ $((4 * boot_s)) -gt "$BOOT_TIMEOUT" ]; then
    BOOT_TIMEOUT=$((4 * boot_s))
    log "slow host (boot $boot_s s): waiting up to $BOOT_TIMEOUT s per step"
  fi
else
  fail "boot: 10.0.0 did not boot"; echo "vm: $passed passed, $failed failed"; exit 1
fi

# fsck_disk: the guest's sysroot repository, checked with ostree fsck on a
# copy of the disk (the VM is stopped). The copy is mounted read-write so
# that ext4 replays its journal, as the next boot will. Then GRUB's view:
# /boot read as GRUB reads it (debugfs, no journal replay): every entry
# behind /boot/loader must name an /ostree/boot link the root has, or
# ostree-prepare-root fails and the machine stops in the emergency shell.
fsck_disk() {
  local raw=$work/fsck.raw mnt=$work/fsck.mnt loop bootloop rc target e link
  qemu-img convert -O raw "$work/disk.qcow2" "$raw" || return 1
  mkdir -p "$mnt"
  loop=$(losetup -f --show -o $((1050624 * 512)) "$raw") || return 1
  mount "$loop" "$mnt" || { losetup -d "$loop"; return 1; }
  ostree fsck --repo="$mnt/ostree/repo" >"$work/fsck.log" 2>&1; rc=$?
  if bootloop=$(losetup -f --show -r -o $((2048 * 512)) --sizelimit $((1048576 * 512)) "$raw"); then
    target=$(debugfs -R "stat /loader" "$bootloop" 2>/dev/null | sed -n 's/.*Fast link dest: "\(.*\)".*/\1/p')
    echo "GRUB's /boot/loader: ${target:-(none)}" >>"$work/fsck.log"
    [ -n "$target" ] || rc=1
    for e in $(debugfs -R "ls -p /$target/entries" "$bootloop" 2>/dev/null | awk -F/ '$6 ~ /\.conf$/ {print $6}'); do
      link=$(debugfs -R "cat /$target/entries/$e" "$bootloop" 2>/dev/null | sed -n 's/^options .*ostree=\([^ ]*\).*/\1/p')
      if [ -z "$link" ] || [ ! -e "$mnt$link" ]; then
        echo "GRUB's entry $e names ${link:-nothing}, which the root does not have" >>"$work/fsck.log"; rc=1
      fi
    done
    losetup -d "$bootloop"
  else
    rc=1
  fi
  umount "$mnt"; losetup -d "$loop"; rm -f "$raw"
  return $rc
}

step() { case " $STEPS " in *" $1 "*) return 0 ;; esac; return 1; }

if step 1; then
  t0=$SECONDS
  variant 10.0.1 good || fail "1: publish 10.0.1"
  if wait_for "MXOS-VM booted version=10.0.1 boot_result=active"; then
    n=$(reports 10.0.1 health-ok)
    if [ "$n" -ge 1 ]; then pass "1: upgraded to 10.0.1, rebooted, healthy, reported ($((SECONDS - t0)) s)"
    else fail "1: 10.0.1 booted but no health-ok report"; fi
  else fail "1: 10.0.1 did not boot"; fi
fi

if step 2; then
  t0=$SECONDS
  variant 10.0.2 badhealth || fail "2: publish 10.0.2"
  wait_for "10.0.2 failed its health checks" || true
  # After the rollback the VM restarts by itself into 10.0.1.
  before=$(count "MXOS-VM booted version=10.0.1")
  if wait_for "Restarting the machine to go back to version 10.0.1" &&
    deadline=$((SECONDS + BOOT_TIMEOUT)) &&
    while [ "$(count "MXOS-VM booted version=10.0.1")" -le "$before" ] && [ $SECONDS -lt $deadline ]; do sleep 3; done &&
    [ "$(count "MXOS-VM booted version=10.0.1")" -gt "$before" ]; then
    sleep 40 # a few check cycles: 10.0.2 must not be offered or installed again
    if [ "$(reports 10.0.2 health-failed)" -ge 1 ] && [ "$(count "Downloading version 10.0.2")" -eq 1 ]; then
      pass "2: 10.0.2 failed its health check, rolled back, rebooted into 10.0.1 by itself, reported, not offered again ($((SECONDS - t0)) s)"
    else fail "2: health-failed reports $(reports 10.0.2 health-failed), downloads of 10.0.2: $(count "Downloading version 10.0.2")"; fi
  else fail "2: the VM did not come back on 10.0.1 by itself"; fi
fi

if step 3; then
  t0=$SECONDS
  before=$(count "MXOS-VM booted version=10.0.1")
  variant 10.0.3 badinitrd || fail "3: publish 10.0.3"
  deadline=$((SECONDS + 3 * BOOT_TIMEOUT))
  while [ "$(count "MXOS-VM booted version=10.0.1")" -le "$before" ] && [ $SECONDS -lt $deadline ]; do
    kill -0 "$qemu_pid" 2>/dev/null || break; sleep 3; done
  panics=$(count "Kernel panic")
  if [ "$(count "MXOS-VM booted version=10.0.1")" -gt "$before" ] && [ "$panics" -ge 3 ] && wait_for "did not start after several tries" 60; then
    if [ "$(reports 10.0.3 boot-failed)" -ge 1 ]; then
      pass "3: 10.0.3 never booted ($panics panics), GRUB went back to 10.0.1, agent marked it bad and reported boot-failed ($((SECONDS - t0)) s)"
    else fail "3: back on 10.0.1 after $panics panics, but no boot-failed report"; fi
  else fail "3: no fall-back to 10.0.1 (panics: $panics)"; fi
fi

if step 4; then
  # Power cuts while a new release is installed. The VM's own log tells
  # when the download starts; the cut comes at a random moment in the next
  # 150 s: under TCG the download takes 60-90 s and the deploy, the boot
  # loader update and the reboot into it follow, so cuts land in each. Then, with QEMU gone: ostree fsck on
  # the disk as the cut left it; then the VM must boot the old or the new
  # release. When the new one got through, the next cut targets a newer
  # release (10.0.4, 10.0.5, ...).
  old=10.0.1 new=10.0.4 n=4
  variant "$new" good || fail "4: publish $new"
  cutok=0 newboots=0
  for i in $(seq "$CUTS"); do
    if ! wait_for "Downloading version $new|MXOS-VM booted version=$new "; then fail "4: cut $i: no download of $new"; break; fi
    sleep $((RANDOM % 150))
    stop_vm
    if ! fsck_disk; then fail "4: cut $i: ostree fsck or GRUB's view of /boot found damage after the cut (log: $work/fsck.log)"; cp "$work/fsck.log" "$work/cut$i.fsck.log"; break; fi
    boot_vm "cut$i"
    if ! wait_for "MXOS-VM booted version=(${old//./\\.}|${new//./\\.}) boot_result=active"; then
      fail "4: cut $i: the VM booted neither $old nor $new"; break
    fi
    v=$(grep -aoE "MXOS-VM booted version=10\.0\.[0-9]+" "$serial" | head -1); v=${v#*=}
    cutok=$((cutok + 1))
    log "cut $i: ostree fsck clean, GRUB's entries whole, $v booted"
    if [ "$v" = "$new" ]; then
      newboots=$((newboots + 1)) old=$new n=$((n + 1)) new=10.0.$n
      variant "$new" good || { fail "4: publish $new"; break; }
    fi
  done
  [ "$cutok" -eq "$CUTS" ] && pass "4: $cutok power cuts: ostree fsck clean after each, then booted the old release $((cutok - newboots)) times and the new one $newboots times, never neither"
fi
stop_vm
# Where the time went, from the device's own reports (their times are the
# guest's clock): the first download of each release, and from its end to
# the switch (pull-local, ostree admin deploy, the switch's second deploy).
sqlite3 -separator ' ' "$work/data/mxos.db" "SELECT version,
    (MIN(CASE WHEN event='download-finished' THEN reported_at END) - MIN(CASE WHEN event='download-started' THEN reported_at END)) / 1000000,
    (MIN(CASE WHEN event='deployed' THEN reported_at END) - MIN(CASE WHEN event='download-finished' THEN reported_at END)) / 1000000
  FROM reports WHERE device_id='vm-01' GROUP BY version ORDER BY MIN(reported_at)" 2>/dev/null |
  while read -r v dl inst; do log "$v: download ${dl:-?} s, deploy and switch ${inst:-?} s"; done
echo "vm: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
