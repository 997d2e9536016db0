#!/usr/bin/env bash
# mktree.sh BASE OUT — turn a root file system made by base.sh into an OS
# tree with the OSTree layout, ready for `mxosctl publish`:
#
#   usr/lib/modules/$kver/{vmlinuz,initramfs.img}   kernel + dracut initramfs
#   usr/etc/                                         the /etc defaults (ostree 3-way merges /etc)
#   sysroot/, ostree -> sysroot/ostree               where the real root is mounted
#   home, root, opt, srv, mnt, usr/local -> var/...  state lives in /var (per stateroot)
#   var/                                             empty: made at boot by tmpfiles.d
#
# plus the MxOS parts: mxos-updater and its two units (from deploy/systemd),
# health checks in /usr/lib/mxos-updater/health, the public release keys
# and root.json, /etc/default/grub, /etc/grub.d/08_bootcount (boot
# counting), networkd DHCP, an fstab mounting the ext4 /boot.
#
# Environment: UPDATER (the mxos-updater binary, required), PUBKEYS (dir
# with ed25519.pub, openpgp.pub.asc and root.json, required), VERSION
# (written to /usr/lib/mxos-version; default 10.0.0).
# The device's own config and token are not part of the tree (the tree is
# public): mkdisk.sh writes them into the deployment's /etc.
set -euo pipefail
BASE=$1 OUT=$2
: "${UPDATER:?UPDATER=path of the mxos-updater binary}" "${PUBKEYS:?PUBKEYS=dir of public keys}"
VERSION=${VERSION:-10.0.0}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
log() { echo "mktree: $*" >&2; }

[ -f "$BASE/.complete" ] || { log "$BASE is not a finished base (run base.sh)"; exit 1; }
kver=$(cat "$BASE/.kver")
rm -rf "$OUT"
log "copying $BASE"
cp -a "$BASE" "$OUT"   # a full copy: the cached base must never change
rm -f "$OUT/.kver" "$OUT/.complete"

# Root logs in on the serial console without a password: a test image.
chroot "$OUT" passwd -d root >/dev/null
echo mxos-vm >"$OUT/etc/hostname"

# Kernel and initramfs where ostree looks for them.
mkdir -p "$OUT/usr/lib/modules/$kver"
mv "$OUT/boot/vmlinuz-$kver" "$OUT/usr/lib/modules/$kver/vmlinuz"
mv "$OUT/boot/initrd.img-$kver" "$OUT/usr/lib/modules/$kver/initramfs.img"
rm -rf "$OUT/boot" && mkdir "$OUT/boot"
rm -f "$OUT/vmlinuz" "$OUT/vmlinuz.old" "$OUT/initrd.img" "$OUT/initrd.img.old"

# /etc: boot, network, grub.
E=$OUT/etc
printf 'LABEL=boot /boot ext4 defaults 0 2\n' >"$E/fstab"
: >"$E/machine-id"
install -m 644 "$here/files/grub.default" "$E/default/grub"
for f in 10_linux 20_linux_xen 30_os-prober 30_uefi-firmware; do rm -f "$E/grub.d/$f"; done
install -m 755 "$here/files/08_bootcount" "$E/grub.d/08_bootcount"
[ -L "$E/grub.d/15_ostree" ] || [ -x "$E/grub.d/15_ostree" ] || { log "no /etc/grub.d/15_ostree (ostree-boot missing)"; exit 1; }
install -D -m 644 "$here/files/50-dhcp.network" "$E/systemd/network/50-dhcp.network"
wants=$E/systemd/system/multi-user.target.wants
mkdir -p "$wants" "$E/systemd/system/network-online.target.wants"
ln -sf /lib/systemd/system/systemd-networkd.service "$wants/systemd-networkd.service"
ln -sf /lib/systemd/system/systemd-networkd-wait-online.service \
  "$E/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service"

# The agent, its units (as shipped), and what this image adds to them.
install -m 755 "$UPDATER" "$OUT/usr/bin/mxos-updater"
units=$OUT/usr/lib/systemd/system
install -m 644 "$repo/deploy/systemd/mxos-updater.service" "$repo/deploy/systemd/mxos-updater-boot.service" \
  "$here/files/mxos-vm-report.service" "$units/"
for u in mxos-updater.service mxos-updater-boot.service mxos-vm-report.service; do
  ln -sf "/usr/lib/systemd/system/$u" "$wants/$u"
done
for u in mxos-updater.service mxos-updater-boot.service; do
  install -D -m 644 "$here/files/console.conf" "$units/$u.d/console.conf"
done
install -D -m 644 "$here/files/reboot.conf" "$units/mxos-updater.service.d/reboot.conf"
mkdir -p "$OUT/usr/share/mxos-update/keys"
for f in ed25519.pub openpgp.pub.asc root.json; do
  install -m 644 "$PUBKEYS/$f" "$OUT/usr/share/mxos-update/keys/$f"
done
hc=$OUT/usr/lib/mxos-updater/health/required.d
mkdir -p "$hc"
printf '#!/bin/sh\n# systemd is up and the root file system is writable.\ntest -d /run/systemd/system && touch /var/.mxos-health && rm -f /var/.mxos-health\n' >"$hc/10-system"
chmod 755 "$hc/10-system"
echo "$VERSION" >"$OUT/usr/lib/mxos-version"

# OSTree layout: /etc defaults in /usr/etc, state in /var.
mv "$OUT/etc" "$OUT/usr/etc"
for d in home:var/home root:var/roothome opt:var/opt srv:var/srv mnt:var/mnt media:run/media; do
  rm -rf "${OUT:?}/${d%%:*}"
  ln -s "${d#*:}" "$OUT/${d%%:*}"
done
rm -rf "$OUT/usr/local" && ln -s ../var/usrlocal "$OUT/usr/local"
cat >"$OUT/usr/lib/tmpfiles.d/mxos-ostree.conf" <<'TMP'
d /var/home 0755 root root -
d /var/roothome 0700 root root -
d /var/opt 0755 root root -
d /var/srv 0755 root root -
d /var/mnt 0755 root root -
d /var/usrlocal 0755 root root -
d /var/lib 0755 root root -
d /var/log 0755 root root -
TMP
rm -rf "$OUT/var" "$OUT/sysroot" && mkdir "$OUT/var" "$OUT/sysroot"
ln -s sysroot/ostree "$OUT/ostree"
rm -rf "${OUT:?}/tmp" && mkdir -m 1777 "$OUT/tmp"
rm -rf "$OUT"/proc/* "$OUT"/sys/* "$OUT"/dev/* "$OUT"/run/*
log "tree ready: $OUT (kernel $kver, version $VERSION)"
