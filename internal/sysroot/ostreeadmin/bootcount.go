package ostreeadmin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/mxos-linux/mxos-update/internal/sysroot"
	"github.com/mxos-linux/mxos-update/internal/sysroot/bootfs"
	"github.com/mxos-linux/mxos-update/internal/sysroot/grubenv"
)

// Boot counting by the boot loader (greenboot style). A kernel that never
// reaches user space never runs the agent, so the state.json counter
// cannot catch it; GRUB must. When the sysroot has a GRUB environment
// block (SYSROOT/boot/grub/grubenv; an image made by deploy/image has
// one, a test sysroot does not) this package also keeps it:
//
//   - Switch arms it before ostree runs: boot_counter=Tries,
//     boot_success=0. /etc/grub.d/08_bootcount counts down on every boot
//     that was not blessed and, when the counter has run out, boots menu
//     entry 1 (the previous deployment) and leaves boot_counter=-1.
//   - MarkGood blesses the boot of the default deployment:
//     boot_success=1 and no boot_counter.
//   - BootAttempt: boot_counter=-1 while the pending default is not the
//     booted deployment means the boot loader gave up on it; the pending
//     deployment is rolled back (undeployed, marked bad: the fall-back
//     becomes permanent) and the error wraps sysroot.ErrCounterExhausted
//     and ErrBootLoaderFellBack. With nothing pending the counter is
//     disarmed.
//   - Rollback disarms it: the previous deployment already booted.
//
// Arming before the deploy means a power cut in between leaves the old
// default counted; its next boot finds nothing pending and disarms.
//
// GRUB reads /boot without replaying the ext4 journal, so every grubenv
// write and every ostree deploy or undeploy ends with a freeze/thaw of
// the boot file system (package bootfs). Without it, a power cut a minute
// after a fall-back made GRUB boot the abandoned release again, with the
// counter disarmed: found by deploy/vm/e2e.sh step 4, and covered without
// the VM by TestBootLoaderSeesChangesWithoutJournal.

// GrubEnvFile is the GRUB environment block, relative to the sysroot.
const GrubEnvFile = "boot/grub/grubenv"

// ErrBootLoaderFellBack: the boot loader booted the previous deployment
// because the new one used up its tries (wraps sysroot.ErrCounterExhausted).
var ErrBootLoaderFellBack = fmt.Errorf("%w: the boot loader went back to the previous version", sysroot.ErrCounterExhausted)

func (s *Sysroot) grubEnvPath() string { return filepath.Join(s.path, filepath.FromSlash(GrubEnvFile)) }

// updateGrubEnv applies fn to the environment block when the sysroot has
// one; without one it does nothing.
func (s *Sysroot) updateGrubEnv(fn func(*grubenv.Env) error) error {
	err := grubenv.Update(s.grubEnvPath(), fn)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("boot counter: %w", err)
	}
	if err := s.settleBoot(); err != nil {
		return fmt.Errorf("boot counter: %w", err)
	}
	return nil
}

// settleBoot checkpoints the boot file system's journal (package bootfs:
// GRUB reads it without replaying the journal) on a sysroot whose boot
// loader counts boots, when /boot is its own file system or the sysroot
// is the running system's. A test sysroot in a temporary directory never
// freezes the file system it happens to live on.
func (s *Sysroot) settleBoot() error {
	boot := filepath.Join(s.path, "boot")
	if !s.HasGrubEnv() || (s.path != "/" && !isMountPoint(boot)) {
		return nil
	}
	err := bootfs.Settle(boot)
	if errors.Is(err, bootfs.ErrUnsupported) {
		return nil
	}
	return err
}

// armBootCounter gives the next default deployment tries boots.
func (s *Sysroot) armBootCounter(tries int) error {
	return s.updateGrubEnv(func(e *grubenv.Env) error {
		if err := e.Set("boot_counter", strconv.Itoa(tries)); err != nil {
			return err
		}
		return e.Set("boot_success", "0")
	})
}

// disarmBootCounter blesses the boot: no counting until the next Switch.
func (s *Sysroot) disarmBootCounter() error {
	return s.updateGrubEnv(func(e *grubenv.Env) error {
		e.Unset("boot_counter")
		return e.Set("boot_success", "1")
	})
}

// bootLoaderFellBack reports whether GRUB used up the counter
// (boot_counter=-1).
func (s *Sysroot) bootLoaderFellBack() (bool, error) {
	e, err := grubenv.Read(s.grubEnvPath())
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("boot counter: %w", err)
	}
	v, _ := e.Get("boot_counter")
	return v == "-1", nil
}

// HasGrubEnv reports whether the boot loader counts boots on this sysroot.
func (s *Sysroot) HasGrubEnv() bool {
	_, err := os.Stat(s.grubEnvPath())
	return err == nil
}

// fallBack handles boot_counter=-1 in BootAttempt (lock held): when the
// pending default is not what booted, it is rolled back.
func (s *Sysroot) fallBack(st *state, cur, booted string) (bool, error) {
	fell, err := s.bootLoaderFellBack()
	if err != nil || !fell {
		return false, err
	}
	if st.Pending == "" || st.Pending != cur || booted == cur {
		return false, nil
	}
	reason := fmt.Sprintf("%s did not start: the boot loader went back to the previous version", cur)
	if err := s.rollbackLocked(context.Background(), reason); err != nil {
		return true, err
	}
	return true, fmt.Errorf("boot %s: %w", cur, ErrBootLoaderFellBack)
}

// isMountPoint reports whether dir is on another file system than its
// parent.
func isMountPoint(dir string) bool {
	a, err := os.Stat(dir)
	if err != nil {
		return false
	}
	b, err := os.Stat(filepath.Dir(dir))
	if err != nil {
		return false
	}
	as, ok1 := a.Sys().(*syscall.Stat_t)
	bs, ok2 := b.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && as.Dev != bs.Dev
}
