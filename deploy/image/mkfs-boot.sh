#!/usr/bin/env bash
# mkfs-boot.sh DEVICE — make the boot file system of an MxOS disk (used by
# mkdisk.sh, and by the test that guards this choice:
# internal/sysroot/ostreeadmin TestImageBootFSShowsStockDeploy).
#
# ext4 WITHOUT a journal. GRUB reads /boot without replaying a journal.
# Debian 12's ostree (2022.7) renames /boot/loader to the new entries
# with only an fsync after it, which on a journaled file system puts the
# rename in the journal, not where GRUB reads; the cleanup that follows
# removes the old /ostree/boot.N links on the root. A power cut in that
# window (found by deploy/vm/e2e.sh, power cut 4) left GRUB booting
# entries whose links were gone: ostree-prepare-root failed, emergency
# shell, no way back without a person. Without a journal, what ostree has
# fsynced is what GRUB reads. (Our agent also freezes /boot after each
# deploy and grubenv write, package bootfs, for journaled /boot partitions
# of other images; ostree 2023 and later freeze after the swap as well.)
# The unclean-shutdown check is e2fsck's, run by systemd-fsck at boot
# (fstab pass 2).
#
# metadata_csum_seed off: GRUB 2.06 cannot read it.
set -euo pipefail
exec mkfs.ext4 -q -L boot -O ^has_journal,^metadata_csum_seed "$1"
