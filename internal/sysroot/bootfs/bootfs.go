// Package bootfs makes changes to the boot partition visible to the boot
// loader before a power cut can take them.
//
// GRUB reads ext4 (and XFS) without replaying the journal. A rename that
// ostree has fsynced — the /boot/loader symlink swap, or a new grubenv —
// is durable for Linux, which replays the journal when it mounts the file
// system, but until the journal is checkpointed the blocks GRUB reads
// still hold the old directory and the old inode. A power cut in that
// window (seconds to minutes) makes GRUB boot the old entries: in the VM
// test the bad release the agent had just rolled back from, with the
// boot counter already disarmed, so the machine never came back.
//
// A freeze/thaw cycle (FIFREEZE, FITHAW) forces the checkpoint: the file
// system writes everything to its final place, as ostree itself does on
// /boot. Settle is that cycle; Thaw ends a freeze whose thaw never ran (a
// process killed in between), and is called when the agent starts.
//
// Hand-written: golang.org/x/sys/unix has no FIFREEZE constants; the
// request numbers are the kernel's _IOWR('X', 119/120, int), the same on
// x86, arm and riscv.
package bootfs

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

const (
	fiFreeze = 0xC0045877 // _IOWR('X', 119, int)
	fiThaw   = 0xC0045878 // _IOWR('X', 120, int)
)

// ErrUnsupported wraps the error of a file system that cannot be frozen
// (tmpfs, overlayfs, FUSE); nothing is needed there for a boot loader
// that does not read it.
var ErrUnsupported = errors.New("file system cannot be frozen")

// Settle freezes and thaws the file system holding dir, so that every
// change made before the call is in place without the journal.
func Settle(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("settle boot file system: %w", err)
	}
	defer f.Close()
	fd := int(f.Fd())
	if err := unix.IoctlSetInt(fd, fiFreeze, 0); err != nil {
		switch {
		case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOTTY), errors.Is(err, unix.EINVAL):
			return fmt.Errorf("settle %s: %w: %v", dir, ErrUnsupported, err)
		case errors.Is(err, unix.EBUSY):
			// Already frozen by someone else (a backup tool): its
			// freeze has checkpointed the journal too.
			return nil
		}
		return fmt.Errorf("settle %s: freeze: %w", dir, err)
	}
	if err := unix.IoctlSetInt(fd, fiThaw, 0); err != nil {
		return fmt.Errorf("settle %s: thaw: %w", dir, err)
	}
	return nil
}

// Thaw thaws the file system holding dir if it is frozen; a file system
// that is not frozen is left alone.
func Thaw(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("thaw %s: %w", dir, err)
	}
	defer f.Close()
	err = unix.IoctlSetInt(int(f.Fd()), fiThaw, 0)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTTY) {
		return nil
	}
	return fmt.Errorf("thaw %s: %w", dir, err)
}
