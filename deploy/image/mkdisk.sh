#!/usr/bin/env bash
# mkdisk.sh REPO COMMIT OUT.raw ETCDIR — install a commit of an OSTree
# repository (e.g. the server's DATA/repo after `mxosctl publish`) on a
# new BIOS/MBR disk image, as an installer would:
#
#   partition 1  ext4 "boot" (512 MiB), no journal (mkfs-boot.sh says why):
#                BLS entries, kernels, grub, grubenv
#   partition 2  ext4 "root": the OSTree sysroot (ostree/repo, ostree/deploy/mxos)
#
# The deployment is made with stock `ostree admin deploy` (stateroot mxos)
# and carries the agent's origin (ref, version). ETCDIR is copied over the
# deployment's /etc: the device's own files (mxos-updater config, token).
# GRUB (from the tree itself) goes into the MBR gap; /boot/grub/grub.cfg
# is a link into /boot/loader/ so that ostree's runtime deploys (which run
# grub-mkconfig) replace it atomically with the loader swap.
#
# Environment: REF, VERSION (the origin), SIZE (default 4G).
# Needs root, losetup, sfdisk, mkfs.ext4, ostree.
set -euo pipefail
REPO=$1 COMMIT=$2 OUT=$3 ETCDIR=$4
REF=${REF:-mxos/10/x86_64/testing}
VERSION=${VERSION:-10.0.0}
SIZE=${SIZE:-4G}
OS=mxos
# systemd.default_timeout_start_sec: under TCG on a busy host, mounting the
# root or starting journald can take minutes; systemd's default 90 s sent
# the boot to the emergency shell. New deployments inherit these arguments.
# fsck.repair=yes: /boot has no journal (mkfs-boot.sh), so after a power
# cut e2fsck may find what its preen mode will not fix alone (a power cut
# in the VM test left "Unattached inode"): systemd-fsck then failed, /boot
# was not mounted and the machine stopped in the emergency shell. An
# unattended machine repairs (e2fsck -y) and goes on.
KARGS=(--karg=root=LABEL=root --karg=rw --karg=console=ttyS0,115200 --karg=panic=5
  --karg=systemd.default_timeout_start_sec=900 --karg=fsck.repair=yes)
log() { echo "mkdisk: $*" >&2; }

work=$(mktemp -d)
mnt=$work/mnt
loops=()
cleanup() {
  umount "$mnt/boot" 2>/dev/null || true
  umount "$mnt" 2>/dev/null || true
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM # a SIGTERM (the VM test's budget) also frees the loop devices

rm -f "$OUT.tmp"
truncate -s "$SIZE" "$OUT.tmp"
# 1 MiB gap for GRUB's core.img, then /boot, then the root.
sfdisk -q "$OUT.tmp" <<'PART'
label: dos
start=2048, size=1048576, type=83, bootable
start=1050624, type=83
PART
bootoff=$((2048 * 512)) bootsize=$((1048576 * 512))
rootoff=$((1050624 * 512))
boot=$(losetup -f --show -o "$bootoff" --sizelimit "$bootsize" "$OUT.tmp"); loops+=("$boot")
root=$(losetup -f --show -o "$rootoff" "$OUT.tmp"); loops+=("$root")
"$(dirname "$0")/mkfs-boot.sh" "$boot"
mkfs.ext4 -q -L root "$root"
mkdir -p "$mnt"
mount "$root" "$mnt"
mkdir -p "$mnt/boot"
mount "$boot" "$mnt/boot"

log "ostree sysroot"
ostree admin init-fs "$mnt"
ostree admin os-init --sysroot="$mnt" "$OS"
# An offline deploy cannot run grub-mkconfig (it would probe the host's
# devices): write grub.cfg ourselves, then let runtime deploys use grub2.
ostree config --repo="$mnt/ostree/repo" set sysroot.bootloader none
ostree pull-local --repo="$mnt/ostree/repo" "$REPO" "$COMMIT" >&2
cat >"$work/origin" <<ORIGIN
[origin]
refspec=$COMMIT

[mxos-updater]
ref=$REF
version=$VERSION
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ORIGIN
ostree admin deploy --sysroot="$mnt" --os="$OS" --retain --origin-file="$work/origin" "${KARGS[@]}" "$COMMIT" >&2
dep=$(ls -d "$mnt/ostree/deploy/$OS/deploy/$COMMIT".* | grep -v origin | head -1)
cp -a "$ETCDIR/." "$dep/etc/"

# The agent's archive staging repository, seeded with the installed commit
# (otherwise the first boot copies the whole OS into it).
mkdir -p "$mnt/ostree/mxos-updater"
ostree init --repo="$mnt/ostree/mxos-updater/repo" --mode=archive
ostree pull-local --repo="$mnt/ostree/mxos-updater/repo" "$REPO" "$COMMIT" >&2

log "grub"
tree=$dep  # GRUB's modules and 08_bootcount come from the tree itself
mkdir -p "$mnt/boot/grub"
{
  cat <<'CFG'
# Written by mkdisk.sh; grub-mkconfig replaces it at the next deploy.
set timeout=1
serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
if [ -s $prefix/grubenv ]; then
  load_env
fi
set default=0
function load_video {
  insmod all_video
}
CFG
  sed '1,/^cat <<.GRUB.$/d;/^GRUB$/,$d' "$tree/usr/etc/grub.d/08_bootcount"
  GRUB2_BOOT_DEVICE_ID=$(blkid -s UUID -o value "$boot") \
  GRUB2_PREPARE_ROOT_CACHE=$'insmod part_msdos\ninsmod ext2\nset root=(hd0,msdos1)' \
    ostree admin instutil --sysroot="$mnt" grub2-generate
} >"$work/grub.cfg"
grep -q '^menuentry' "$work/grub.cfg" || { log "grub2-generate wrote no menu entry"; cat "$work/grub.cfg" >&2; exit 1; }
cp "$work/grub.cfg" "$mnt/boot/loader/grub.cfg"
ln -sf ../loader/grub.cfg "$mnt/boot/grub/grub.cfg"
# A pre-made environment block: save_env can only rewrite an existing one.
printf '# GRUB Environment Block\n%s' "$(printf '#%.0s' $(seq 1 1000))" | head -c 1024 >"$mnt/boot/grub/grubenv"
ostree config --repo="$mnt/ostree/repo" set sysroot.bootloader grub2

cp -a "$tree/usr/lib/grub/i386-pc" "$mnt/boot/grub/"
chroot "$tree" /usr/bin/grub-mkimage -O i386-pc -d /usr/lib/grub/i386-pc -o /tmp/mxos-core.img \
  -p '(hd0,msdos1)/grub' biosdisk part_msdos ext2
mv "$tree/tmp/mxos-core.img" "$work/core.img"
dd if="$tree/usr/lib/grub/i386-pc/boot.img" of="$OUT.tmp" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$OUT.tmp" bs=512 seek=1 conv=notrunc status=none
[ "$(stat -c %s "$work/core.img")" -lt $((2047 * 512)) ] || { log "core.img too big"; exit 1; }

sync
umount "$mnt/boot"; umount "$mnt"
for l in "${loops[@]}"; do losetup -d "$l"; done; loops=()
mv "$OUT.tmp" "$OUT"
log "disk ready: $OUT"
