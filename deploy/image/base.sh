#!/usr/bin/env bash
# base.sh — debootstrap a Debian 12 (bookworm) root file system that can boot
# as an OSTree deployment: kernel, dracut initramfs with ostree-prepare-root,
# systemd, BIOS GRUB, ostree-boot. Prints the path of the (cached) root.
#
# The result is cached in ${XDG_CACHE_HOME:-$HOME/.cache}/mxos-update/vm/
# under a key made of this script and the candidate versions of the packages,
# so it is rebuilt only when Debian ships a new kernel, ostree, ... .
#
# Adapting it: change SUITE, MIRROR and PACKAGES. Needs root, debootstrap.
set -euo pipefail

SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PACKAGES=(linux-image-amd64 dracut ostree ostree-boot grub-pc-bin grub2-common
  systemd systemd-sysv udev kmod iproute2 e2fsprogs)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/mxos-update/vm

log() { echo "base: $*" >&2; }

versions() {
  apt-cache policy "${PACKAGES[@]}" 2>/dev/null | awk '/^[^ ]/{p=$1} /Candidate:/{print p, $2}'
}
# FORMAT: bump when this script changes what it builds.
FORMAT=1
key=$( { echo "$FORMAT $SUITE ${PACKAGES[*]}"; versions; } | sha256sum | cut -c1-16)
root=$CACHE/base-$key
if [ -f "$root/.complete" ]; then
  log "cached $root"
  echo "$root"
  exit 0
fi

mkdir -p "$CACHE"
# One build at a time (two VM runs, or .ci/run's background build and the
# VM test): a second caller waits here, then finds the first one's result.
exec 9>"$CACHE/.base.lock"
flock 9
if [ -f "$root/.complete" ]; then
  log "cached $root (built while we waited)"
  echo "$root"
  exit 0
fi
tmp=$CACHE/.base-$key.tmp
# A build killed outright (SIGKILL, power loss) leaves its mounts behind:
# take them down, and never let rm cross into another file system (the
# host's /dev is bind-mounted there while a build runs).
for m in dev/pts dev sys proc; do umount "$tmp/$m" 2>/dev/null || true; done
rm -rf --one-file-system "$tmp"
mkdir -p "$tmp"
cleanup() {
  for m in dev/pts dev sys proc; do umount "$tmp/$m" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 143' TERM # a SIGTERM (the VM test's budget) also unmounts

# dpkg fsyncs every file it unpacks, which is most of a build's time on a
# busy disk. A build that dies is thrown away (it is in .tmp until the end,
# and the end syncs the file system), so it may skip them: debootstrap in
# two stages, with dpkg's force-unsafe-io between them; removed again at
# the end, so the tree a machine boots has dpkg's defaults.
log "debootstrap $SUITE (minbase)"
debootstrap --variant=minbase --foreign "$SUITE" "$tmp" "$MIRROR" >&2
unsafe=$tmp/etc/dpkg/dpkg.cfg.d/zz-mxos-build-unsafe-io
mkdir -p "$(dirname "$unsafe")"
echo force-unsafe-io >"$unsafe"
chroot "$tmp" /debootstrap/debootstrap --second-stage >&2

mount -t proc proc "$tmp/proc"
mount -t sysfs sys "$tmp/sys"
mount --bind /dev "$tmp/dev"
mount --bind /dev/pts "$tmp/dev/pts"

# No services may start inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
chmod +x "$tmp/usr/sbin/policy-rc.d"

log "installing ${PACKAGES[*]}"
# INITRD=No: the kernel's and dracut's own hooks would each build a
# host-only initramfs that the next step replaces anyway.
chroot "$tmp" env DEBIAN_FRONTEND=noninteractive INITRD=No apt-get install -y -q \
  -o Acquire::Retries=3 --no-install-recommends "${PACKAGES[@]}" >&2

# A generic (not host-only) initramfs that contains ostree's dracut module.
kver=$(ls "$tmp/lib/modules" | sort -V | tail -1)
log "dracut for $kver"
chroot "$tmp" dracut --force --no-hostonly --add ostree \
  "/boot/initrd.img-$kver" "$kver" >&2
contents=$(chroot "$tmp" lsinitrd "/boot/initrd.img-$kver")
grep -q ostree-prepare-root <<<"$contents" || { log "initramfs lacks ostree-prepare-root"; exit 1; }

rm -f "$tmp/usr/sbin/policy-rc.d" "$unsafe"
chroot "$tmp" apt-get clean
cleanup
trap - EXIT
echo "$kver" >"$tmp/.kver"
sync -f "$tmp" # what dpkg did not fsync, before the cache calls it complete
touch "$tmp/.complete"
rm -rf "$root"
mv "$tmp" "$root"
log "built $root"
echo "$root"
