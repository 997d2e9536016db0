package ostreeadmin

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/mxos-linux/mxos-update/internal/sysroot"
	"github.com/mxos-linux/mxos-update/internal/sysroot/grubenv"
)

// withGrubEnv gives a test sysroot the environment block an image has.
func withGrubEnv(t *testing.T, s *Sysroot) {
	t.Helper()
	p := s.grubEnvPath()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	b := append([]byte(grubenv.Header), bytes.Repeat([]byte("#"), grubenv.Size-len(grubenv.Header))...)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// grubVars returns boot_counter and boot_success ("" when unset).
func grubVars(t *testing.T, s *Sysroot) (counter, success string) {
	t.Helper()
	e, err := grubenv.Read(s.grubEnvPath())
	if err != nil {
		t.Fatal(err)
	}
	counter, _ = e.Get("boot_counter")
	success, _ = e.Get("boot_success")
	return counter, success
}

// grubBoots does what 08_bootcount does at one boot.
func grubBoots(t *testing.T, s *Sysroot, counter string) {
	t.Helper()
	if err := grubenv.Update(s.grubEnvPath(), func(e *grubenv.Env) error {
		e.Set("boot_counter", counter)
		return e.Set("boot_success", "0")
	}); err != nil {
		t.Fatal(err)
	}
}

func TestGrubBootCounter(t *testing.T) {
	ctx := context.Background()
	s := newSysroot(t, Options{})
	withGrubEnv(t, s)
	c1, _ := switched(t, s, "1.0")
	d1 := mustCurrent(t, s)
	if err := s.MarkGood(); err != nil {
		t.Fatal(err)
	}
	if c, ok := grubVars(t, s); c != "" || ok != "1" {
		t.Fatalf("after a good boot: boot_counter=%q boot_success=%q", c, ok)
	}

	// Switch arms the counter.
	c2 := commitTree(t, s, "2.0", true)
	d2 := deploy(t, s, c2, "2.0")
	if err := s.Switch(ctx, d2); err != nil {
		t.Fatal(err)
	}
	if c, ok := grubVars(t, s); c != "3" || ok != "0" {
		t.Fatalf("after switch: boot_counter=%q boot_success=%q, want 3 and 0", c, ok)
	}

	// The machine is still running 1.0: a MarkGood now must not bless 2.0.
	s = reopen(t, s, Options{BootedRoot: d1.Path})
	if err := s.MarkGood(); err != nil {
		t.Fatal(err)
	}
	if c, _ := grubVars(t, s); c != "3" {
		t.Fatalf("MarkGood on the old deployment blessed the new one: boot_counter=%q", c)
	}

	// 2.0 never reached user space: GRUB counted 2, 1, 0, booted entry 1
	// (1.0) and left -1.
	grubBoots(t, s, "-1")
	_, err := s.BootAttempt()
	if !errors.Is(err, ErrBootLoaderFellBack) || !errors.Is(err, sysroot.ErrCounterExhausted) {
		t.Fatalf("boot after the boot loader fell back: %v", err)
	}
	if got := order(t, s); !equal(got, []string{d1.Name}) {
		t.Fatalf("after the fall-back the deployments are %v, want only %s", got, d1.Name)
	}
	if bad, _ := s.IsBad(c2); !bad {
		t.Fatal("2.0 is not marked bad")
	}
	if bad, _ := s.IsBad(c1); bad {
		t.Fatal("1.0 is marked bad")
	}
	if c, ok := grubVars(t, s); c != "" || ok != "1" {
		t.Fatalf("after the fall-back: boot_counter=%q boot_success=%q", c, ok)
	}
	if _, err := s.BootAttempt(); err != nil {
		t.Fatalf("the next boot: %v", err)
	}
	if err := s.Switch(ctx, d2); !errors.Is(err, sysroot.ErrNoDeployment) && !errors.Is(err, sysroot.ErrBadCommit) {
		t.Fatalf("switch back to the bad version: %v", err)
	}

	// A new version that boots: counted once, then blessed.
	c3 := commitTree(t, s, "3.0", true)
	d3 := deploy(t, s, c3, "3.0")
	if err := s.Switch(ctx, d3); err != nil {
		t.Fatal(err)
	}
	d3 = mustCurrent(t, s)
	s = reopen(t, s, Options{BootedRoot: d3.Path})
	grubBoots(t, s, "2")
	if _, err := s.BootAttempt(); err != nil {
		t.Fatalf("boot of 3.0: %v", err)
	}
	if c, _ := grubVars(t, s); c != "2" {
		t.Fatalf("BootAttempt of a pending boot touched the counter: %q", c)
	}
	if err := s.MarkGood(); err != nil {
		t.Fatal(err)
	}
	if c, ok := grubVars(t, s); c != "" || ok != "1" {
		t.Fatalf("after blessing 3.0: boot_counter=%q boot_success=%q", c, ok)
	}

	// A rollback (failed health check) disarms the counter.
	c4 := commitTree(t, s, "4.0", true)
	if err := s.Switch(ctx, deploy(t, s, c4, "4.0")); err != nil {
		t.Fatal(err)
	}
	if err := s.Rollback(ctx, "health check failed"); err != nil {
		t.Fatal(err)
	}
	if c, ok := grubVars(t, s); c != "" || ok != "1" {
		t.Fatalf("after rollback: boot_counter=%q boot_success=%q", c, ok)
	}
}

// A counter armed by a Switch that never finished (power cut) is disarmed
// by the next boot of the old default, and a corrupt block is an error.
func TestGrubBootCounterLeftoversAndCorruption(t *testing.T) {
	s := newSysroot(t, Options{})
	withGrubEnv(t, s)
	switched(t, s, "1.0")
	if err := s.MarkGood(); err != nil {
		t.Fatal(err)
	}
	if err := s.armBootCounter(3); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BootAttempt(); err != nil {
		t.Fatal(err)
	}
	if c, ok := grubVars(t, s); c != "" || ok != "1" {
		t.Fatalf("leftover counter: boot_counter=%q boot_success=%q", c, ok)
	}
	if err := os.WriteFile(s.grubEnvPath(), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BootAttempt(); !errors.Is(err, grubenv.ErrFormat) {
		t.Fatalf("boot with a corrupt grubenv: %v", err)
	}
}
